"""The prediction log with the real server: traffic becomes rows, the CLI reads them, and
a log that cannot be written never costs a prediction nor what was already written."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from modelport.cli import logs as logs_cli
from modelport.cli.main import app as cli
from modelport.client import Client
from modelport.monitoring.logstore import LogStore
from modelport.settings import Settings
from tests.integration.conftest import LiveServer, start_server, stop_server

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}
COLUMNS = list(ROW)

#: Run `modelport serve` with a file size limit and SIGXFSZ ignored, so a write past
#: the limit fails with EFBIG as on a full disk (and does not kill the process).
LIMITED = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv(sys.executable, [sys.executable, "-m", "modelport.cli.main", *sys.argv[2:]])
"""


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    return os.environ | {
        "MODELPORT_HOME": str(settings.home),
        "MODELPORT_POLL_INTERVAL_SECONDS": "0.2",
        "MODELPORT_WORKERS": "1",
        "MODELPORT_LOG_FLUSH_SECONDS": "0.2",
        **extra,
    }


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    started: list[LiveServer] = []
    yield started
    for server in started:
        stop_server(server)


def start_limited(env: dict[str, str], log: Path, limit: int) -> LiveServer:
    """`start_server`, with every file the server writes limited to ``limit`` bytes."""
    return start_server(env, log, command=[sys.executable, "-c", LIMITED, str(limit)])


def predict(server: LiveServer, rows: int = 1, endpoint: str = "clf") -> httpx.Response:
    data = np.round(np.random.default_rng(rows).normal(size=(rows, 4)), 6).tolist()
    body = {"dataframe_split": {"columns": COLUMNS, "data": data}}
    return httpx.post(f"{server.url}/v1/endpoints/{endpoint}/predict", json=body, timeout=60)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def logged(settings: Settings) -> int:
    rows = LogStore(settings).query("SELECT count(*) AS n FROM predictions").to_pylist()
    return int(rows[0]["n"])


