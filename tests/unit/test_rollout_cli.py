"""``modelport rollout ...``, ``rollback`` and ``promote`` as a user drives them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from modelport.cli import common
from modelport.cli.main import app
from modelport.client import Client


@pytest.fixture
def fraud(client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Client:
    """fraud versions 1 and 2 registered; production/fraud serves version 1."""
    path, frame = sklearn_classifier
    client.register_model("fraud", path, owner="ana@example.com", sample_input=frame)
    client.register_model("fraud", path, owner="ana@example.com", sample_input=frame)
    client.deploy("fraud", "models:/fraud/1", env="production")
    return client


class Cli:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.runner = CliRunner(
            env={
                "MODELPORT_HOME": str(client.settings.home),
                "MODELPORT_USER": "ana",
                "COLUMNS": "200",
            }
        )

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result

    def json(self, *args: str) -> dict:
        return json.loads(self("--json", *args).stdout)

    def weights(self, endpoint: str = "fraud", env: str = "production") -> dict[str, float]:
        """Live weights by variant name; shadows as -1."""
        spec = self.client.get_deployment(endpoint, env=env).spec
        return {v.name: (-1.0 if v.shadow else v.weight) for v in spec.variants}


@pytest.fixture
def cli(fraud: Client) -> Iterator[Cli]:
    # The console is built at import, maybe in another test's terminal: wide tables here.
    width = common.out._width
    common.out._width = 200
    yield Cli(fraud)
    common.out._width = width


def test_start_status_pause_resume_promote(cli: Cli) -> None:
    started = cli("rollout", "start", "fraud", "--to", "models:/fraud/2", "--interval", "5m")
    assert "rollout 1 running, step 1/4 at 5%" in started.stdout
    assert "candidate models:/fraud/2 vs baseline models:/fraud/1" in started.stdout
    assert cli.weights() == {"fraud-v2": 5.0, "fraud-v1": 95.0}

    status = cli("rollout", "status", "fraud").stdout
    assert "step 1/4 at 5%" in status and "next judgement" in status and "in 4m" in status
    assert "no analysis yet" in status
    data = cli.json("rollout", "status", "fraud")
    assert data["state"] == "running" and data["step"] == 0 and data["percent"] == 5.0
    assert data["steps"] == [5.0, 25.0, 50.0, 100.0] and data["policy"]["interval_s"] == 300.0
    assert data["candidate"]["uri"] == "models:/fraud/2" and data["created_by"] == "ana"

    assert cli.json("rollout", "pause", "fraud")["state"] == "paused"
    assert "paused: nothing is judged" in cli("rollout", "status", "fraud").stdout
    cli("rollout", "pause", "fraud", code=5)  # only a running rollout pauses
    assert cli.json("rollout", "resume", "fraud")["state"] == "running"
    assert cli.weights() == {"fraud-v2": 5.0, "fraud-v1": 95.0}  # pausing keeps the split

    promoted = cli.json("rollout", "promote", "fraud")
    assert promoted["step"] == 1 and promoted["percent"] == 25.0 and promoted["state"] == "running"
    assert cli.weights() == {"fraud-v2": 25.0, "fraud-v1": 75.0}

    done = cli.json("rollout", "promote", "fraud", "--full")
    assert done["state"] == "succeeded" and done["percent"] == 100.0
    assert cli.weights() == {"fraud-v2": 100.0}
    cli("rollout", "pause", "fraud", code=4)  # nothing active any more

    listing = cli("rollout", "list").stdout
    assert "succeeded" in listing and "models:/fraud/2" in listing and "step 4/4" in listing
    assert [r["id"] for r in cli.json("rollout", "list", "fraud")] == [1]

    history = cli("history", "fraud").stdout
    assert "rollout/1" in history and "fraud/2 5%" in history and "fraud/1 75%" in history
    events = cli.json("history", "fraud")
    assert [(e["action"], e["actor"]) for e in events] == [
        ("deploy", "tester"),
        ("rollout", "rollout/1"),
        ("rollout", "rollout/1"),
        ("rollout", "rollout/1"),
    ]


def test_shadow_step_abort_and_rollback(cli: Cli) -> None:
    started = cli.json(
        "rollout", "start", "fraud", "--to", "models:/fraud/2", "--steps", "shadow,10,50,100"
    )
    assert started["steps"] == [0.0, 10.0, 50.0, 100.0] and started["percent"] == 0.0
    assert cli.weights() == {"fraud-v1": 100.0, "fraud-v2": -1.0}
    assert "step 1/4 at shadow" in cli("rollout", "status", "fraud").stdout

    aborted = cli.json("rollout", "abort", "fraud", "--reason", "not today")
    assert aborted["state"] == "aborted" and aborted["message"] == "not today"
    assert cli.weights() == {"fraud-v1": 100.0}

    # rollback during a rollout aborts it back to its baseline
    cli("rollout", "start", "fraud", "--to", "models:/fraud/2", "--steps", "50,100")
    assert cli.weights() == {"fraud-v2": 50.0, "fraud-v1": 50.0}
    back = cli("rollback", "fraud", "--reason", "pager").stdout
    assert "rolled back -> fraud/1" in back
    assert cli.weights() == {"fraud-v1": 100.0}
    assert cli.json("rollout", "status", "fraud")["state"] == "aborted"

    # without a rollout: the previous deployment in the history
    cli.client.deploy("fraud", "models:/fraud/2", env="production")
    rolled = cli.json("rollback", "fraud")
    assert rolled["version"] == 1 and cli.weights() == {"fraud-v1": 100.0}
    assert cli.json("history", "fraud")[-1]["action"] == "rollback"


def test_promote_is_a_rollout_when_the_target_is_deployed(cli: Cli) -> None:
    cli.client.deploy("fraud", "models:/fraud/2", env="staging")
    promoted = cli("promote", "fraud", "--from", "staging", "--to", "production").stdout
    assert "as rollout 1" in promoted and "step 1/4 at 5%" in promoted
    assert cli.weights() == {"fraud-v2": 5.0, "fraud-v1": 95.0}
    status = cli.json("rollout", "status", "fraud")
    assert status["reason"] == "promoted from staging" and status["state"] == "running"

    # --now copies at once (the rollout is superseded when the driver next looks)
    copied = cli.json("promote", "fraud", "--from", "staging", "--to", "production", "--now")
    assert copied["mode"] == "copy" and copied["version"] == 2
    assert cli.weights() == {"fraud-v2": 100.0}

    # a target that serves nothing yet gets a copy
    fresh = cli("promote", "fraud", "--from", "staging", "--to", "canary").stdout
    assert "copied from staging at once" in fresh and "canary/fraud was not deployed" in fresh
    assert cli.weights(env="canary") == {"fraud-v2": 100.0}


def test_errors_exit_with_their_codes(cli: Cli) -> None:
    missing = cli("rollout", "start", "nope", "--to", "models:/fraud/2", code=4)
    assert "error:" in missing.output
    cli("rollout", "status", "fraud", code=4)  # no rollout yet
    bad = cli("rollout", "start", "fraud", "--to", "models:/fraud/2", "--steps", "5,200", code=3)
    assert "invalid rollout policy" in bad.output
    cli("rollout", "start", "fraud", "--to", "models:/fraud/2", "--steps", "5,x,100", code=3)
    cli("rollout", "start", "fraud", "--to", "models:/fraud/2", "--interval", "soon", code=3)
    cli("rollout", "start", "fraud", "--to", "models:/fraud/1", code=5)  # already served
    assert cli.weights() == {"fraud-v1": 100.0}  # nothing changed by a refused start

    cli("rollout", "start", "fraud", "--to", "models:/fraud/2")
    second = cli("rollout", "start", "fraud", "--to", "models:/fraud/2", code=5)
    assert "already has an active rollout" in second.output
    cli("rollout", "resume", "fraud", code=5)  # running, not paused
    cli("rollback", "nope", code=4)
