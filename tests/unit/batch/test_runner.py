"""A batch run end to end through the Python API: parts and manifest, worker processes,
reruns that write nothing, resumes that end as an uninterrupted run would, failures."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from modelport.batch import JobSpec, predict, reused
from modelport.batch.output import Output
from modelport.batch.progress import JsonLines
from modelport.batch.spec import MANIFEST, Manifest
from modelport.client import Client
from modelport.errors import Conflict, InvalidInput, NotFound
from tests.conftest import classification_data


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Three Parquet parts of 300, 250 and 170 rows, with an id column."""
    frame, _ = classification_data(720, seed=3)
    frame.insert(0, "id", np.arange(len(frame)))
    folder = tmp_path / "data"
    folder.mkdir()
    for i, (lo, hi) in enumerate([(0, 300), (300, 550), (550, 720)]):
        frame.iloc[lo:hi].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


@pytest.fixture
def clf(client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]) -> str:
    path, frame = sklearn_classifier
    client.register_model("clf", path, sample_input=frame)
    client.set_alias("clf", "champion", 1)
    return "models:/clf@champion"


def job(data: Path, out: Path, **options: Any) -> JobSpec:
    values: dict[str, Any] = {
        "model": "models:/clf@champion",
        "input": str(data),
        "output": str(out),
        "id_columns": ("id",),
        "chunk_rows": 100,
        "workers": 1,
        "runtime": "native",
    }
    return JobSpec(**{**values, **options})


def scored(out: Path) -> pa.Table:
    return ds.dataset(out, format="parquet").to_table().sort_by("id")


