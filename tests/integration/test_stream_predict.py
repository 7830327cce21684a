"""``modelport stream predict`` on real Redis Streams: one answer per event, the
predictions of the same full rows, logged, bad events answered alone, kill -9 safe."""

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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelport.client import Client
from modelport.features.online import OnlineStore, open_store
from modelport.features.streams import connect, decode, group_backlog, publish_many
from modelport.features.views import Aggregation, Feature, FeatureView, StreamSource
from modelport.monitoring.logstore import LogStore
from modelport.registry.features import FeatureViewStore
from modelport.settings import Settings

REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
USERS = 6


class Env:
    """A Modelport home whose ``clf`` endpoint joins a stream view (``d``: events per
    user in the last hour, fed from the input stream) and a push view (``b``)."""

    def __init__(self, home: Path, model: tuple[Path, pd.DataFrame]) -> None:
        self.settings = Settings(home=home, online_store=REDIS_URL, stream_url=REDIS_URL)
        self.client = Client(self.settings)
        self.store: OnlineStore = open_store(
            self.settings.model_copy(update={"feature_timeout_seconds": 10})
        )
        tag = uuid.uuid4().hex[:10]
        self.input, self.output = f"events_{tag}", f"scores_{tag}"
        self.stats = FeatureView(
            name=f"stats_{tag}",
            entity="user_id",
            aggregations=(Aggregation("d", "count", None, 3600.0),),
            source=StreamSource(stream=self.input, timestamp_field="ts"),
        )
        self.profile = FeatureView(
            name=f"profile_{tag}", entity="user_id", features=(Feature("b"),)
        )
        views = FeatureViewStore(self.client.registry.engine)
        views.put(self.stats)
        views.put(self.profile)
        path, frame = model
        self.client.register_model("clf", path, owner="ana@example.com", sample_input=frame)
        self.client.deploy("clf", "models:/clf/1", features=[self.profile.name, self.stats.name])
        #: each user's ``b``, in the push view
        self.b = {f"u{i}": round(0.4 * i - 1.0, 2) for i in range(USERS)}
        self.store.write(self.profile.name, {u: ({"b": b}, time.time()) for u, b in self.b.items()})
        self.env = os.environ | {
            "MODELPORT_HOME": str(home),
            "MODELPORT_ONLINE_STORE": REDIS_URL,
            "MODELPORT_STREAM_URL": REDIS_URL,
        }

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "modelport.cli.main", *args]

    def predict_args(self, *extra: str) -> list[str]:
        return ["stream", "predict", "clf", "--input", self.input, "--output", self.output, *extra]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.env, capture_output=True, text=True, timeout=240
        )

    def outputs(self) -> list[dict[str, Any]]:
        redis = connect(REDIS_URL)
        try:
            entries: Any = redis.xrange(self.output)
            return [decode(fields) for _, fields in entries]
        finally:
            redis.close()

    def close(self) -> None:
        redis = connect(REDIS_URL)
        redis.delete(self.input, self.output)
        redis.close()
        for view in (self.stats, self.profile):
            self.store.delete_view(view.name)
        self.store.close()
        self.client.close()


