"""``modelport stream run`` on real Redis Streams: the batch path's values, kill -9 safe."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from modelport.client import Client
from modelport.features.aggregates import State, read, replay
from modelport.features.online import Lookup, OnlineStore, open_store
from modelport.features.streams import connect, group_backlog, publish_many
from modelport.features.views import Aggregation, Feature, FeatureView, StreamSource
from modelport.registry.features import FeatureViewStore
from modelport.settings import Settings

REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_000.0
USERS = 25
#: Aggregations are read at this time: after the last event.
NOW = T0 + 6000.0


def tx_view(name: str, stream: str) -> FeatureView:
    return FeatureView(
        name=name,
        entity="user_id",
        aggregations=(
            Aggregation("tx_count_1h", "count", None, 3600.0),
            Aggregation("amount_sum_10m", "sum", "amount", 600.0),
            Aggregation("amount_mean_1h", "mean", "amount", 3600.0),
            Aggregation("amount_max_5m", "max", "amount", 300.0),
            Aggregation("merchants_1h", "distinct_count", "merchant", 3600.0),
            Aggregation("last_merchant_1h", "last", "merchant", 3600.0),
        ),
        source=StreamSource(
            stream=stream, timestamp_field="ts", id_field="event_id", allowed_lateness_s=60.0
        ),
    )


def generate(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` events over ~5,500 s: a fifth up to 50 s out of order (within the lateness),
    a tenth with ISO 8601 times, and ~3% more: an earlier event sent again (same id)."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(n):
        ts = round(T0 + i * 5500.0 / n - (rng.uniform(0, 50) if rng.random() < 0.2 else 0), 3)
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "user_id": f"u{rng.randrange(USERS)}",
            "amount": round(rng.uniform(1, 500), 2),
            "merchant": f"m{rng.randrange(40)}",
            "ts": ts,
        }
        if rng.random() < 0.1:
            event["ts"] = datetime.fromtimestamp(int(ts), UTC).isoformat()
        events.append(event)
        if rng.random() < 0.03:
            events.append(dict(rng.choice(events)))  # a producer's retry
    return events


def event_ts(event: dict[str, Any]) -> float:
    ts = event["ts"]
    return datetime.fromisoformat(ts).timestamp() if isinstance(ts, str) else float(ts)


def expected(view: FeatureView, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The batch path: `aggregates.replay` over the events, each id once."""
    seen: set[str] = set()
    unique = []
    for e in events:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            unique.append(e)
    states = replay(view, ((e["user_id"], e, event_ts(e)) for e in unique))
    return {key: read(view, state, NOW) for key, state in states.items()}


def online(store: OnlineStore, view: FeatureView) -> dict[str, dict[str, Any]]:
    keys = [f"u{i}" for i in range(USERS)]
    (states,) = store.read([Lookup(view.name, "state", keys)])
    return {
        k: read(view, cast(State, s), NOW)
        for k, s in zip(keys, states, strict=True)
        if s is not None
    }


class Env:
    """A Modelport home with stream views registered, its online store, and the CLI."""

    def __init__(self, home: Path, online_store: str) -> None:
        self.settings = Settings(home=home, online_store=online_store, stream_url=REDIS_URL)
        self.client = Client(self.settings)
        self.views = FeatureViewStore(self.client.registry.engine)
        self.store = open_store(self.settings.model_copy(update={"feature_timeout_seconds": 10}))
        self.env = os.environ | {
            "MODELPORT_HOME": str(home),
            "MODELPORT_ONLINE_STORE": online_store,
            "MODELPORT_STREAM_URL": REDIS_URL,
            "COLUMNS": "200",
        }
        self.names: list[str] = []

    def name(self, what: str) -> str:
        name = f"{what}_{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "modelport.cli.main", *args]

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=240,
        )

    def close(self) -> None:
        redis = connect(REDIS_URL)
        for name in self.names:
            redis.delete(name)  # a stream, with its groups
            self.store.delete_view(name)
        redis.close()
        self.store.close()
        self.client.close()


@pytest.fixture
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """The Redis online store, or the one a test names with ``indirect``."""
    kind = getattr(request, "param", "redis")
    e = Env(tmp_path / "home", REDIS_URL if kind == "redis" else kind)
    yield e
    e.close()


