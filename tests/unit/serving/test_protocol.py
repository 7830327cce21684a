"""Response heads held until their body: one write per response, nothing held long."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from modelport.serving.protocol import HeadHoldingTransport, HttpProtocol
from tests.receivers import free_port

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def on_a_loop(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())  # type: ignore[arg-type]

    return run


@on_a_loop
async def test_a_head_and_its_body_leave_in_one_write() -> None:
    real = Recorder()
    held = HeadHoldingTransport(real, asyncio.get_running_loop())
    held.write(HEAD)
    assert real.writes == []
    held.write(b"hello")
    assert real.writes == [HEAD + b"hello"]
    await asyncio.sleep(0)  # the turn's fallback finds nothing left to send
    assert real.writes == [HEAD + b"hello"]
    assert held.get_extra_info("peername") == ("127.0.0.1", 5)


@on_a_loop
async def test_a_head_without_a_body_this_turn_goes_out_on_the_next() -> None:
    real = Recorder()
    held = HeadHoldingTransport(real, asyncio.get_running_loop())
    held.write(HEAD)
    await asyncio.sleep(0)
    assert real.writes == [HEAD]
    held.write(b"later")
    assert real.writes == [HEAD, b"later"]


@on_a_loop
async def test_closing_sends_a_held_head_first() -> None:
    real = Recorder()
    held = HeadHoldingTransport(real, asyncio.get_running_loop())
    held.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    held.close()
    assert real.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"] and real.closed


def test_a_server_on_the_protocol_answers_plain_and_streamed_responses() -> None:
    port = free_port()

    async def plain(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("plain")

    async def streamed(_request: Any) -> StreamingResponse:
        async def chunks() -> Any:
            for part in (b"a", b"b", b"c"):
                await asyncio.sleep(0.01)
                yield part

        return StreamingResponse(chunks())

    app = Starlette(routes=[Route("/plain", plain), Route("/streamed", streamed)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=HttpProtocol, log_level="warning"
    )
    server = uvicorn.Server(config)

    async def run() -> list[httpx.Response]:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                return [await http.get(p) for p in ("/plain", "/streamed", "/plain")]
        finally:
            server.should_exit = True
            await task

    answers = asyncio.run(run())
    assert [(a.status_code, a.text) for a in answers] == [
        (200, "plain"),
        (200, "abc"),
        (200, "plain"),
    ]
