"""Replaying logged production requests against staging, the shadow report, and both
through the CLI and HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from modelport.cli.main import app as cli_app
from modelport.client import Client, frame_columns
from modelport.errors import NotFound, SignatureMismatch
from modelport.monitoring.logwriter import PredictionLog
from modelport.monitoring.records import new_prediction_ids
from modelport.registry import DeploymentSpec, Variant
from modelport.replay import replay
from modelport.serving.app import create_app
from modelport.settings import Settings
from tests.conftest import classification_data
from tests.unit.monitoring.test_logwriter import answer

REQUESTS, ROWS = 4, 10


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", user="tester", compile_models=False, log_sample_rate=1.0
    )


@pytest.fixture
def two(client: Client, sklearn_classifier: tuple[Path, pd.DataFrame], tmp_path: Path) -> Client:
    """clf v1 (the fixture's model) and v2 (more regularised: some answers differ)."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    path, frame = sklearn_classifier
    client.register_model("clf", path, sample_input=frame)
    x, y = classification_data()
    other = tmp_path / "clf2.skops"
    sio.dump(LogisticRegression(C=0.002).fit(x, y), other)
    client.register_model("clf", other, sample_input=frame)
    client.deploy("clf", "models:/clf/1", env="production")
    return client


def log_production(client: Client, *, shadow: str | None = None) -> pd.DataFrame:
    """Log REQUESTS answered requests of v1 (and ``shadow``'s copies); the rows sent."""
    frame = classification_data(REQUESTS * ROWS, seed=7)[0]
    mv, runtime = client.load("models:/clf/1")
    shadow_mv, shadow_runtime = client.load(shadow) if shadow else (None, None)
    log = PredictionLog(client.settings, "production")
    for i in range(REQUESTS):
        columns = frame_columns(mv.signature, frame.iloc[i * ROWS : (i + 1) * ROWS])
        ids = new_prediction_ids(ROWS)
        log.record("clf", mv, "clf-v1", ids, columns, runtime.predict(columns), 0.003)
        if shadow_mv is not None and shadow_runtime is not None:
            answer_ = shadow_runtime.predict(columns)
            variant = f"clf-v{shadow_mv.version}"
            log.record("clf", shadow_mv, variant, ids, columns, answer_, 0.02, shadow=True)
    log.close()
    return frame


def predicted_labels(client: Client, uri: str, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(client.predict(uri, frame).outputs["label"])


def test_replaying_the_same_version_agrees_everywhere(two: Client) -> None:
    log_production(two)
    two.deploy("clf", "models:/clf/1", env="staging")
    report = replay(two, "clf", source="production", target="staging", window="1h", batch_rows=16)
    c = report.comparison
    assert report.rows == REQUESTS * ROWS and report.requests == REQUESTS
    assert report.source_versions == ("models:/clf/1",)
    assert report.target_version == "models:/clf/1" and report.batches == 3
    assert c.task == "classification" and c.pairs == REQUESTS * ROWS
    assert c.disagreement == 0.0 and c.agreement == 1.0 and c.failures == 0
    assert c.probability_mad is not None and c.probability_mad < 1e-12
    assert c.live_p99_s == pytest.approx(0.003) and c.candidate_p99_s is None
    assert report.rows_per_s is not None and report.rows_per_s > 0
    data = report.to_dict()
    assert data["comparison"]["pairs"] == REQUESTS * ROWS and data["target"] == "staging"
    json.dumps(data)


def test_replaying_another_version_counts_its_disagreements(two: Client) -> None:
    frame = log_production(two)
    two.deploy("clf", "models:/clf/2", env="staging")
    report = replay(two, "clf", target="staging", limit=20)
    assert report.rows == 20 and report.target_version == "models:/clf/2"
    v1 = predicted_labels(two, "models:/clf/1", frame)
    v2 = predicted_labels(two, "models:/clf/2", frame)
    newest = slice(len(frame) - 20, len(frame))  # the limit keeps the newest rows
    expected = float(np.mean(v1[newest] != v2[newest]))
    assert 0 < expected < 1  # the two versions do differ on these rows
    assert report.comparison.disagreement == pytest.approx(expected)


def test_replay_errors_say_what_is_missing(two: Client) -> None:
    with pytest.raises(NotFound, match="not deployed in staging") as undeployed:
        replay(two, "clf", target="staging")
    assert undeployed.value.hint and "--env staging" in undeployed.value.hint
    two.deploy("clf", "models:/clf/2", env="staging")
    with pytest.raises(NotFound, match="no answered requests of 'clf'") as empty:
        replay(two, "clf", target="staging")
    assert empty.value.hint and "modelport logs tail clf" in empty.value.hint
    log = PredictionLog(two.settings, "production")  # requests of a model taking a, b only
    columns, prediction = answer(3)
    mv = two.get_version("models:/clf/1")
    log.record("ab", mv, "clf-v1", new_prediction_ids(3), columns, prediction, 0.001)
    log.close()
    two.deploy("ab", "models:/clf/2", env="staging")
    with pytest.raises(SignatureMismatch, match=r"input column\(s\) \['c', 'd'\]"):
        replay(two, "ab", target="staging")
    with pytest.raises(NotFound, match="no answered requests"):
        replay(two, "ab", source="staging", target="staging")


def test_cli_replay_and_shadow(two: Client) -> None:
    two.registry.set_deployment(
        "production",
        "clf",
        DeploymentSpec(variants=(Variant("clf", 1), Variant("clf", 2, shadow=True))),
        actor="tester",
    )
    log_production(two, shadow="models:/clf/2")
    two.deploy("clf", "models:/clf/1", env="staging")
    home = ["--home", str(two.settings.home)]
    runner = CliRunner(env={"COLUMNS": "200"})
    args = ["replay", "clf", "--from", "production", "--to", "staging", "--window", "1h"]
    done = runner.invoke(cli_app, [*home, *args, "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["comparison"]["disagreement"] == 0.0 and data["rows"] == REQUESTS * ROWS
    shown = runner.invoke(cli_app, [*home, "replay", "clf", "--to", "staging"])
    assert shown.exit_code == 0, shown.output
    assert "replayed 40 rows (4 requests)" in shown.output
    missing = runner.invoke(cli_app, [*home, "replay", "clf", "--to", "canary"])
    assert missing.exit_code == 4 and "not deployed in canary" in missing.output
    args = ["shadow", "clf", "--since", "1h", "--env", "production", "--json"]
    report = runner.invoke(cli_app, [*home, *args])
    assert report.exit_code == 0, report.output
    [row] = json.loads(report.output)["shadows"]
    assert row["variant"] == "clf-v2" and row["pairs"] == REQUESTS * ROWS
    assert row["candidate_p99_s"] == pytest.approx(0.02)
    table = runner.invoke(cli_app, [*home, "shadow", "clf"])
    assert table.exit_code == 0, table.output
    assert "live: models:/clf/1" in table.output and "models:/clf/2" in table.output
    assert "disagreement" in table.output


def test_http_shadow_report_and_replay(two: Client) -> None:
    two.registry.set_deployment(
        "production",
        "clf",
        DeploymentSpec(variants=(Variant("clf", 1), Variant("clf", 2, shadow=True))),
        actor="tester",
    )
    frame = log_production(two, shadow="models:/clf/2")
    settings = two.settings.model_copy(update={"log_sample_rate": 0.0})
    with TestClient(create_app(settings, client=Client(settings))) as server:
        shadow = server.get("/v1/endpoints/clf/shadow", params={"since": "1h"})
        assert shadow.status_code == 200, shadow.text
        body = shadow.json()
        assert body["environment"] == "production" and body["live"] == ["models:/clf/1"]
        [row] = body["shadows"]
        v1 = predicted_labels(two, "models:/clf/1", frame)
        v2 = predicted_labels(two, "models:/clf/2", frame)
        assert row["pairs"] == REQUESTS * ROWS
        assert row["disagreement"] == pytest.approx(float(np.mean(v1 != v2)))
        assert server.get("/v1/endpoints/nope/shadow").status_code == 404

        two.deploy("clf", "models:/clf/1", env="staging")
        replayed = server.post(
            "/v1/endpoints/clf/replay", json={"from": "production", "to": "staging", "window": "1h"}
        )
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["comparison"]["disagreement"] == 0.0
        bad = server.post("/v1/endpoints/clf/replay", json={"form": "production"})
        assert bad.status_code == 400 and "unexpected replay field" in bad.text
        assert server.post("/v1/endpoints/clf/replay", json={"to": "canary"}).status_code == 404

        # The same replay through a running server (here: the production one) over HTTP.
        over_http = replay(two, "clf", target="production", url="http://testserver", http=server)
        assert over_http.url == "http://testserver" and over_http.target_version == "models:/clf/1"
        assert over_http.comparison.pairs == REQUESTS * ROWS
        assert over_http.comparison.disagreement == 0.0
        assert over_http.comparison.probability_mad is not None
        assert over_http.comparison.probability_mad < 1e-9

        # A server that asks for keys gets the one given, on every batch.
        keyed = KeyedSession(server)
        replay(two, "clf", target="production", url="http://testserver", http=keyed, api_key="k1")
        assert keyed.seen and set(keyed.seen) == {"Bearer k1"}


class KeyedSession:
    """An HTTP session that notes the authorization header of each request."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[str | None] = []

    def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Any:
        self.seen.append(headers.get("authorization"))
        return self.inner.post(url, content=content, headers=headers)
