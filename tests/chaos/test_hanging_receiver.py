"""An alert receiver that hangs: the alert loop goes on, the other receiver gets every
notification, and the hanging one's circuit opens so its retries stop holding threads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from modelport.alerting.engine import AlertEngine
from modelport.alerting.notifiers import RECEIVER_FAILURES
from modelport.alerting.watchconfig import DOCUMENT
from modelport.client import Client
from modelport.registry.watching import WatchStore
from tests.chaos.conftest import wait_for
from tests.receivers import running_hanging, running_http

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ENDPOINTS = 8
THREADS = 4  # the engine's delivery threads


class FailingTraffic:
    """Stands in for the log store: every endpoint fails a fifth of its requests."""

    def traffic(self, endpoint: str, *, since: datetime, until: datetime) -> Mapping[str, Any]:
        return {"requests": 1000, "errors": 200, "error_rate": 0.2, "p50_s": 0.001,
                "p99_s": 0.002, "requests_per_s": 10.0}  # fmt: skip

    def failures(self, endpoint: str, *, since: datetime, limit: int = 5) -> list[dict[str, Any]]:
        return []


def test_a_hanging_receiver_delays_neither_the_loop_nor_the_others(
    client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    path, frame = sklearn_classifier
    client.register_model("fraud", path, owner="ana@example.com", sample_input=frame)
    for n in range(ENDPOINTS):
        client.deploy(f"fraud-{n}", "models:/fraud/1", env="production")
    with running_hanging() as hanging, running_http() as good:
        store = WatchStore(client.registry.engine)
        store.put_document(
            DOCUMENT,
            {
                "receivers": [
                    {"name": "stuck", "webhook": {"url": hanging.url, "timeout": 0.5}},
                    {"name": "fine", "webhook": {"url": good.url + "/hook", "timeout": 0.5}},
                ],
                "route": {
                    "receiver": "stuck",
                    "group_by": ["endpoint"],
                    "group_wait": "0s",
                    "routes": [
                        {"match": {"severity": "critical"}, "receiver": "stuck", "continue": True},
                        {"match": {"severity": "critical"}, "receiver": "fine"},
                    ],
                },
                "default_rules": False,
                "rules": [{"name": "Errors", "signal": "error_rate", "threshold": 0.05,
                           "for": "1m", "severity": "critical", "window": "5m"}],
            },
        )  # fmt: skip
        engine = AlertEngine(
            client.registry,
            store,
            FailingTraffic(),  # type: ignore[arg-type]
            environment="production",
            base_url="http://mp.example:8000",
            retry_backoff_s=0.05,
        )
        try:
            assert engine.evaluate(T0).pending
            fired = engine.evaluate(T0 + timedelta(minutes=2))
            assert sorted({n.receiver for n in fired.notified}) == ["fine", "stuck"]
            assert len(fired.notified) == 2 * ENDPOINTS
            # The loop goes on while deliveries are out.
            for minutes in (3, 4):
                assert not engine.evaluate(T0 + timedelta(minutes=minutes)).notified
            wait_for(lambda: len(good.requests) == ENDPOINTS, "every notification to 'fine'")
        finally:
            engine.close()  # waits for every delivery
    print(
        f"\nhanging receiver: {ENDPOINTS} notifications each; 'fine' got {len(good.requests)}, "
        f"'stuck' was tried {hanging.connections} times (4 attempts each without a breaker: "
        f"{4 * ENDPOINTS})"
    )
    # Without the breaker every notification would try 4 times, each waiting the timeout.
    assert hanging.connections <= RECEIVER_FAILURES + THREADS + 1
