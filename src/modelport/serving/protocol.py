"""uvicorn's httptools protocol, writing each response's head and body in one go.

uvicorn writes the status line and headers of a response as soon as the app sends
``http.response.start``, and the body when it sends ``http.response.body``: two
``send`` system calls and two TCP segments per response, and on loopback the client
woken twice. `HttpProtocol` gives uvicorn a transport that holds a response head until
the body's first write and sends both together. A head whose body does not follow in
the same turn of the event loop (a streamed response waiting for its first chunk) is
sent on the next turn, so nothing waits longer than that.

Use it as uvicorn's ``http`` protocol class::

    uvicorn.Config(app, http=HttpProtocol, loop="uvloop")
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_START = b"HTTP/1.1 "
_HEAD_END = b"\r\n\r\n"


class HeadHoldingTransport:
    """A transport that joins a response head to the write that follows it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data[:9] == _HEAD_START and data[-4:] == _HEAD_END:
            self._head = bytes(data)
            self._loop.call_soon(self._send_head)
        else:
            self._transport.write(data)

    def _send_head(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._send_head()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the real transport's
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` over a `HeadHoldingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        held = HeadHoldingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, held))
