"""Precomputed endpoints in process: keys answered from a published run, the version
and time they were computed, unknown keys 404 or predicted online."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from modelport.batch.publish import publish
from modelport.batch.spec import Manifest
from modelport.client import Client
from modelport.errors import InvalidConfig
from modelport.features.views import Feature, FeatureView
from modelport.registry.entities import Precomputed
from modelport.registry.features import FeatureViewStore
from tests.unit.batch.test_publish import FINISHED, write_run

ROWS = {
    "u1": {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0},
    "u2": {"a": -2.0, "b": 0.3, "c": 1.5, "d": 0.0},
    "u3": {"a": 1.0, "b": 1.0, "c": -1.0, "d": 0.5},
}


def scored_run(client: Client, output: Path, users: list[str], version: int = 1) -> Manifest:
    """A run of clf (``version``) over ``users``, with what that version predicts."""
    frame = pd.DataFrame([ROWS[u] for u in users])
    prediction = client.predict(f"models:/clf/{version}", frame)
    return write_run(
        output,
        {
            "label": prediction.outputs["label"].tolist(),
            "probabilities": prediction.outputs["probabilities"].tolist(),
        },
        {"user_id": users},
        version=version,
        parts=1,
    )


def precomputed(client: Client, fallback: str = "none", **changes: Any) -> None:
    spec = client.get_deployment("clf").spec
    mode = Precomputed(fallback=fallback)  # type: ignore[arg-type]
    client.registry.set_deployment("production", "clf", replace(spec, precomputed=mode, **changes))


def published(client: Client, tmp_path: Path, users: list[str], version: int = 1) -> Manifest:
    run = scored_run(client, tmp_path / f"run-{len(list(tmp_path.iterdir()))}", users, version)
    publish(client, run, output=run.spec["output"], endpoint="clf", retire_after_s=0.5)
    return run


def close(got: Any, expected: Any) -> bool:
    """Probabilities alike, up to the compiled (float32) form's rounding."""
    return bool(np.allclose(np.asarray(got), np.asarray(expected), atol=1e-4))


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_get_by_key_answers_the_published_prediction(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    precomputed(deployed)
    run = published(deployed, tmp_path, ["u1", "u2"])
    server = make_server()

    reply = server.get("/v1/endpoints/clf/predictions/u2")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    online = deployed.predict("models:/clf/1", [ROWS["u2"]])
    assert body["predictions"] == online.outputs["label"].tolist()[0]
    assert close(body["probabilities"], online.outputs["probabilities"][0].tolist())
    assert {k: body[k] for k in ("endpoint", "key", "model", "version", "source")} == {
        "endpoint": "clf",
        "key": "u2",
        "model": "clf",
        "version": 1,
        "source": "precomputed",
    }
    assert (body["computed_at"], body["run_id"]) == (FINISHED, run.run_id)
    assert body["prediction_id"]


def test_an_unknown_key_is_404_without_fallback(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    precomputed(deployed)
    run = published(deployed, tmp_path, ["u1"])
    server = make_server()
    reply = server.get("/v1/endpoints/clf/predictions/u9")
    assert reply.status_code == 404
    assert reply.json()["error"].startswith(
        f"endpoint clf has no precomputed prediction for key 'u9' (run {run.run_id} did not"
    )
    assert "--fallback online" in reply.json()["hint"]
    keyed = server.post("/v1/endpoints/clf/predict", json={"inputs": {"user_id": ["u1", "u9"]}})
    assert keyed.status_code == 404 and "for key 'u9'" in keyed.json()["error"]


def test_predict_with_keys_answers_from_the_run(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    precomputed(deployed)
    run = published(deployed, tmp_path, ["u1", "u2", "u3"])
    server = make_server()
    expected = deployed.predict("models:/clf/1", [ROWS[u] for u in ("u3", "u1")])
    for request in (
        {"inputs": {"user_id": ["u3", "u1"]}},
        {"dataframe_records": [{"user_id": "u3"}, {"user_id": "u1"}]},
        {"dataframe_split": {"columns": ["user_id"], "data": [["u3"], ["u1"]]}},
    ):
        reply = server.post("/v1/endpoints/clf/predict", json=request)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["predictions"] == expected.outputs["label"].tolist()
        assert close(body["probabilities"], expected.outputs["probabilities"].tolist())
        assert body["source"] == ["precomputed", "precomputed"]
        assert body["versions"] == [1, 1]
        assert (body["model"], body["version"], body["classes"]) == ("clf", 1, [0, 1])
        assert (body["computed_at"], body["run_id"]) == (FINISHED, run.run_id)
        assert len(set(body["prediction_ids"])) == 2
        assert reply.headers["modelport-variant"] == "clf-v1"


def test_a_request_without_the_key_is_a_clear_error(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    precomputed(deployed)
    published(deployed, tmp_path, ["u1"])
    server = make_server()
    reply = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROWS["u1"]]})
    assert reply.status_code == 400
    assert "endpoint clf looks its precomputed predictions up by ['user_id']" in reply.text


def test_fallback_online_predicts_unknown_keys_and_says_which_rows(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    precomputed(deployed, fallback="online")
    run = published(deployed, tmp_path, ["u1"])
    server = make_server()
    records = [{"user_id": u, **ROWS[u]} for u in ("u2", "u1")]
    reply = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": records})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    expected = deployed.predict("models:/clf/1", [ROWS["u2"], ROWS["u1"]])
    assert body["predictions"] == expected.outputs["label"].tolist()
    assert close(body["probabilities"], expected.outputs["probabilities"].tolist())
    assert body["source"] == ["online", "precomputed"]
    assert (body["run_id"], body["version"]) == (run.run_id, 1)

    unknown = server.get("/v1/endpoints/clf/predictions/u2")  # only a key: not enough inputs
    assert unknown.status_code == 404
    assert "predicting it online needs more than the key" in unknown.json()["error"]


def test_fallback_online_uses_the_feature_views_for_keys_alone(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    features = tuple(Feature(name) for name in "abcd")
    FeatureViewStore(deployed.registry.engine).put(FeatureView("profile", "user_id", features))
    deployed.features.store.write("profile", {"u2": (ROWS["u2"], time.time())})
    precomputed(deployed, fallback="online", features=("profile",))
    published(deployed, tmp_path, ["u1"])
    server = make_server()

    reply = server.post("/v1/endpoints/clf/predict", json={"inputs": {"user_id": ["u1", "u2"]}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["source"] == ["precomputed", "online"]
    got = server.get("/v1/endpoints/clf/predictions/u2").json()
    expected = deployed.predict("models:/clf/1", [ROWS["u2"]])
    assert got["source"] == "online" and got["run_id"] is None
    assert close(got["probabilities"], expected.outputs["probabilities"][0].tolist())


def test_predictions_of_another_version_say_which_version_computed_them(
    deployed: Client,
    make_server: Callable[..., TestClient],
    tmp_path: Path,
) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    from tests.conftest import classification_data

    frame, y = classification_data(seed=7)
    sio.dump(LogisticRegression(C=0.01).fit(frame, y), tmp_path / "v2.skops")
    deployed.register_model("clf", tmp_path / "v2.skops", sample_input=frame)
    run = published(deployed, tmp_path, ["u1"], version=1)
    deployed.deploy("clf", "models:/clf/2")
    precomputed(deployed, fallback="online")
    server = make_server()

    records = [{"user_id": u, **ROWS[u]} for u in ("u1", "u2")]
    body = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": records}).json()
    assert body["versions"] == [1, 2] and body["version"] == 1
    assert body["source"] == ["precomputed", "online"]
    v1 = deployed.predict("models:/clf/1", [ROWS["u1"]]).outputs["probabilities"][0]
    assert close(body["probabilities"][0], v1.tolist())
    got = server.get("/v1/endpoints/clf/predictions/u1").json()
    assert (got["version"], got["run_id"]) == (1, run.run_id)


def test_nothing_published_is_503_or_online(
    deployed: Client, make_server: Callable[..., TestClient]
) -> None:
    precomputed(deployed)
    server = make_server()
    reply = server.post("/v1/endpoints/clf/predict", json={"inputs": {"user_id": ["u1"]}})
    assert reply.status_code == 503
    assert "none are published for it in 'production'" in reply.json()["error"]
    assert "--publish clf" in reply.json()["hint"]

    precomputed(deployed, fallback="online")
    records = [{"user_id": "u1", **ROWS["u1"]}]

    def online() -> bool:
        answer = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": records})
        return answer.status_code == 200 and answer.json()["source"] == ["online"]

    wait_for(online)


def test_a_new_publication_is_served_after_the_next_poll(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    precomputed(deployed)
    published(deployed, tmp_path, ["u1"])
    server = make_server()
    second = published(deployed, tmp_path, ["u1", "u2"])

    def served() -> bool:
        return server.get("/v1/endpoints/clf/predictions/u1").json()["run_id"] == second.run_id

    wait_for(served)
    assert server.get("/v1/endpoints/clf/predictions/u2").status_code == 200


def test_an_endpoint_that_is_not_precomputed_predicts_as_before(
    deployed: Client, server: TestClient
) -> None:
    reply = server.get("/v1/endpoints/clf/predictions/u1")
    assert reply.status_code == 404
    assert "does not serve precomputed predictions" in reply.json()["error"]
    body = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": [ROWS["u1"]]})
    assert body.status_code == 200 and "source" not in body.json()
    assert server.get("/v1/endpoints/nope/predictions/u1").status_code == 404


def test_precomputed_answers_are_logged_under_their_version(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    from modelport.monitoring.logstore import LogStore

    precomputed(deployed, fallback="online")
    published(deployed, tmp_path, ["u1"])
    server = make_server()
    records = [{"user_id": u, **ROWS[u]} for u in ("u1", "u2")]
    body = server.post("/v1/endpoints/clf/predict", json={"dataframe_records": records}).json()
    assert server.get("/v1/endpoints/clf/predictions/u1").status_code == 200
    server.app.plane.prediction_log.flush()  # type: ignore[attr-defined]
    logged = (
        LogStore(deployed.settings)
        .query("SELECT prediction_id, variant, out_label FROM predictions WHERE endpoint = 'clf'")
        .to_pylist()
    )
    assert len(logged) == 3
    by_id = {row["prediction_id"]: row for row in logged}
    assert [by_id[i]["out_label"] for i in body["prediction_ids"]] == body["predictions"]
    assert {row["variant"] for row in logged} == {"clf-v1"}


def test_the_deployment_spec_round_trips() -> None:
    from modelport.registry import DeploymentSpec, Variant

    spec = DeploymentSpec(
        (Variant("clf", 1),), precomputed=Precomputed(fallback="online", keys=("user_id",))
    )
    assert spec.to_dict()["precomputed"] == {"fallback": "online", "keys": ["user_id"]}
    assert DeploymentSpec.from_dict(spec.to_dict()) == spec
    plain = DeploymentSpec((Variant("clf", 1),))
    assert "precomputed" not in plain.to_dict()
    assert DeploymentSpec.from_dict(plain.to_dict()).precomputed is None
    with pytest.raises(ValueError, match="online or none"):
        Precomputed(fallback="sometimes")  # type: ignore[arg-type]


# -- deploying a precomputed endpoint ---------------------------------------------


def test_modelport_yaml_deploys_a_precomputed_endpoint(deployed: Client, tmp_path: Path) -> None:
    from modelport.config import apply, plan_file

    path = tmp_path / "modelport.yaml"
    endpoint = (
        "environments:\n  production:\n    endpoints:\n      clf:\n        model: models:/clf/1\n"
    )
    path.write_text(endpoint + "        precomputed: true\n")
    apply(deployed, plan_file(deployed, path))
    assert deployed.get_deployment("clf").spec.precomputed == Precomputed()
    assert not plan_file(deployed, path).has_changes

    path.write_text(endpoint + "        precomputed: {fallback: online, keys: [user_id]}\n")
    changed = plan_file(deployed, path)
    (change,) = [c for c in changed.changes if c.kind == "deployment"]
    assert "precomputed fallback none -> fallback online, keys [user_id]" in change.detail
    apply(deployed, changed)
    wanted = Precomputed(fallback="online", keys=("user_id",))
    assert deployed.get_deployment("clf").spec.precomputed == wanted

    path.write_text(endpoint + "        precomputed: {fallback: sometimes}\n")
    with pytest.raises(InvalidConfig, match="precomputed.fallback"):
        plan_file(deployed, path)


def test_the_deploy_command_sets_and_keeps_the_mode(deployed: Client) -> None:
    from typer.testing import CliRunner

    from modelport.cli.main import app

    def deploy(*options: str) -> Precomputed | None:
        args = ["--home", str(deployed.settings.home), "deploy", "clf", "models:/clf/1"]
        done = CliRunner().invoke(app, [*args, *options])
        assert done.exit_code == 0, done.output
        return deployed.get_deployment("clf").spec.precomputed

    assert deploy("--precomputed") == Precomputed()
    assert deploy("--fallback", "online") == Precomputed(fallback="online")
    assert deploy() == Precomputed(fallback="online")  # a redeploy keeps the mode
    assert deploy("--no-precomputed") is None
    refused = CliRunner().invoke(
        app,
        [
            "--home",
            str(deployed.settings.home),
            "deploy",
            "clf",
            "models:/clf/1",
            "--fallback",
            "maybe",
        ],
    )
    assert refused.exit_code == 3 and "online or none" in refused.output


def test_an_unreachable_store_is_a_clear_503_until_it_is_back(
    deployed: Client, make_server: Callable[..., TestClient], tmp_path: Path
) -> None:
    from modelport.batch.publish import unpublish
    from modelport.features.redis import RedisStore
    from tests.features_proxy import TcpProxy

    proxy = TcpProxy(("127.0.0.1", 6379))
    proxy.set("up")
    store = RedisStore(proxy.url, timeout_s=2.0)
    try:
        precomputed(deployed)
        run = scored_run(deployed, tmp_path / "run", ["u1"])
        publish(deployed, run, output=tmp_path / "run", endpoint="clf", store=store)
        server = make_server(online_store=proxy.url)
        assert server.get("/v1/endpoints/clf/predictions/u1").status_code == 200

        proxy.set("down")
        started = time.monotonic()
        reply = server.get("/v1/endpoints/clf/predictions/u1")
        assert reply.status_code == 503 and time.monotonic() - started < 2.0
        assert reply.json()["error"].startswith(
            "endpoint clf cannot read its precomputed predictions: the Redis online store at "
            f"redis://127.0.0.1:{proxy.port}/0 is unreachable"
        )
        assert reply.headers["retry-after"] == "1"
        keyed = server.post("/v1/endpoints/clf/predict", json={"inputs": {"user_id": ["u1"]}})
        assert keyed.status_code == 503

        proxy.set("up")
        wait_for(lambda: server.get("/v1/endpoints/clf/predictions/u1").status_code == 200)
    finally:
        proxy.set("up")
        unpublish(deployed, "clf", store=store)
        store.close()
        proxy.close()
