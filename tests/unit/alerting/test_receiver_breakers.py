"""Each receiver's circuit breaker in `deliver`: deliveries that keep failing open it,
an open one refuses at once (unretried, recorded), a success closes it, and one
delivery's own retries count once."""

from __future__ import annotations

import time

from modelport.alerting.notifiers import DeliveryAttempt, ReceiverBreakers, deliver
from modelport.errors import DeliveryError
from tests.unit.alerting.test_notifiers import make_notification


class Flaky:
    """Fails the first ``failures`` sends (as a timeout would), then delivers."""

    def __init__(self, failures: int, *, retryable: bool = True) -> None:
        self.name = "hook"
        self.failures, self.retryable, self.sends = failures, retryable, 0

    def send(self, notification: object) -> None:
        self.sends += 1
        if self.sends <= self.failures:
            raise DeliveryError("hook did not answer within 0.5s", retryable=self.retryable)


def test_failed_deliveries_open_the_circuit_and_a_success_closes_it() -> None:
    breakers = ReceiverBreakers(failure_threshold=3, reset_timeout_s=60)
    hook = Flaky(failures=100)
    for _ in range(3):
        assert not deliver(hook, make_notification(), attempts=1, breakers=breakers)
    assert breakers.states() == {"hook": "open"}

    attempts: list[DeliveryAttempt] = []
    assert not deliver(
        hook, make_notification(), attempts=4, breakers=breakers, on_attempt=attempts.append
    )
    assert hook.sends == 3  # refused without a send, and not retried
    [refused] = attempts
    assert not refused.ok and not refused.will_retry
    assert refused.error is not None and "alert receiver 'hook' is unavailable" in refused.error

    healed = Flaky(failures=0)
    fresh = ReceiverBreakers(failure_threshold=3, reset_timeout_s=0.001)
    for _ in range(3):
        deliver(Flaky(failures=100), make_notification(), attempts=1, breakers=fresh)
    assert fresh.states() == {"hook": "open"}
    time.sleep(0.01)  # past the reset timeout: the next delivery is the trial
    assert deliver(healed, make_notification(), attempts=1, breakers=fresh)
    assert fresh.states() == {"hook": "closed"}


def test_one_delivery_retrying_counts_once() -> None:
    breakers = ReceiverBreakers(failure_threshold=2, reset_timeout_s=60)
    hook = Flaky(failures=3)
    waits: list[float] = []
    assert deliver(hook, make_notification(), attempts=4, sleep=waits.append, breakers=breakers)
    assert hook.sends == 4 and breakers.states() == {"hook": "closed"}


def test_an_answer_that_refuses_counts_as_reachable() -> None:
    breakers = ReceiverBreakers(failure_threshold=1, reset_timeout_s=60)
    hook = Flaky(failures=5, retryable=False)  # a 4xx: the receiver answered
    for _ in range(3):
        assert not deliver(hook, make_notification(), breakers=breakers)
    assert hook.sends == 3 and breakers.states() == {"hook": "closed"}
