"""``modelport batch predict`` as a user runs it: outputs, reruns, a kill and a resume,
bad rows, and the errors that say which file, row and column."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from modelport.batch.spec import MANIFEST
from modelport.client import Client
from modelport.settings import Settings
from tests.conftest import classification_data


def env(home: Path) -> dict[str, str]:
    return os.environ | {"MODELPORT_HOME": str(home), "MODELPORT_USER": "ana", "COLUMNS": "200"}


def batch(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "modelport.cli.main", "batch", "predict", *args]
    return subprocess.run(argv, env=env(home), capture_output=True, text=True, timeout=240)


@pytest.fixture
def home(tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]) -> Path:
    """A Modelport home with ``clf`` v1 (logistic regression on a, b, c, d) as champion."""
    home = tmp_path / "home"
    client = Client(Settings(home=home))
    path, frame = sklearn_classifier
    client.register_model("clf", path, sample_input=frame)
    client.set_alias("clf", "champion", 1)
    client.close()
    return home


def rows(n: int, seed: int = 4) -> pd.DataFrame:
    frame, _ = classification_data(n, seed=seed)
    frame.insert(0, "user_id", [f"u{i}" for i in range(n)])
    return frame


def scored(out: Path) -> pa.Table:
    return ds.dataset(out, format="parquet").to_table().sort_by("user_id")


def test_predict_a_folder_then_rerun_it(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    frame = rows(900)
    for i in range(3):
        frame.iloc[300 * i : 300 * (i + 1)].to_parquet(data / f"day-{i}.parquet", index=False)
    out = tmp_path / "out"
    args = ["--model", "models:/clf@champion", "--input", str(data / "*.parquet")]
    args += ["--output", str(out), "--id-column", "user_id", "--chunk-rows", "250"]
    result = batch(home, *args, "--json", "--runtime", "native")
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["status"] == "succeeded" and manifest["rows_out"] == 900
    progress = [json.loads(line) for line in result.stderr.splitlines()]
    assert progress[-1]["event"] == "chunk" and progress[-1]["rows_done"] == 900
    client = Client(Settings(home=home))
    expected = client.predict("models:/clf/1", frame[list("abcd")])
    client.close()
    table = scored(out)
    assert table.column("user_id").to_pylist() == sorted(frame["user_id"])
    order = np.argsort(frame["user_id"].to_numpy())
    assert table.column("label").to_pylist() == expected.outputs["label"][order].tolist()
    assert table.column("probabilities").to_pylist() == (
        expected.outputs["probabilities"][order].tolist()
    )
    parts = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = batch(home, *args, "--runtime", "native")
    assert again.returncode == 0, again.stderr
    assert "already holds this job's output" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == parts


def test_a_killed_run_resumes_to_the_output_of_an_uninterrupted_one(
    home: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data.parquet"
    rows(30_000).to_parquet(data, index=False)
    args = ["--model", "models:/clf/1", "--input", str(data), "--id-column", "user_id"]
    args += ["--chunk-rows", "100", "--workers", "2"]
    whole = batch(home, *args, "--output", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "modelport.cli.main", "batch", "predict", *args]
    job = subprocess.Popen(
        [*argv, "--output", str(out)],
        env=env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the workers go down with it
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None:
            text = (out / MANIFEST).read_text() if (out / MANIFEST).exists() else ""
            if text.count('"index"') >= 5:
                break
            time.sleep(0.005)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    killed = json.loads((out / MANIFEST).read_text())
    assert killed["status"] == "running" and 5 <= len(killed["chunks"]) < 300

    refused = batch(home, *args, "--output", str(out))
    assert refused.returncode == 5 and "--resume" in refused.stderr
    resumed = batch(home, *args, "--output", str(out), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads(resumed.stdout)
    assert manifest["run_id"] == killed["run_id"] and manifest["rows_out"] == 30_000
    assert not [p for p in os.listdir(out) if ".tmp-" in p]
    # the killed run's chunks in flight were swept from the temporary folder
    assert not list(Path(tempfile.gettempdir()).glob(f"modelport-batch-{job.pid}-*"))
    assert scored(out).equals(scored(tmp_path / "whole"))
    first = json.loads((tmp_path / "whole" / MANIFEST).read_text())
    assert [c["sha256"] for c in manifest["chunks"]] == [c["sha256"] for c in first["chunks"]]


def test_a_csv_with_a_wrong_type_names_file_line_and_column(home: Path, tmp_path: Path) -> None:
    frame = rows(6)
    csv = tmp_path / "rows.csv"
    frame.to_csv(csv, index=False)
    lines = csv.read_text().splitlines()
    cells = lines[4].split(",")
    cells[2] = "abc"  # column b of the 4th row: line 5 of the file
    lines[4] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = ["--model", "models:/clf/1", "--input", str(csv), "--output", str(out)]
    result = batch(home, *args, "--chunk-rows", "2", "--workers", "1")
    assert result.returncode == 3
    assert f"{csv}, line 5: column 'b' expects double, got text 'abc'" in result.stderr
    assert "--on-bad-rows skip" in result.stderr
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "failed" and "line 5" in manifest["error"]
    assert [c["index"] for c in manifest["chunks"]] == [0]  # lines 2-3; lines 4-5 failed
    assert sorted(os.listdir(out)) == [MANIFEST, "part-000000.parquet"]

    skipped = batch(home, *args, "--on-bad-rows", "skip", "--overwrite", "--id-column", "user_id")
    assert skipped.returncode == 0, skipped.stderr
    assert "5 of 6 rows, 1 rejected" in skipped.stdout
    rejects = ds.dataset(out / "_rejects", format="parquet").to_table()
    assert rejects.column("user_id").to_pylist() == ["u3"]
    assert rejects.column("row").to_pylist() == [5]
    assert rejects.column("reason").to_pylist() == ["column 'b' expects double, got text 'abc'"]


def test_corrupt_parquet_and_an_unknown_model(home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.parquet"
    rows(50).to_parquet(data, index=False)
    data.write_bytes(data.read_bytes()[:200])
    out = tmp_path / "out"
    result = batch(home, "--model", "models:/clf/1", "--input", str(data), "--output", str(out))
    assert result.returncode == 3
    assert f"{data} is not a readable Parquet file" in result.stderr
    assert not out.exists()
    missing = batch(home, "--model", "models:/nope@champion", "--input", str(data), "-o", str(out))
    assert missing.returncode == 4 and "nope" in missing.stderr