@pytest.mark.parametrize("env", ["redis", "sqlite"], indirect=True)
def test_stream_run_gives_the_batch_paths_values(env: Env, tmp_path: Path) -> None:
    stream = env.name("tx")
    view = tx_view(env.name("user_tx"), stream)
    env.views.put(view)
    events = generate(5000)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))

    published = env.cli("--json", "stream", "publish", stream, "--file", str(path))
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["published"] == len(events)
    run = env.cli("--json", "stream", "run", view.name, "--once", "--batch", "500")
    assert run.returncode == 0, run.stderr

    stats = json.loads(run.stdout)[view.name]
    duplicates = len(events) - 5000
    assert duplicates > 100
    assert stats["processed"] == len(events)
    assert (stats["applied"], stats["duplicates"], stats["malformed"]) == (5000, duplicates, 0)
    assert (stats["lag"], stats["pending"]) == (0, 0)
    want = expected(view, events)
    assert len(want) == USERS
    assert online(env.store, view) == want


def test_kill_9_mid_stream_then_restart_counts_every_event_once(env: Env) -> None:
    stream = env.name("tx")
    crashed, whole = tx_view(env.name("crashed"), stream), tx_view(env.name("whole"), stream)
    env.views.put(crashed)
    env.views.put(whole)
    events = generate(20_000, seed=11)
    publish_many(REDIS_URL, stream, events)
    args = ("stream", "run", crashed.name, "--consumer", "c1", "--batch", "100", "--once")

    proc = subprocess.Popen(env.command(*args), env=env.env, stderr=subprocess.PIPE)
    group = "modelport." + crashed.name
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        backlog = group_backlog(REDIS_URL, stream, group)
        if backlog is not None and backlog.length - (backlog.lag or 0) - backlog.pending >= 3000:
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()
    stopped = group_backlog(REDIS_URL, stream, group)
    assert stopped is not None and stopped.lag, "killed after the end: nothing to resume"

    resumed = env.cli("--json", *args)
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = env.cli("--json", "stream", "run", whole.name, "--once", "--batch", "500")
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    assert json.loads(uninterrupted.stdout)[whole.name]["applied"] == 20_000
    after = json.loads(resumed.stdout)[crashed.name]
    assert after["pending"] == 0
    got = online(env.store, crashed)
    assert got == online(env.store, whole)
    assert got == expected(crashed, events)


def test_malformed_events_are_skipped_and_a_batch_view_refused(env: Env) -> None:
    stream = env.name("tx")
    view = tx_view(env.name("user_tx"), stream)
    profile = FeatureView(name=env.name("profile"), entity="user_id", features=(Feature("age"),))
    env.views.put(view)
    env.views.put(profile)
    lines = [
        {"event_id": "a", "user_id": "u1", "amount": 3.0, "ts": T0},
        {"event_id": "b", "amount": 3.0, "ts": T0},  # no key
        {"event_id": "c", "user_id": "u1", "amount": 3.0, "ts": "tomorrow"},
        {"event_id": "d", "user_id": "u1", "amount": 4.0, "ts": T0 + 1},
    ]
    stdin = "".join(json.dumps(e) + "\n" for e in lines)
    assert env.cli("stream", "publish", stream, input=stdin).returncode == 0

    run = env.cli("--json", "stream", "run", view.name, "--once")
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)[view.name]
    assert (stats["processed"], stats["applied"], stats["malformed"]) == (4, 2, 2)
    assert "no entity key 'user_id'" in run.stderr
    assert "timestamp 'tomorrow' is neither epoch seconds nor ISO 8601" in run.stderr
    assert online(env.store, view)["u1"]["tx_count_1h"] == 0  # read at NOW: out of window
    status = env.cli("--json", "stream", "status", view.name)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) | {"last_delivered": None} == {
        "view": view.name,
        "stream": stream,
        "group": f"modelport.{view.name}",
        "started": True,
        "lag": 0,
        "pending": 0,
        "length": 4,
        "last_delivered": None,
        "consumers": 1,
    }

    refused = env.cli("stream", "run", profile.name, "--once")
    assert refused.returncode == 3
    assert f"feature view {profile.name!r} is a push view" in refused.stderr
