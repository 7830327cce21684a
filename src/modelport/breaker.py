"""Circuit breakers: fail fast while a dependency is down, find out by itself when it is back.

A `CircuitBreaker` guards calls to one dependency (a Redis, the registry's PostgreSQL,
an alert receiver). It is **closed** while calls succeed; after ``failure_threshold``
failures in a row it **opens**, and calls fail at once (`Unavailable`, with the time
left before the next try as ``retry_after``) instead of each waiting for a timeout;
after ``reset_timeout_s`` it is **half-open**: one call goes through as a trial, and
its outcome closes the breaker or opens it for another ``reset_timeout_s``.

The state lives behind a lock and every method is a few comparisons, so one breaker
is shared by threads and by coroutines on an event loop alike (nothing here awaits or
sleeps). ``observer`` hears every change of state (the metrics layer sets a gauge).

Why not a library: pybreaker and aiobreaker are not installed, and each is
thread-only or asyncio-only; this is the page of code both uses need.

Example::

    breaker = CircuitBreaker("redis redis://cache:6379/0", failure_threshold=3)
    with breaker.guard():
        client.get("key")            # raises Unavailable at once while open
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from modelport.errors import Unavailable

State = Literal["closed", "open", "half_open"]
#: Gauge values of the states, as `modelport_breaker_state` shows them.
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}

Observer = Callable[[str, State], None]


class CircuitBreaker:
    """Closed, open or half-open for one dependency (see the module docstring).

    ``name`` says which dependency, in error messages and metrics (``the Redis online
    store at redis://cache:6379/0``); ``effect`` what its absence means (added to the
    error); ``optional`` marks a dependency whose absence leaves the server able to
    serve (readiness stays true while it is open).
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        reset_timeout_s: float = 2.0,
        optional: bool = True,
        effect: str = "",
        hint: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout_s <= 0:
            raise ValueError("reset_timeout_s must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.optional = optional
        self.effect = effect
        self.hint = hint
        self.observer = observer
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False  # a half-open trial call is out
        self.last_error: str | None = None

    @property
    def state(self) -> State:
        """The state now (an open breaker whose time is up reads half-open)."""
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.reset_timeout_s:
                return "half_open"
            return self._state

    def allow(self) -> bool:
        """Whether a call may go to the dependency now; a True in half-open state is
        the one trial, and its caller must report `success` or `failure`."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self._clock() - self._opened_at < self.reset_timeout_s:
                    return False
                self._set("half_open")
            if self._trial:
                return False
            self._trial = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trial = False
            self.last_error = None
            if self._state != "closed":
                self._set("closed")

    def release(self) -> None:
        """A call that ended without an outcome (cancelled): free a half-open trial."""
        with self._lock:
            self._trial = False

    def failure(self, error: BaseException | str | None = None) -> None:
        with self._lock:
            self._failures += 1
            self._trial = False
            if error is not None:
                self.last_error = str(error)
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                if self._state != "open":
                    self._set("open")

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial through (0 unless open)."""
        with self._lock:
            if self._state != "open":
                return 0.0
            return max(0.0, self.reset_timeout_s - (self._clock() - self._opened_at))

    def rejection(self) -> Unavailable:
        """The error a call gets while the breaker is open."""
        wait = self.retry_after()
        cause = f": {self.last_error}" if self.last_error else ""
        effect = f"; {self.effect}" if self.effect else ""
        return Unavailable(
            f"{self.name} is unavailable (circuit open after {self.failure_threshold} "
            f"failures in a row{cause}); calls fail fast and the next try is in {wait:.1f} s"
            f"{effect}",
            hint=self.hint,
            retry_after=max(1, round(wait + 0.5)),
        )

    def check(self) -> None:
        """Raise `rejection` unless a call may go through now."""
        if not self.allow():
            raise self.rejection()

    @contextmanager
    def guard(self, failures: tuple[type[BaseException], ...] = (Exception,)) -> Iterator[None]:
        """Run the block as one call: refused while open, its ``failures`` counted.

        Exceptions not in ``failures`` pass through and count as a success: the
        dependency answered (a bad request is not an outage).
        """
        self.check()
        try:
            yield
        except failures as exc:
            self.failure(exc)
            raise
        except Exception:
            self.success()
            raise
        except BaseException:  # cancelled or interrupted: says nothing of the dependency
            self.release()
            raise
        self.success()

    def describe(self) -> dict[str, object]:
        """What ``/health/ready`` shows of this dependency."""
        state = self.state
        body: dict[str, object] = {
            "status": "ok" if state == "closed" else state,
            "optional": self.optional,
        }
        if self.last_error and state != "closed":
            body["error"] = self.last_error
        return body

    def _set(self, state: State) -> None:
        self._state = state
        if self.observer is not None:
            self.observer(self.name, state)
