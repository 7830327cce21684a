"""The whole watch loop on a real server with two workers: traffic is logged, the
monitor measures drift, an alert fires once, reaches a webhook and the owner's mailbox
with its diagnosis, and resolves when the traffic is healthy again. A receiver that is
down costs no prediction.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from modelport.cli.main import app as cli
from modelport.client import Client
from modelport.config import apply, plan_file
from modelport.settings import Settings
from tests.integration.conftest import LiveServer, start_server, stop_server
from tests.receivers import HttpReceiver, Mailbox

#: The monitor runs every half second over the last few seconds of traffic.
WATCH_ENV = {
    "MODELPORT_WORKERS": "2",
    "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
    "MODELPORT_MONITOR_INTERVAL_SECONDS": "0.5",
    "MODELPORT_MONITOR_WINDOW": "3s",
    "MODELPORT_LOG_FLUSH_SECONDS": "0.2",
}


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def rows(n: int, shift: float = 0.0, seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    frame["a"] += shift
    return frame.to_dict(orient="records")


def send(server: LiveServer, records: list[dict[str, float]]) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for start in range(0, len(records), 50):
            body = {"dataframe_records": records[start : start + 50]}
            reply = http.post("/v1/endpoints/clf/predict", json=body)
            assert reply.status_code == 200, reply.text


@pytest.fixture
def watched(
    client: Client,
    settings: Settings,
    sklearn_classifier: tuple[Path, pd.DataFrame],
    http: HttpReceiver,
    mailbox: Mailbox,
    tmp_path: Path,
) -> Iterator[Callable[[str], LiveServer]]:
    """clf v1 then v2 deployed, alerting applied from YAML; starts the server on demand."""
    path, frame = sklearn_classifier
    client.registry.ensure_model("clf", owner="ana@example.com", team="risk")
    for _ in range(2):
        client.register_model("clf", path, sample_input=frame, metrics={"accuracy": 0.97})
    client.deploy("clf", "models:/clf/1", env="production", reason="first")
    client.deploy("clf", "models:/clf/2", env="production", reason="retrained")
    servers: list[LiveServer] = []

    def run(hook_url: str) -> LiveServer:
        config = {
            "alerting": {
                "receivers": [
                    {"name": "hook", "webhook": {"url": hook_url}},
                    {
                        "name": "owner",
                        "email": {
                            "to": ["{owner}"],
                            "from": "modelport@example.com",
                            "smtp_host": "127.0.0.1",
                            "smtp_port": mailbox.port,
                            "starttls": False,
                        },
                    },
                ],
                "route": {
                    "receiver": "log",
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                    "routes": [
                        {"match": {"team": "risk"}, "receiver": "hook", "continue": True},
                        {"match": {"team": "risk"}, "receiver": "owner"},
                    ],
                },
                "default_rules": False,
                "rules": [
                    {
                        "name": "InputDrift",
                        "signal": "drift_score",
                        "threshold": 0.2,
                        "min_samples": 200,
                        "severity": "critical",
                    }
                ],
            }
        }
        file = tmp_path / "modelport.yaml"
        file.write_text(yaml.safe_dump(config))
        apply(client, plan_file(client, file))
        env = os.environ | WATCH_ENV | {"MODELPORT_HOME": str(settings.home)}
        server = start_server(env, tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server

    yield run
    for server in servers:
        stop_server(server)


def firing(http: HttpReceiver, status: str) -> list[dict[str, Any]]:
    return [r.json() for r in http.requests if r.json()["status"] == status]


def test_drift_fires_one_alert_with_a_diagnosis_and_resolves(
    watched: Callable[[str], LiveServer], http: HttpReceiver, mailbox: Mailbox, settings: Settings
) -> None:
    server = watched(f"{http.url}/alerts")
    # A fresh sample of the training distribution: measured, and no alarm.
    send(server, rows(400, seed=1))
    # A minute's window here: a loaded machine may take longer than the server's 3 s
    # window to send and log the rows, and the first of them would slip out of it.
    monitor = f"{server.url}/v1/endpoints/clf/monitor?window=60s"
    report = wait_for(
        lambda: (r := httpx.get(monitor).json())["rows"] >= 400 and r,
        what="the logged predictions",
    )
    assert all(c["psi"] < 0.2 for c in report["drift"]["columns"]), report["drift"]
    time.sleep(1.5)
    assert http.requests == []

    # The same traffic with column a shifted by three standard deviations.
    send(server, rows(400, shift=3.0, seed=2))
    (note,) = wait_for(lambda: firing(http, "firing"), what="the firing notification")
    assert note["version"] == "4" and note["receiver"] == "hook"
    (alert,) = note["alerts"]
    assert alert["labels"]["alertname"] == "InputDrift"
    assert alert["labels"]["endpoint"] == "clf" and alert["labels"]["owner"] == "ana@example.com"
    diagnosis = note["diagnosis"]
    assert diagnosis["drifted_columns"][0]["column"] == "a"
    assert diagnosis["rollback_command"].startswith(
        "modelport deploy clf models:/clf/1 --env production"
    )
    assert any(c["kind"] == "new version" for c in diagnosis["changes"])
    mail = wait_for(lambda: mailbox.envelopes, what="the email")
    assert mail[0].rcpt_tos == ["ana@example.com"]
    assert "FIRING" in mailbox.message()["Subject"]
    assert "modelport deploy clf models:/clf/1" in mailbox.message().get_payload()

    # Healthy traffic again: once the shifted rows leave the window, one resolved notice.
    def healthy() -> list[dict[str, Any]]:
        send(server, rows(250, seed=int(time.time())))
        return firing(http, "resolved")

    (resolved,) = wait_for(healthy, what="the resolved notification")
    assert resolved["alerts"][0]["status"] == "resolved"
    time.sleep(1.5)
    # Two workers evaluate, one notification per state change.
    assert len(firing(http, "firing")) == 1 and len(firing(http, "resolved")) == 1

    runner = CliRunner()
    home = ["--home", str(settings.home), "--json"]
    listed = json.loads(runner.invoke(cli, [*home, "incidents", "list"]).stdout)
    assert [i["status"] for i in listed] == ["resolved"]
    shown = json.loads(
        runner.invoke(cli, [*home, "incidents", "show", str(listed[0]["id"])]).stdout
    )
    assert shown["diagnosis"]["drifted_columns"][0]["column"] == "a"
    assert {(n["receiver"], n["status"], n["ok"]) for n in shown["notifications"]} == {
        ("hook", "firing", True),
        ("owner", "firing", True),
        ("hook", "resolved", True),
        ("owner", "resolved", True),
    }
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'modelport_psi{column="a",endpoint="clf"' in metrics


def test_a_receiver_that_is_down_costs_no_prediction(
    watched: Callable[[str], LiveServer], settings: Settings
) -> None:
    server = watched("http://127.0.0.1:9/down")
    send(server, rows(300, shift=3.0, seed=3))
    client = Client(settings)

    def failed_attempts() -> list[dict[str, Any]]:
        incidents = _incidents(client)
        return [n for i in incidents for n in i["notifications"] if not n["ok"]]

    attempts = wait_for(failed_attempts, what="a failed notification attempt")
    assert attempts[0]["receiver"] == "hook" and "refused" in attempts[0]["error"].lower()
    # Predictions go on answering while the receiver is retried.
    send(server, rows(200, shift=3.0, seed=4))


def _incidents(client: Client) -> list[dict[str, Any]]:
    from modelport.watching import Watching

    watching = Watching(client)
    return [watching.incident(i.id) for i in watching.incidents()]
