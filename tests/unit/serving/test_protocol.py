"""The HTTP protocol: a response's head leaves with its body, in one write."""

from __future__ import annotations

import asyncio
from typing import Any

from modelport.serving.protocol import _HeadWithBody


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"extra {name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_a_head_and_its_body_go_out_in_one_write() -> None:
    asyncio.run(_one_write())


async def _one_write() -> None:
    recorder = Recorder()
    transport = _HeadWithBody(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    assert recorder.writes == []
    transport.write(b"{}")
    assert recorder.writes == [HEAD + b"{}"]
    transport.write(b"more")  # not a head: at once
    assert recorder.writes[-1] == b"more"
    await asyncio.sleep(0)  # the scheduled flush finds nothing held
    assert len(recorder.writes) == 2
    assert transport.get_extra_info("peername") == "extra peername"


def test_a_head_alone_leaves_at_the_next_step_or_on_close() -> None:
    asyncio.run(_head_alone())


async def _head_alone() -> None:
    recorder = Recorder()
    transport = _HeadWithBody(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)  # a HEAD answer, or a stream whose first chunk is not ready
    await asyncio.sleep(0)
    assert recorder.writes == [HEAD]
    transport.write(HEAD)
    transport.close()
    assert recorder.writes == [HEAD, HEAD] and recorder.closed