def log_metric(server: LiveServer, outcome: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    found = re.search(
        rf'^modelport_prediction_log_rows_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def segment_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*.parquet")}


def test_traffic_is_logged_and_the_cli_reads_it(
    settings: Settings, deployed_clf: Client, tmp_path: Path, servers: list[LiveServer]
) -> None:
    server = start_server(server_env(settings), tmp_path / "server.log")
    servers.append(server)
    answers = [predict(server, rows=2) for _ in range(5)]
    assert all(r.status_code == 200 for r in answers)
    bad = httpx.post(
        f"{server.url}/v1/endpoints/clf/predict",
        content=b'{"dataframe_split": [',
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    wrong = httpx.post(
        f"{server.url}/v1/endpoints/clf/predict",
        json={"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0}]},
    )
    assert wrong.status_code == 400
    v2 = httpx.post(
        f"{server.url}/v2/models/clf/infer",
        json={
            "inputs": [
                {"name": c, "shape": [1], "datatype": "FP64", "data": [ROW[c]]} for c in COLUMNS
            ]
        },
    )
    assert v2.status_code == 200, v2.text
    assert predict(server, endpoint="nope").status_code == 404  # not logged: not served
    wait_for(lambda: logged(settings) == 13, "13 logged rows")

    store = LogStore(settings)
    rows = store.query(
        "SELECT prediction_id, endpoint, model, version, variant, status, in_a, "
        "out_label, out_probabilities FROM predictions ORDER BY ts"
    ).to_pylist()
    ids = [i for r in answers for i in r.json()["prediction_ids"]]
    assert [r["prediction_id"] for r in rows[:10]] == ids
    assert {(r["endpoint"], r["model"], r["version"], r["variant"]) for r in rows[:10]} == {
        ("clf", "clf", 1, "clf-v1")
    }
    statuses = {r["status"]: r for r in rows}
    assert [r["status"] for r in rows].count("ok") == 11
    assert statuses["invalid_input"]["model"] is None  # the body was not JSON
    assert statuses["signature_mismatch"]["variant"] == "clf-v1"  # failed after the version
    ok = rows[0]
    assert ok["out_label"] == answers[0].json()["predictions"][0]
    assert ok["out_probabilities"] == pytest.approx(answers[0].json()["probabilities"][0])
    assert not list(settings.logs_path.rglob("endpoint=nope"))

    runner = CliRunner()
    home = ["--home", str(settings.home)]
    result = runner.invoke(
        cli,
        [*home, "--json", "logs", "query", "SELECT status, count(*) AS n FROM predictions "
         "GROUP BY status ORDER BY status"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"status": "invalid_input", "n": 1},
        {"status": "ok", "n": 11},
        {"status": "signature_mismatch", "n": 1},
    ]
    result = runner.invoke(cli, [*home, "logs", "tail", "clf", "-n", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and "signature_mismatch" in result.output
    assert any("clf-v1" in line and "probabilities=" in line for line in lines)
    follow_after_two_more_predictions(runner, home, server, settings)
    result = runner.invoke(cli, [*home, "logs", "query", "SELECT * FROM nowhere"])
    assert result.exit_code == 3 and "nowhere" in result.output
    assert log_metric(server, "written") >= 13 and log_metric(server, "dropped") == 0


def follow_after_two_more_predictions(
    runner: CliRunner, home: list[str], server: LiveServer, settings: Settings
) -> None:
    """`logs tail --follow`: the last row, then the rows written while it waits."""
    pauses = 0
    before = logged(settings)
    sleep = time.sleep  # the CLI's pauses are replaced, not this test's waits nor any thread's

    def pause(_seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses > 1:
            raise KeyboardInterrupt
        assert all(predict(server).status_code == 200 for _ in range(2))
        deadline = time.monotonic() + 20
        while logged(settings) < before + 2 and time.monotonic() < deadline:
            sleep(0.1)

    with pytest.MonkeyPatch.context() as patch:
        # The CLI's own name for the module, not the module: other threads (Ray Data's
        # metrics poller, left by an earlier test in this process) sleep too.
        patch.setattr(logs_cli, "time", SimpleNamespace(sleep=pause))
        result = runner.invoke(cli, [*home, "--json", "logs", "tail", "clf", "-n", "1", "-f"])
    assert result.exit_code == 0, result.output
    followed = [json.loads(line) for line in result.output.strip().splitlines()]
    assert len(followed) == 3 and len({r["prediction_id"] for r in followed}) == 3
    assert [r["status"] for r in followed[1:]] == ["ok", "ok"]


def test_an_unwritable_log_folder_costs_no_prediction_and_no_written_row(
    settings: Settings, deployed_clf: Client, tmp_path: Path, servers: list[LiveServer]
) -> None:
    """The log folder is a link that is pointed at a file mid-run (permissions would not
    stop root), then back at the folder."""
    real, link, blocker = tmp_path / "real-logs", tmp_path / "logs", tmp_path / "blocker"
    real.mkdir()
    blocker.write_text("not a folder")
    link.symlink_to(real)
    env = server_env(settings, MODELPORT_LOG_DIR=str(link))
    server = start_server(env, tmp_path / "server.log")
    servers.append(server)
    logs = settings.model_copy(update={"log_dir": real})

    assert all(predict(server).status_code == 200 for _ in range(5))
    wait_for(lambda: logged(logs) == 5, "the first 5 rows")
    before = segment_bytes(real)

    repoint(link, blocker)
    answers = [predict(server, rows=3) for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20
    wait_for(lambda: log_metric(server, "dropped") >= 60, "60 dropped rows")
    assert segment_bytes(real) == before
    assert logged(logs) == 5
    assert "could not write" in server.output()

    repoint(link, real)
    assert all(predict(server).status_code == 200 for _ in range(4))
    wait_for(lambda: logged(logs) == 9, "4 more rows once the folder is back")
    assert all(segment_bytes(real)[p] == content for p, content in before.items())
    assert not list(real.rglob("*.tmp"))


def test_a_full_disk_costs_no_prediction_and_no_written_row(
    settings: Settings, deployed_clf: Client, tmp_path: Path, servers: list[LiveServer]
) -> None:
    """Every file the server writes is limited to 1 MiB: small segments fit, the segment
    of one 20,000-row request does not (EFBIG, as ENOSPC on a full disk)."""
    env = server_env(settings, MODELPORT_MAX_ROWS_PER_REQUEST="20000")
    server = start_limited(env, tmp_path / "server.log", limit=1 << 20)
    servers.append(server)

    assert all(predict(server).status_code == 200 for _ in range(5))
    wait_for(lambda: logged(settings) == 5, "the first 5 rows")
    before = segment_bytes(settings.logs_path)

    big = predict(server, rows=20_000)
    assert big.status_code == 200 and len(big.json()["predictions"]) == 20_000
    wait_for(lambda: log_metric(server, "dropped") == 20_000, "20,000 dropped rows")
    assert segment_bytes(settings.logs_path) == before

    assert all(predict(server).status_code == 200 for _ in range(3))
    wait_for(lambda: logged(settings) == 8, "3 more rows after the failed write")
    after = segment_bytes(settings.logs_path)
    assert all(after[p] == content for p, content in before.items())
    assert not list(settings.logs_path.rglob("*.tmp"))
    assert "File too large" in server.output()


def repoint(link: Path, target: Path) -> None:
    fresh = link.with_name(link.name + ".new")
    fresh.symlink_to(target)
    os.replace(fresh, link)
