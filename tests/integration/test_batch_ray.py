"""The Ray engine on a real local Ray cluster: the same parts, rows and manifest as the
local engine, through the Python API and through ``modelport batch predict``.

The cluster is started once for the module with ``ray start --head`` on free ports, in
a temporary folder of its own, and stopped (by the process this module started) at the
end, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from modelport.batch import JobSpec, Manifest, predict
from modelport.batch.progress import Silent
from modelport.batch.ray_engine import Session
from modelport.batch.spec import MANIFEST
from modelport.client import Client
from modelport.errors import Conflict, InvalidInput, Unavailable
from modelport.settings import Settings
from tests.conftest import classification_data

pytestmark = [
    # Ray Data's own DataContext() sets fields it deprecates (use_push_based_shuffle,
    # use_polars, use_arrow_tensor_v2; ray 2.60).
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

#: Seconds `ray start` may take on a small, busy machine.
RAY_START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A two-CPU Ray cluster on this machine: its address (host:port)."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live here
    port = free_port()
    ports = {
        name: free_port()
        for name in (
            "node-manager-port",
            "object-manager-port",
            "dashboard-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
        )
    }
    argv = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        f"--object-store-memory={150 * 1024**2}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        *(f"--{name}={value}" for name, value in ports.items()),
    ]
    env = os.environ | {
        # SIGTERM stops the node at once, not after a 30 s drain.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        # No token, whatever ~/.ray holds: the tests connect by address, without one.
        "RAY_AUTH_MODE": "disabled",
    }
    log = Path(temp) / "ray-start.log"
    with log.open("wb") as out:
        head = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_started(head, Path(temp), log)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(head)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_started(head: subprocess.Popen[bytes], temp: Path, log: Path) -> None:
    deadline = time.monotonic() + RAY_START_TIMEOUT
    while not (temp / "ray_current_cluster").exists():
        if head.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"ray start did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _stop(head: subprocess.Popen[bytes]) -> None:
    """Stop the cluster `ray start` started: SIGTERM to it (it stops what it started),
    then SIGKILL to whatever of its session is left."""
    head.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=30)
    for pid in _session(head.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=5)


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (the one `ray start` leads)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:
                found.append(int(stat.parent.name))
    return found


@pytest.fixture
def home(tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Path:
    """A Modelport home with ``clf`` v1 (logistic regression on a, b, c, d)."""
    home = tmp_path / "home"
    client = Client(Settings(home=home))
    path, frame = sklearn_classifier
    client.register_model("clf", path, sample_input=frame)
    client.close()
    return home


@pytest.fixture
def client(home: Path) -> Iterator[Client]:
    c = Client(Settings(home=home))
    yield c
    c.close()


def rows(n: int, first: int = 0, seed: int = 4) -> pd.DataFrame:
    frame, _ = classification_data(n, seed=seed)
    frame.insert(0, "user_id", [f"u{first + i:05d}" for i in range(n)])
    return frame


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Parquet, CSV (with one bad cell), then Parquet again: the last file's chunk
    numbers are known only once the CSV file is read through."""
    folder = tmp_path / "data"
    folder.mkdir()
    rows(450, 0, seed=1).to_parquet(folder / "a.parquet", index=False, row_group_size=100)
    csv = rows(260, 1000, seed=2).astype({"b": object})
    csv.loc[17, "b"] = "n/a"
    csv.to_csv(folder / "b.csv", index=False)
    rows(300, 2000, seed=3).to_parquet(folder / "c.parquet", index=False)
    return folder


def job(data: Path, out: Path, **options: object) -> JobSpec:
    spec = JobSpec(
        model="models:/clf/1",
        input=str(data),
        output=str(out),
        id_columns=("user_id",),
        chunk_rows=100,
        on_bad_rows="skip",
        runtime="native",
    )
    return spec.with_(**options)


def scored(out: Path) -> pa.Table:
    return ds.dataset(out, format="parquet").to_table()


def chunks(manifest: Manifest) -> list[dict[str, object]]:
    return [asdict(c) for c in manifest.chunks]


