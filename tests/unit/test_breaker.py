"""The circuit breaker's states on a fake clock, and its use from threads and coroutines."""

from __future__ import annotations

import asyncio
import threading

import pytest

from modelport.breaker import CircuitBreaker
from modelport.errors import Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, changes: list[tuple[str, str]] | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        "the cache at redis://c:6379/0",
        failure_threshold=3,
        reset_timeout_s=2.0,
        hint="check it with: redis-cli ping",
        clock=clock,
        observer=None if changes is None else lambda name, state: changes.append((name, state)),
    )


def test_opens_after_the_threshold_then_fails_fast_with_the_wait_left() -> None:
    clock, changes = Clock(), []
    b = breaker(clock, changes)
    b.failure(ConnectionError("refused"))
    b.failure("refused")
    b.success()  # a success in between starts the count again
    for _ in range(2):
        b.failure("refused")
    assert b.state == "closed" and b.allow()
    b.failure("Connection refused")
    assert b.state == "open" and not b.allow()
    assert changes == [("the cache at redis://c:6379/0", "open")]
    clock.now += 0.5
    with pytest.raises(Unavailable) as caught:
        b.check()
    error = caught.value
    assert "the cache at redis://c:6379/0 is unavailable" in error.message
    assert "circuit open after 3 failures in a row: Connection refused" in error.message
    assert "next try is in 1.5 s" in error.message
    assert error.retry_after == 2 and error.hint == "check it with: redis-cli ping"


def test_half_open_lets_one_trial_through_and_its_outcome_decides() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure("down")
    clock.now += 2.0
    assert b.state == "half_open"
    assert b.allow()  # the trial
    assert not b.allow()  # only one at a time
    b.failure("still down")
    assert b.state == "open" and b.retry_after() == 2.0
    clock.now += 2.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()
    assert b.describe() == {"status": "ok", "optional": True}


def test_a_cancelled_trial_frees_the_slot_without_deciding() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failure("down")
    clock.now += 2.0

    async def call() -> None:
        with b.guard((OSError,)):
            await asyncio.sleep(10)

    async def cancel_it() -> None:
        task = asyncio.create_task(call())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert b.state == "half_open" and b.allow()


def test_guard_counts_only_the_outages_it_is_given() -> None:
    b = breaker(Clock())
    for _ in range(5):
        with pytest.raises(KeyError), b.guard((OSError,)):
            raise KeyError("a bad request: the dependency answered")
    assert b.state == "closed"
    for _ in range(3):
        with pytest.raises(OSError), b.guard((OSError,)):
            raise OSError("unreachable")
    assert b.state == "open"
    described = b.describe()
    assert described["status"] == "open" and described["error"] == "unreachable"


def test_threads_share_one_breaker() -> None:
    b = CircuitBreaker("db", failure_threshold=1000, reset_timeout_s=1.0)

    def fail() -> None:
        for _ in range(250):
            b.failure("x")

    threads = [threading.Thread(target=fail) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.state == "open"  # exactly the 1000th failure opened it


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout_s"):
        CircuitBreaker("x", reset_timeout_s=0)
