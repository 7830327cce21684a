"""Batch prediction benchmark: ``modelport batch predict`` vs the bare model, same run.

Data: a Parquet file of 2,000,000 rows of the demo fraud model's 20 float features plus
an ``id`` column (pyarrow's default row groups). Model: the demo ``fraud`` classifier
(scikit-learn gradient boosting, 100 trees), registered in a temporary home, which
also compiles it to ONNX.

Ceiling: the model's own call over all rows at once, in this process, data already in
memory (``predict_proba`` of the scikit-learn model; ``InferenceSession.run`` of the
ONNX graph), no reading, checking or writing. With one thread, as each batch worker
runs, and for ONNX with as many threads as cores.

Batch: ``modelport batch predict --workers 2`` as a user runs it (a new process per
run), with the runtime ``auto`` picks (the compiled form) and ``native``, ``--rounds``
times each (default 3, the order alternating), medians reported. Figures: rows/s over
the command's wall time (Python start to the command's exit: imports, model loads,
reading, checking, writing, manifest), rows/s of the job alone (its manifest's start
to end), rows/s in steady state (between the first and the last chunk's progress
line). Peak memory of the job's processes (parent, fork server and workers: the
largest sum of their VmRSS, sampled every 50 ms, and of their PSS, every 0.5 s) is
taken in one more run per runtime, as sampling costs CPU the timed runs do not give
up. The same job on a quarter of the rows shows that memory follows the chunk size,
not the data's.

Run: ``make bench-batch`` or ``python bench/batch_bench.py [--rows N]``; writes
bench/results/batch_bench.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from serve_bench import machine

from modelport.client import Client
from modelport.examples.demo import fraud_data, train_fraud
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
TARGET = 0.80  # of the ceiling's rows/s
WORKERS = 2
Figures = dict[str, Any]


def write_data(path: Path, rows: int) -> None:
    """``rows`` rows of the fraud features and an id, written 250,000 rows at a time."""
    writer: pq.ParquetWriter | None = None
    step = 250_000
    for start in range(0, rows, step):
        frame, _ = fraud_data(min(step, rows - start), seed=100 + start // step)
        frame.insert(0, "id", np.arange(start, start + len(frame), dtype=np.int64))
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def ceilings(home: Path, data: Path) -> Figures:
    """The model's own call on every row at once (best of 2), per runtime."""
    import onnxruntime
    import skops.io as sio

    from modelport.runtimes.loading import compiled_artifact

    client = Client(Settings(home=home))
    version = client.get_version("models:/fraud/1")
    skops_path = client.artifacts.local_path(version.artifact)
    compiled = compiled_artifact(version)
    assert compiled is not None, version.compiled
    onnx_path = client.artifacts.local_path(compiled)
    client.close()
    table = pq.read_table(data)
    x = np.column_stack([table.column(c).to_numpy() for c in table.column_names[1:]])
    del table
    rows = len(x)
    model = sio.load(skops_path, trusted=sio.get_untrusted_types(file=skops_path))
    with warnings.catch_warnings():  # fitted on a frame; a bare array is the fastest call
        warnings.simplefilter("ignore", UserWarning)
        out: Figures = {"native_1_thread": _best(lambda: model.predict_proba(x), rows)}
    x32 = x.astype(np.float32)
    for threads in sorted({1, os.cpu_count() or 1}):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feed = {session.get_inputs()[0].name: x32}
        out[f"compiled_{threads}_thread"] = _best(lambda s=session, f=feed: s.run(None, f), rows)
    out["data_in_memory_mb"] = x.nbytes / 2**20
    return out