def expected(client: Client, data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(data).sort_values("id")
    prediction = client.predict("models:/clf/1", frame[list("abcd")])
    return frame.assign(
        label=prediction.outputs["label"], probabilities=list(prediction.outputs["probabilities"])
    )


def manifest_of(out: Path) -> Manifest:
    return Manifest.from_dict(json.loads((out / MANIFEST).read_text()))


def test_two_workers_score_a_folder_as_the_model_does_in_process(
    client: Client, clf: str, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = predict(client, job(data, out, workers=2))
    assert manifest.status == "succeeded" and manifest.error is None
    assert (manifest.model, manifest.version, manifest.runtime) == ("clf", 1, "native")
    assert manifest.rows_in == manifest.rows_out == 720 and manifest.rows_rejected == 0
    # 300 -> 3 chunks, 250 -> 3, 170 -> 2
    assert [c.index for c in manifest.chunks] == list(range(8))
    assert [(Path(c.source).name, c.offset) for c in manifest.chunks][2:4] == [
        ("part-0.parquet", 200),
        ("part-1.parquet", 0),
    ]
    assert [Path(i["path"]).name for i in manifest.inputs] == [
        f"part-{i}.parquet" for i in range(3)
    ]
    assert manifest_of(out) == manifest
    table = scored(out)
    want = expected(client, data)
    assert table.column("id").to_pylist() == want["id"].tolist()
    assert table.column("label").to_pylist() == want["label"].tolist()
    assert table.column("probabilities").to_pylist() == [list(p) for p in want["probabilities"]]
    assert sorted(os.listdir(out)) == [MANIFEST] + [f"part-{i:06d}.parquet" for i in range(8)]


def test_a_rerun_writes_nothing_and_another_job_is_refused(
    client: Client, clf: str, data: Path, tmp_path: Path, sklearn_classifier: Any
) -> None:
    out = tmp_path / "out"
    first = predict(client, job(data, out))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    before = datetime.now(UTC)
    again = predict(client, job(data, out))
    assert again == first and reused(again, before)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    with pytest.raises(Conflict, match=r"another job \(chunk_rows 100 -> 50\)"):
        predict(client, job(data, out, chunk_rows=50))
    client.register_model("clf", sklearn_classifier[0], sample_input=sklearn_classifier[1])
    client.set_alias("clf", "champion", 2)
    with pytest.raises(Conflict, match="model clf v1 -> clf v2") as caught:
        predict(client, job(data, out))
    assert "--overwrite" in (caught.value.hint or "")
    replaced = predict(client, job(data, out, chunk_rows=400), overwrite=True)
    assert replaced.version == 2 and replaced.run_id != first.run_id
    assert sorted(os.listdir(out)) == [MANIFEST, "part-000000.parquet", "part-000001.parquet"] + [
        "part-000002.parquet"
    ]


def test_resume_redoes_only_the_missing_chunks_and_ends_as_a_whole_run(
    client: Client, clf: str, data: Path, tmp_path: Path
) -> None:
    whole = predict(client, job(data, tmp_path / "whole"))
    out = tmp_path / "out"
    predict(client, job(data, out))
    # as a run killed mid-way leaves it: some chunks recorded, one part gone, one corrupt
    killed = manifest_of(out)
    killed.status, killed.finished_at = "running", None
    killed.chunks = [c for c in killed.chunks if c.index in (0, 1, 2, 4, 5)]
    Output(str(out)).write_manifest(killed)
    (out / "part-000004.parquet").write_bytes(b"half a file")
    (out / "part-000001.parquet").unlink()
    kept = (out / "part-000000.parquet").stat().st_mtime_ns
    with pytest.raises(Conflict, match="unfinished run") as caught:
        predict(client, job(data, out))
    assert "--resume" in (caught.value.hint or "")
    resumed = predict(client, job(data, out), resume=True)
    assert resumed.status == "succeeded" and resumed.run_id == killed.run_id
    assert (out / "part-000000.parquet").stat().st_mtime_ns == kept  # not redone
    assert [(c.index, c.sha256) for c in resumed.chunks] == [
        (c.index, c.sha256) for c in whole.chunks
    ]
    assert scored(out).equals(scored(tmp_path / "whole"))
    # the input changes: the run cannot be resumed into the same output
    pd.read_parquet(data / "part-2.parquet").head(5).to_parquet(data / "part-2.parquet")
    killed.status = "failed"
    Output(str(out)).write_manifest(killed)
    with pytest.raises(Conflict, match=r"cannot resume .*inputs changed: \['.*part-2\.parquet'\]"):
        predict(client, job(data, out), resume=True)


def test_a_bad_row_in_a_worker_fails_the_run_with_its_place_and_hint(
    client: Client, clf: str, data: Path, tmp_path: Path
) -> None:
    frame = pd.read_parquet(data / "part-1.parquet")
    frame.loc[frame.index[120], "c"] = np.nan
    frame.to_parquet(data / "part-1.parquet", index=False)
    out = tmp_path / "out"
    with pytest.raises(InvalidInput) as caught:
        predict(client, job(data, out, workers=2))
    message = f"{data / 'part-1.parquet'}, row 121: column 'c' has a missing value"
    assert caught.value.message.startswith(message)
    assert "--on-bad-rows skip" in (caught.value.hint or "")
    failed = manifest_of(out)
    assert failed.status == "failed" and failed.error is not None and message in failed.error
    assert 4 not in {c.index for c in failed.chunks}  # the failing chunk is not recorded

    manifest = predict(client, job(data, out, on_bad_rows="skip"), overwrite=True)
    assert (manifest.rows_in, manifest.rows_out, manifest.rows_rejected) == (720, 719, 1)
    rejects = pq.read_table(out / "_rejects" / "part-000004.parquet")
    assert rejects.column("row").to_pylist() == [121]
    assert rejects.column("id").to_pylist() == [420]
    assert "column 'c' has a missing value" in rejects.column("reason")[0].as_py()


def test_nothing_is_written_for_an_unknown_model_or_an_occupied_folder(
    client: Client, clf: str, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(NotFound):
        predict(client, job(data, out, model="models:/nope/1"))
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="not empty and holds no run manifest"):
        predict(client, job(data, out))
    with pytest.raises(InvalidInput, match="on_bad_rows is 'drop'"):
        predict(client, job(data, out, on_bad_rows="drop"))


def test_output_on_an_object_store_and_progress_lines(client: Client, clf: str, data: Path) -> None:
    import fsspec

    lines = io.StringIO()
    url = "memory://batch-runner-test/out"
    try:
        manifest = predict(client, job(data, url), progress=JsonLines(lines))
        memory = fsspec.filesystem("memory")
        names = sorted(p.rsplit("/", 1)[-1] for p in memory.find("/batch-runner-test/out"))
        assert names == [MANIFEST] + [f"part-{i:06d}.parquet" for i in range(8)]
        with memory.open("/batch-runner-test/out/part-000007.parquet", "rb") as f:
            assert pq.read_table(f).num_rows == 70
    finally:
        fsspec.filesystem("memory").rm("/batch-runner-test", recursive=True)
    assert manifest.rows_out == 720
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert len(events) == 8 and events[-1]["rows_done"] == events[-1]["rows_total"] == 720
    assert set(events[0]) == {
        "event",
        "chunks_done",
        "rows_done",
        "rows_total",
        "rows_per_s",
        "eta_s",
    }
    assert events[-1]["eta_s"] == 0.0


def test_the_bar_and_the_estimate_of_a_csv_by_its_bytes() -> None:
    from modelport.batch.progress import Bar, Estimate, for_stream

    screen = io.StringIO()
    bar = Bar(screen)
    bar.start(rows_total=None, bytes_total=1000)
    bar.advance(rows=10, bytes=250)
    bar.close()
    assert "rows/s" in screen.getvalue() and "10 rows" in screen.getvalue()
    estimate = Estimate()
    estimate.start(rows_total=None, bytes_total=1000, rows_done=40, bytes_done=400)
    estimate.advance(rows=10, bytes=300)
    assert estimate.fraction == 0.7 and estimate.eta_s is not None
    assert isinstance(for_stream(io.StringIO()), JsonLines)


def test_a_rerun_with_publish_publishes_a_run_found_in_place(
    client: Client, clf: str, data: Path, tmp_path: Path
) -> None:
    from modelport.batch.publish import current, unpublish

    client.deploy("scores", "models:/clf/1", precomputed=True)
    spec = job(data, tmp_path / "out", publish="scores")
    first = predict(client, spec)
    assert current(client, "scores").run_id == first.run_id
    unpublish(client, "scores")
    assert current(client, "scores") is None

    again = predict(client, spec)  # nothing to score, but still the run to publish
    assert again.run_id == first.run_id
    assert current(client, "scores").run_id == first.run_id


@pytest.fixture
def grouped(data: Path, tmp_path: Path) -> Path:
    """The same rows as ``data``, written in row groups of 150: five spans of chunks."""
    folder = tmp_path / "grouped"
    folder.mkdir()
    for part in sorted(data.iterdir()):
        pq.write_table(pq.read_table(part), folder / part.name, row_group_size=150)
    return folder


def test_workers_reading_their_own_row_groups_score_as_the_chunks_sent_to_them(
    client: Client, clf: str, data: Path, grouped: Path, tmp_path: Path
) -> None:
    from modelport.batch.source import resolve

    spans = resolve(str(grouped)).spans(100)
    assert spans is not None and len(spans) == 5  # enough to share out: workers read
    assert resolve(str(data)).spans(100) is not None  # one row group a file: 3 spans, too few
    sent = predict(client, job(data, tmp_path / "sent", workers=2))
    read = predict(client, job(grouped, tmp_path / "read", workers=2))
    assert [(c.index, c.offset, c.rows_in) for c in read.chunks] == [
        (c.index, c.offset, c.rows_in) for c in sent.chunks
    ]
    assert [c.sha256 for c in read.chunks] == [c.sha256 for c in sent.chunks]
    table = scored(tmp_path / "read")
    want = expected(client, data)
    assert table.column("id").to_pylist() == want["id"].tolist()
    assert table.column("label").to_pylist() == want["label"].tolist()


def test_a_bad_row_in_a_span_keeps_the_chunks_before_it(
    client: Client, clf: str, grouped: Path, tmp_path: Path
) -> None:
    frame = pq.read_table(grouped / "part-1.parquet").to_pandas()
    frame.loc[frame.index[120], "c"] = np.nan  # chunk 4, the second of its file's first span
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, grouped / "part-1.parquet", row_group_size=150)
    out = tmp_path / "out"
    with pytest.raises(InvalidInput) as caught:
        predict(client, job(grouped, out, workers=2))
    assert caught.value.message.startswith(
        f"{grouped / 'part-1.parquet'}, row 121: column 'c' has a missing value"
    )
    failed = manifest_of(out)
    assert failed.status == "failed"
    assert 3 in {c.index for c in failed.chunks}  # the span's first chunk is recorded
    assert 4 not in {c.index for c in failed.chunks}


def test_a_resume_reads_the_spans_left_and_ends_as_a_whole_run(
    client: Client, clf: str, grouped: Path, tmp_path: Path
) -> None:
    whole = predict(client, job(grouped, tmp_path / "whole", workers=2))
    out = tmp_path / "out"
    predict(client, job(grouped, out, workers=2))
    killed = manifest_of(out)
    killed.status, killed.finished_at = "running", None
    # chunk 3 (first of its span) is missing, chunk 4 (the span's second) is done
    killed.chunks = [c for c in killed.chunks if c.index in (0, 1, 2, 4, 6, 7)]
    Output(str(out)).write_manifest(killed)
    (out / "part-000003.parquet").unlink()
    kept = (out / "part-000004.parquet").stat().st_mtime_ns
    resumed = predict(client, job(grouped, out, workers=2), resume=True)
    assert (out / "part-000004.parquet").stat().st_mtime_ns == kept  # read, not redone
    assert [(c.index, c.sha256) for c in resumed.chunks] == [
        (c.index, c.sha256) for c in whole.chunks
    ]