@pytest.fixture
def env(tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Iterator[Env]:
    e = Env(tmp_path / "home", sklearn_classifier)
    yield e
    e.close()


def events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` events of the last few minutes: a user and the request-time columns a, c."""
    rng = random.Random(seed)
    now = time.time()
    return [
        {
            "user_id": f"u{rng.randrange(USERS)}",
            "a": round(rng.uniform(-2, 2), 3),
            "c": round(rng.uniform(-2, 2), 3),
            "ts": round(now - 300 + i * 0.01, 3),
        }
        for i in range(n)
    ]


def publish(env: Env, sent: list[dict[str, Any]]) -> list[str]:
    """XADD ``sent`` to the input stream; their message ids, in order."""
    publish_many(REDIS_URL, env.input, sent)
    redis = connect(REDIS_URL)
    try:
        entries: Any = redis.xrange(env.input)
        return [str(mid) for mid, _ in entries]
    finally:
        redis.close()


def test_every_event_gets_the_prediction_of_its_full_row(env: Env) -> None:
    sent = events(60)
    ids = publish(env, sent)

    run = env.cli("--json", *env.predict_args("--once"))
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert (stats["processed"], stats["predicted"], stats["failed"]) == (60, 60, 0)
    assert (stats["batches"], stats["lag"], stats["pending"]) == (1, 0, 0)

    outputs = env.outputs()
    assert [o["event_id"] for o in outputs] == ids
    # one batch: each event sees its user's count over the whole batch
    counts = {u: sum(e["user_id"] == u for e in sent) for u in env.b}
    rows = [
        {"a": e["a"], "b": env.b[e["user_id"]], "c": e["c"], "d": counts[e["user_id"]]}
        for e in sent
    ]
    want = env.client.predict("models:/clf/1", rows)
    assert [o["prediction"] for o in outputs] == want.outputs["label"].tolist()
    got = np.array([o["outputs"]["probabilities"] for o in outputs])
    # the server may run the compiled (float32) form of the model
    np.testing.assert_allclose(got, want.outputs["probabilities"], atol=1e-5)
    assert {(o["endpoint"], o["model"], o["version"], o["variant"]) for o in outputs} == {
        ("clf", "clf", 1, "clf-v1")
    }

    logged = LogStore(env.settings).query(
        "SELECT prediction_id, status, in_b, in_d FROM predictions WHERE endpoint = 'clf'"
    )
    rows_logged = {r["prediction_id"]: r for r in logged.to_pylist()}
    assert len(rows_logged) == 60
    assert set(rows_logged) == {o["prediction_id"] for o in outputs}
    first = rows_logged[outputs[0]["prediction_id"]]
    assert (first["in_b"], first["in_d"]) == (env.b[sent[0]["user_id"]], counts[sent[0]["user_id"]])


def test_a_bad_event_is_answered_with_its_error_and_the_stream_goes_on(env: Env) -> None:
    sent = events(20)
    del sent[3]["user_id"]  # no entity key: the stream view cannot take it
    sent[7]["a"] = "oops"  # the model's signature cannot: the batch falls back to one each
    ids = publish(env, sent)

    run = env.cli("--json", *env.predict_args("--once", "--batch", "10"))
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert (stats["processed"], stats["predicted"], stats["failed"]) == (20, 18, 2)
    assert (stats["lag"], stats["pending"]) == (0, 0)

    outputs = env.outputs()
    assert [o["event_id"] for o in outputs] == ids
    errors = {o["event_id"]: o for o in outputs if "error" in o}
    assert set(errors) == {ids[3], ids[7]}
    assert errors[ids[3]]["code"] == "invalid_input"
    assert "no entity key 'user_id'" in errors[ids[3]]["error"]
    assert errors[ids[7]]["code"] == "signature_mismatch"
    assert "'a'" in errors[ids[7]]["error"]
    assert all(isinstance(o["prediction"], int) for o in outputs if "error" not in o)

    status = env.cli("--json", "stream", "status", "--endpoint", "clf", "--input", env.input)
    assert status.returncode == 0, status.stderr
    backlog = json.loads(status.stdout)
    assert (backlog["group"], backlog["lag"], backlog["pending"]) == ("modelport.predict.clf", 0, 0)


def test_kill_9_mid_stream_then_restart_answers_every_event(env: Env) -> None:
    n, batch = 3000, 10
    ids = publish(env, events(n, seed=5))
    args = env.predict_args("--consumer", "c1", "--batch", str(batch), "--once")

    proc = subprocess.Popen(env.command(*args), env=env.env, stderr=subprocess.PIPE)
    redis = connect(REDIS_URL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and redis.xlen(env.output) < 300:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
    redis.close()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()
    stopped = group_backlog(REDIS_URL, env.input, "modelport.predict.clf")
    assert stopped is not None and stopped.lag, "killed after the end: nothing to resume"

    resumed = env.cli("--json", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert (json.loads(resumed.stdout)["lag"], json.loads(resumed.stdout)["pending"]) == (0, 0)
    answered = [o["event_id"] for o in env.outputs()]
    assert set(answered) == set(ids)  # every event answered at least once ...
    assert len(answered) - n <= batch  # ... and at most the batch in flight twice
    assert all("error" not in o for o in env.outputs())


def test_sigterm_stops_a_running_predictor_cleanly(env: Env) -> None:
    ids = publish(env, events(50))
    proc = subprocess.Popen(
        env.command("--json", *env.predict_args()),
        env=env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    redis = connect(REDIS_URL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and redis.xlen(env.output) < len(ids):
        assert proc.poll() is None
        time.sleep(0.05)
    redis.close()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    stats = json.loads(stdout)
    assert (stats["processed"], stats["predicted"], stats["pending"]) == (50, 50, 0)