def parts(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


class Counted(Silent):
    """Progress that counts the rows of the chunks a run scores."""

    def __init__(self) -> None:
        self.rows = 0

    def advance(self, *, rows: int, bytes: int) -> None:
        self.rows += rows


def test_the_ray_engine_writes_what_the_local_engine_writes(
    client: Client, data: Path, tmp_path: Path, ray_address: str
) -> None:
    local = predict(client, job(data, tmp_path / "local", workers=1))
    ray = predict(client, job(data, tmp_path / "ray", engine="ray", ray_address=ray_address))

    assert ray.status == "succeeded" and ray.engine == "ray"
    assert (ray.rows_in, ray.rows_out, ray.rows_rejected) == (1010, 1009, 1)
    assert (ray.rows_in, ray.rows_out, ray.rows_rejected) == (
        local.rows_in,
        local.rows_out,
        local.rows_rejected,
    )
    # chunk for chunk: the same numbers, sources, offsets, counts and bytes (SHA-256)
    assert chunks(ray) == chunks(local)
    assert parts(tmp_path / "ray") == parts(tmp_path / "local")
    assert (
        scored(tmp_path / "ray")
        .sort_by("user_id")
        .equals(scored(tmp_path / "local").sort_by("user_id"))
    )
    rejects = ds.dataset(tmp_path / "ray" / "_rejects", format="parquet").to_table()
    assert rejects.column("row").to_pylist() == [19]  # line 19 of b.csv
    assert rejects.column("source").to_pylist() == [str(data / "b.csv")]


def test_a_resumed_ray_run_ends_as_an_uninterrupted_one(
    client: Client, data: Path, tmp_path: Path, ray_address: str
) -> None:
    spec = job(data, tmp_path / "out", engine="ray", ray_address=ray_address)
    whole = predict(client, spec)
    # As a run killed after some chunks leaves it: later chunks not recorded, a part lost.
    manifest_file = tmp_path / "out" / MANIFEST
    killed = Manifest.from_dict(json.loads(manifest_file.read_text()))
    killed.status, killed.finished_at = "running", None
    lost = [c for c in killed.chunks if c.index in (2, 6, 9)]
    killed.chunks = [c for c in killed.chunks if c not in lost]
    manifest_file.write_text(json.dumps(killed.to_dict()))
    (tmp_path / "out" / lost[0].file).unlink()

    scored_again = Counted()
    resumed = predict(client, spec, resume=True, progress=scored_again)

    assert resumed.status == "succeeded"
    assert chunks(resumed) == chunks(whole)
    assert scored_again.rows == sum(c.rows_in for c in lost)  # only the lost chunks


def test_a_bad_row_fails_the_ray_run_as_it_fails_a_local_one(
    client: Client, data: Path, tmp_path: Path, ray_address: str
) -> None:
    with pytest.raises(InvalidInput) as local:
        predict(client, job(data, tmp_path / "local", on_bad_rows="fail", workers=1))
    spec = job(data, tmp_path / "ray", on_bad_rows="fail", engine="ray", ray_address=ray_address)
    with pytest.raises(InvalidInput) as ray:
        predict(client, spec)
    assert str(ray.value) == str(local.value)
    assert "b.csv, line 19" in str(ray.value)
    failed = json.loads((tmp_path / "ray" / MANIFEST).read_text())
    assert failed["status"] == "failed" and "line 19" in failed["error"]


def test_the_command_runs_on_a_ray_cluster(
    home: Path, client: Client, data: Path, tmp_path: Path, ray_address: str
) -> None:
    local = predict(client, job(data, tmp_path / "local", workers=1))
    argv = [sys.executable, "-m", "modelport.cli.main", "batch", "predict"]
    argv += ["--model", "models:/clf/1", "--input", str(data), "--output", str(tmp_path / "ray")]
    argv += ["--id-column", "user_id", "--chunk-rows", "100", "--on-bad-rows", "skip"]
    argv += ["--runtime", "native", "--engine", "ray", "--ray-address", ray_address, "--json"]
    env = os.environ | {"MODELPORT_HOME": str(home)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)  # nothing of Ray's on stdout
    assert manifest["engine"] == "ray" and manifest["status"] == "succeeded"
    assert manifest["chunks"] == chunks(local)
    assert (
        scored(tmp_path / "ray")
        .sort_by("user_id")
        .equals(scored(tmp_path / "local").sort_by("user_id"))
    )


def test_an_unreachable_cluster_fails_at_once_and_says_so(
    client: Client, data: Path, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(Unavailable, match=f"cannot reach the Ray cluster at {address}"):
        predict(client, job(data, tmp_path / "out", engine="ray", ray_address=address))
    assert time.monotonic() - started < 30


def test_modelport_imports_no_ray_until_a_job_asks_for_it() -> None:
    code = "import sys, modelport.batch.ray_engine, modelport.cli.main; print('ray' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_without_ray_the_engine_says_how_to_install_it(
    client: Client, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(
        Unavailable, match=r"the ray engine needs Ray: pip install 'modelport\[ray\]'"
    ):
        predict(client, job(data, tmp_path / "out", engine="ray"))


class FakeRay:
    """What `Session` calls of Ray, recorded."""

    def __init__(self) -> None:
        self.up = False
        self.inits: list[str | None] = []
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return self.up

    def init(self, address: str | None = None, **options: object) -> None:
        self.inits.append(address)
        self.up = True

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.up = False


def test_runs_in_one_process_share_its_ray_and_the_last_one_stops_it() -> None:
    ray: Any = FakeRay()
    session = Session()
    with socket.create_server(("127.0.0.1", 0)) as listening:  # a head node's port
        head = f"127.0.0.1:{listening.getsockname()[1]}"
        with session.use(ray, head):
            with session.use(ray, head):
                pass
            assert ray.shutdowns == 0  # the first run still uses it
            other = session.use(ray, "other-head:6379")
            with pytest.raises(Conflict, match=f"attached to the Ray cluster at {head}"), other:
                pass
    assert ray.inits == [head] and ray.shutdowns == 1
    ray.up = True  # a Ray the process's owner started is used and left running
    with session.use(ray, None):
        pass
    assert ray.inits == [head] and ray.shutdowns == 1