def _best(call: Any, rows: int) -> Figures:
    times = []
    for _ in range(2):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return {"seconds": min(times), "rows_per_s": rows / min(times)}


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_pids(pgid: int) -> list[str]:
    """The processes of a process group (a scan of /proc: done twice a second only)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[2]) == pgid:
                found.append(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return found


class Peak:
    """The largest sum of VmRSS (every 50 ms) and PSS (every 0.5 s) over a process
    group, sampled in a thread until the group's leader exits."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.rss_mb = self.pss_mb = 0.0
        self.processes = 0
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        pids: list[str] = []
        tick = 0
        while self.proc.poll() is None:
            if tick % 10 == 0:
                pids = group_pids(self.proc.pid)
                self.processes = max(self.processes, len(pids))
                pss = sum(_kb(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids)
                self.pss_mb = max(self.pss_mb, pss / 1024)
            rss = sum(_kb(f"/proc/{pid}/status", "VmRSS") for pid in pids)
            self.rss_mb = max(self.rss_mb, rss / 1024)
            tick += 1
            time.sleep(0.05)

    def figures(self) -> Figures:
        self.thread.join()
        return {"peak_rss_mb": self.rss_mb, "peak_pss_mb": self.pss_mb, "processes": self.processes}


def batch_run(
    home: Path, data: Path, out: Path, runtime: str, rows: int, *, memory: bool = False
) -> Figures:
    """One ``modelport batch predict`` as a user runs it; its figures. The wall time
    runs to the command's exit, as a shell waits for it. With ``memory`` the run's
    processes are sampled for their peak memory (a run apart: sampling costs CPU)."""
    argv = [sys.executable, "-m", "modelport.cli.main", "--home", str(home), "batch", "predict"]
    argv += ["--model", "models:/fraud/1", "--input", str(data), "--output", str(out)]
    argv += ["--id-column", "id", "--workers", str(WORKERS), "--runtime", runtime]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    peak = Peak(proc) if memory else None
    seen: list[tuple[float, int]] = []  # (when, rows done) per progress line
    reader = threading.Thread(target=_progress, args=(proc, seen), daemon=True)
    reader.start()
    proc.wait()
    wall = time.monotonic() - started
    reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"batch predict failed ({proc.returncode})")
    manifest = json.loads((out / "_manifest.json").read_text())
    shutil.rmtree(out)
    job = (
        datetime.datetime.fromisoformat(manifest["finished_at"])
        - datetime.datetime.fromisoformat(manifest["started_at"])
    ).total_seconds()
    (t0, r0), (t1, r1) = seen[0], seen[-1]
    return {
        "runtime": manifest["runtime"],
        "rows": manifest["rows_out"],
        "chunks": len(manifest["chunks"]),
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "job_s": job,
        "job_rows_per_s": rows / job,
        "steady_rows_per_s": (r1 - r0) / (t1 - t0) if t1 > t0 else None,
        "first_chunk_s": t0 - started,
        **(peak.figures() if peak is not None else {}),
    }


