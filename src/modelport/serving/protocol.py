"""uvicorn's httptools protocol, with a response's head sent together with its body.

uvicorn writes a response in two parts: the status line and headers when the app sends
``http.response.start``, the body on ``http.response.body``. Each write is a send: two
system calls per answer, and on loopback or a fast network two deliveries to the
client, each waking it. `HttpProtocol` holds a response head until the next write of
the connection and sends both as one; a head that nothing follows in the same step of
the event loop (a HEAD request, a streamed body still being produced, ``100
Continue``) goes out alone at the loop's next step, so nothing waits longer than that.

Example::

    uvicorn.Config(app, http=HttpProtocol, loop="uvloop")
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: How every response head written by uvicorn starts.
_HEAD = b"HTTP/1.1 "


class _HeadWithBody:
    """A transport whose response heads wait for the next write (or the loop's next
    step) and leave with it; every other call goes to the transport itself."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data.startswith(_HEAD):
            self._head = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response in one send (see above)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _HeadWithBody(transport, self.loop)  # type: ignore[assignment]
