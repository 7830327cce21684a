"""Progressive rollouts on the real server under load: a good candidate reaches 100% on
its own; one that fails 20% of requests, or is much slower, is rolled back at its first
judgement and the owner's receiver gets the incident. No live request fails."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from modelport.client import Client
from modelport.config import apply, plan_file
from modelport.registry import DeploymentSpec, RolloutPolicy
from modelport.registry.rollouts import Rollout
from modelport.registry.watching import WatchStore
from modelport.settings import Settings
from tests.integration.conftest import LiveServer, start_server, stop_server
from tests.receivers import HttpReceiver

GOOD = "class Model:\n    def predict(self, frame):\n        return frame['a'] * 2\n"
LOAD = "    def load(self, path):\n        pass\n"
FLAKY = (  # fails the requests whose a is 0.03, 0.08, 0.13, ...: a fifth of the load's
    "class Model:\n"
    "    def predict(self, frame):\n"
    "        if (frame['a'] * 100).round().astype(int).mod(5).eq(3).any():\n"
    "            raise ValueError('flaky')\n"
    "        return frame['a'] * 2\n"
)
SLOW = (
    "import time\n"
    "class Model:\n"
    "    def predict(self, frame):\n"
    "        time.sleep(0.3)\n"
    "        return frame['a'] * 2\n"
)
#: Quick steps; p99 judged with room for a loaded test machine (the slow candidate is
#: ten times slower than live, a good one rarely twice).
POLICY = RolloutPolicy(
    steps=(10.0, 50.0, 100.0), interval_s=2.0, min_requests=20, max_p99_ratio=4.0
)
SERVER_ENV = {
    "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
    "MODELPORT_ROLLOUT_INTERVAL_SECONDS": "0.5",
    "MODELPORT_LOG_FLUSH_SECONDS": "0.2",
    "MODELPORT_MONITOR_INTERVAL_SECONDS": "0",
    "MODELPORT_WORKERS": "1",
}


def register(client: Client, tmp_path: Path, source: str) -> int:
    folder = tmp_path / f"scorer-{len(list(tmp_path.glob('scorer-*')))}"
    folder.mkdir()
    (folder / "model.py").write_text(f"# {folder.name}\n{source}{LOAD}")
    sample = pd.DataFrame({"a": [0.1, 0.2]})
    mv = client.register_model("scorer", folder, flavor="custom", trust=True, sample_input=sample)
    return mv.version


@pytest.fixture
def scorer(
    client: Client, tmp_path: Path, http: HttpReceiver
) -> Iterator[Callable[[], LiveServer]]:
    """scorer v1 (good) deployed with a quick rollout policy, rollback notices routed to
    a webhook; starts the server on demand."""
    client.registry.ensure_model("scorer", owner="ana@example.com", team="risk")
    register(client, tmp_path, GOOD)
    spec = DeploymentSpec.single("scorer", 1, source="models:/scorer/1")
    client.registry.set_deployment(
        "production", "scorer", DeploymentSpec(spec.variants, rollout=POLICY)
    )
    alerting = {
        "alerting": {
            "receivers": [{"name": "hook", "webhook": {"url": f"{http.url}/hook"}}],
            "route": {"receiver": "hook", "group_wait": "0s"},
            "default_rules": False,
        }
    }
    file = tmp_path / "modelport.yaml"
    file.write_text(yaml.safe_dump(alerting))
    apply(client, plan_file(client, file))
    servers: list[LiveServer] = []

    def run() -> LiveServer:
        env = os.environ | SERVER_ENV | {"MODELPORT_HOME": str(client.settings.home)}
        servers.append(start_server(env, tmp_path / f"server-{len(servers)}.log"))
        return servers[-1]

    yield run
    for server in servers:
        stop_server(server)


class Load:
    """Four threads sending single-row requests until stopped; every answer kept."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.variants: list[str] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(4)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                body = {"dataframe_records": [{"a": (i % 100) / 100}]}
                reply = http.post("/v1/endpoints/scorer/predict", json=body)
                self.variants.append(reply.headers.get("modelport-variant", "?"))
                if reply.status_code != 200:
                    self.failures.append(f"{reply.status_code} {reply.text[:200]}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def wait_until_over(client: Client, rollout_id: int, timeout: float = 90.0) -> Rollout:
    rollouts = client.rollouts("production")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rollout = rollouts.get(rollout_id)
        if not rollout.active:
            return rollout
        time.sleep(0.2)
    raise AssertionError(f"rollout {rollout_id} still {rollouts.get(rollout_id).to_dict()}")


def test_a_good_candidate_reaches_all_traffic_without_a_human(
    client: Client, settings: Settings, tmp_path: Path, scorer: Callable[[], LiveServer]
) -> None:
    server = scorer()
    version = register(client, tmp_path, GOOD)
    with Load(server) as load:
        rollout = client.rollouts("production").start("scorer", f"models:/scorer/{version}")
        assert rollout.step == 0 and rollout.percent == 10
        done = wait_until_over(client, rollout.id)
        time.sleep(1)  # the server swaps on its next poll
    assert done.state == "succeeded", done.to_dict()
    judged = [a["verdict"] for a in done.analyses if a["verdict"] != "wait"]
    assert judged == ["pass", "pass"], done.analyses  # waits (too little traffic) aside
    deployment = client.get_deployment("scorer")
    assert [(v.name, v.weight) for v in deployment.spec.live] == [(f"scorer-v{version}", 100.0)]
    steps = [e.reason for e in client.history("scorer") if e.action == "rollout"]
    assert len(steps) == 3 and "at 100%" in (steps[-1] or "")
    assert load.failures == []
    assert {"scorer-v1", f"scorer-v{version}"} <= set(load.variants)
    assert load.variants[-1] == f"scorer-v{version}"


@pytest.mark.parametrize(
    ("source", "check"), [(FLAKY, "error_rate"), (SLOW, "p99_latency")], ids=["errors", "slow"]
)
def test_a_bad_candidate_is_rolled_back_at_its_first_judgement_and_the_owner_told(
    client: Client,
    tmp_path: Path,
    scorer: Callable[[], LiveServer],
    http: HttpReceiver,
    source: str,
    check: str,
) -> None:
    server = scorer()
    version = register(client, tmp_path, source)
    with Load(server) as load:
        rollout = client.rollouts("production").start("scorer", f"models:/scorer/{version}")
        done = wait_until_over(client, rollout.id)
        time.sleep(1.0)  # the server swaps back on its next poll
        served_after = len(load.variants)
        time.sleep(0.5)
    assert done.state == "rolled_back", done.to_dict()
    assert done.step == 0 and len(done.analyses) >= 1  # judged once (after waits for traffic)
    failed = [c["check"] for c in done.analyses[-1]["checks"] if c["result"] == "fail"]
    assert check in failed
    deployment = client.get_deployment("scorer")
    assert [v.name for v in deployment.spec.variants] == ["scorer-v1"]
    assert client.history("scorer")[-1].action == "rollback"
    assert set(load.variants[served_after:]) == {"scorer-v1"}
    # live failures come only from the candidate's own share of traffic
    if check == "p99_latency":
        assert load.failures == []

    def notified() -> list[dict[str, Any]]:
        return [r.json() for r in http.requests if r.json()["status"] == "firing"]

    deadline = time.monotonic() + 20
    while not notified() and time.monotonic() < deadline:
        time.sleep(0.2)
    (notice,) = notified()
    alert = notice["alerts"][0]
    assert alert["labels"]["alertname"] == "RolloutRolledBack"
    assert alert["labels"]["owner"] == "ana@example.com"
    assert check in alert["annotations"]["description"]
    done = client.rollouts("production").get(rollout.id)  # the incident is noted after
    assert done.incident_id is not None
    incident = WatchStore(client.registry.engine).get_incident(done.incident_id)
    assert incident.diagnosis["failed_checks"][0]["check"] == check


def test_a_rollout_goes_on_after_its_server_restarts(
    client: Client, tmp_path: Path, scorer: Callable[[], LiveServer]
) -> None:
    first = scorer()
    version = register(client, tmp_path, GOOD)
    rollout = client.rollouts("production").start("scorer", f"models:/scorer/{version}")
    with Load(first):
        time.sleep(0.5)
    stop_server(first)  # before its first judgement
    assert client.rollouts("production").get(rollout.id).step == 0
    second = scorer()
    with Load(second) as load:
        done = wait_until_over(client, rollout.id)
    assert done.state == "succeeded", done.analyses
    assert load.failures == []
    steps = [e for e in client.history("scorer") if e.action == "rollout"]
    assert len(steps) == 3  # each step taken once