def _progress(proc: subprocess.Popen[str], seen: list[tuple[float, int]]) -> None:
    """Note when each chunk's progress line arrives; pass other lines through."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith('{"event": "chunk"'):
            seen.append((time.monotonic(), json.loads(line)["rows_done"]))
        else:
            sys.stderr.write(line)


def median_run(runs: list[Figures]) -> Figures:
    """The median of each figure over timed rounds (the rounds kept too)."""
    keys = ("wall_s", "rows_per_s", "job_s", "job_rows_per_s", "steady_rows_per_s", "first_chunk_s")
    out = dict(runs[0])
    for key in keys:
        out[key] = float(np.median([r[key] for r in runs]))
    out["rounds"] = [{k: r[k] for k in keys} for r in runs]
    return out


def markdown(report: Figures) -> str:
    ceiling = report["ceiling"]
    lines = [
        f"{report['rows']:,} rows, {report['cpus']} CPUs, {WORKERS} workers, "
        f"{report['file_mb']:.0f} MB Parquet ({ceiling['data_in_memory_mb']:.0f} MB as floats "
        f"in memory); batch figures are medians of {len(report['batch'][0]['rounds'])} runs, "
        "memory from one more run each",
        "",
        "| runtime | ceiling rows/s (1 thread) | batch rows/s (command) | ratio "
        "| batch rows/s (job) | ratio | steady rows/s | ratio | first chunk s "
        "| peak RSS MB (procs) | peak PSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["batch"]:
        best = ceiling[f"{run['runtime']}_1_thread"]["rows_per_s"]
        steady = run["steady_rows_per_s"] or 0.0
        lines.append(
            f"| {run['runtime']} | {best:,.0f} | {run['rows_per_s']:,.0f} | "
            f"{run['rows_per_s'] / best:.2f} | {run['job_rows_per_s']:,.0f} | "
            f"{run['job_rows_per_s'] / best:.2f} | {steady:,.0f} | {steady / best:.2f} | "
            f"{run['first_chunk_s']:.1f} | {run['peak_rss_mb']:.0f} ({run['processes']}) | "
            f"{run['peak_pss_mb']:.0f} |"
        )
    quarter = report["quarter"]
    lines.append(
        f"\nPeak memory with a quarter of the rows ({quarter['rows']:,}, compiled): "
        f"{quarter['peak_rss_mb']:.0f} MB RSS, {quarter['peak_pss_mb']:.0f} MB PSS."
    )
    auto = report["batch"][0]
    native = ceiling["native_1_thread"]["rows_per_s"]
    lines.append(
        f"\nThe default run ({auto['runtime']}) against scikit-learn's own `predict_proba` "
        f"ceiling: {auto['rows_per_s'] / native:.2f} (command), "
        f"{auto['job_rows_per_s'] / native:.2f} (job)."
    )
    many = [k for k in ceiling if k.startswith("compiled_") and not k.endswith("_1_thread")]
    for key in many:
        lines.append(
            f"\nONNX with {key.split('_')[1]} threads, one call: "
            f"{ceiling[key]['rows_per_s']:,.0f} rows/s."
        )
    verdicts = []
    for run in report["batch"]:
        ratio = run["rows_per_s"] / ceiling[f"{run['runtime']}_1_thread"]["rows_per_s"]
        verdicts.append(
            f"{run['runtime']}: {ratio:.2f} ({'met' if ratio >= TARGET else 'not met'})"
        )
    lines.append(
        f"\nTarget >= {TARGET:.0%} of the ceiling (command's wall time): " + "; ".join(verdicts)
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per runtime")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "batch_bench.json")
    args = parser.parse_args()
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelport-batch-bench-") as tmp:
        work = Path(tmp)
        train_fraud(work)
        home = work / "home"
        client = Client(Settings(home=home))
        sample = pq.read_table(work / "fraud_sample.parquet").to_pandas()
        client.register_model("fraud", work / "fraud.skops", sample_input=sample)
        client.close()
        data = work / "fraud.parquet"
        write_data(data, args.rows)
        report: Figures = machine() | {
            "rows": args.rows,
            "file_mb": data.stat().st_size / 2**20,
            "ceiling": ceilings(home, data),
        }
        runtimes = ("auto", "native")
        timed: dict[str, list[Figures]] = {r: [] for r in runtimes}
        for round_ in range(args.rounds):  # the order alternates between rounds
            for runtime in runtimes if round_ % 2 == 0 else runtimes[::-1]:
                out = work / f"out-{runtime}-{round_}"
                timed[runtime].append(batch_run(home, data, out, runtime, args.rows))
        report["batch"] = []
        for runtime in runtimes:
            sampled = batch_run(home, data, work / "out-mem", runtime, args.rows, memory=True)
            run = median_run(timed[runtime])
            run.update({k: sampled[k] for k in ("peak_rss_mb", "peak_pss_mb", "processes")})
            report["batch"].append(run)
        # Memory is bounded by the chunk, not the data: the same job on a quarter of it.
        quarter = work / "quarter.parquet"
        write_data(quarter, args.rows // 4)
        report["quarter"] = batch_run(
            home, quarter, work / "out-quarter", "auto", args.rows // 4, memory=True
        )
    report["markdown"] = markdown(report)
    report["wall_s"] = time.monotonic() - begun
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(report["markdown"])
    print(f"\nwall time {report['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
