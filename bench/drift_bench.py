"""Drift over one million logged predictions: seconds to read the window and to compute.

Writes a prediction log of 1,000,000 rows in the on-disk layout the server writes
(``predictions/endpoint=fraud/date=.../*.parquet``, 50 segments of 20,000 rows) for the
demo fraud model's 20 float features, with a logistic regression's ``out_label`` and
``out_probabilities``, into a temporary folder. The reference is 1000 training rows and
their profile, as registration stores them. Then, each step timed ``--rounds`` times
(median reported):

1. **read**: the window (last hour, status ok, one version) with DuckDB into pandas;
2. **drift**: `modelport.monitoring.drift.drift_report` over the 20 inputs and the label;
3. **baseline**: the per-column recipe the report replaces, on the same data:
   ``scipy.stats.ks_2samp`` and ``np.histogram`` (PSI bins) on every column.

Both the unshifted log and one where two features drift are measured; the report must
flag exactly those two. Prints a Markdown table and writes bench/results/drift_bench.json.

Run: ``python bench/drift_bench.py [--rows N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats
from serve_bench import machine
from sklearn.linear_model import LogisticRegression

from modelport.examples.demo import FRAUD_FEATURES, fraud_data
from modelport.monitoring.drift import drift_report
from modelport.profile import compute_profile

BENCH = Path(__file__).resolve().parent
SEGMENT_ROWS = 20_000
SHIFTED = ("amount", "v1")


def write_log(root: Path, frame: pd.DataFrame, model: LogisticRegression, now: dt.datetime) -> None:
    """``frame`` as answered predictions of fraud v1 over the last 50 minutes."""
    folder = root / "predictions" / "endpoint=fraud" / f"date={now:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    start = now - dt.timedelta(minutes=50)
    for seq, begin in enumerate(range(0, len(frame), SEGMENT_ROWS)):
        part = frame.iloc[begin : begin + SEGMENT_ROWS]
        n = len(part)
        proba = model.predict_proba(part)
        request = os.urandom(12).hex()
        ts = start + dt.timedelta(seconds=begin / len(frame) * 3000)
        columns: dict[str, Any] = {
            "prediction_id": [f"{request}-{i}" for i in range(n)],
            "request_id": [request] * n,
            "ts": pa.array([ts] * n, pa.timestamp("us", "UTC")),
            "environment": ["production"] * n,
            "model": ["fraud"] * n,
            "version": pa.array(np.ones(n, np.int64)),
            "variant": ["fraud-v1"] * n,
            "status": ["ok"] * n,
            "error": pa.nulls(n, pa.string()),
            "latency_s": np.full(n, 0.002),
        }
        for name in FRAUD_FEATURES:
            columns[f"in_{name}"] = part[name].to_numpy()
        columns["out_label"] = proba.argmax(axis=1).astype(np.int64)
        offsets = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
        columns["out_probabilities"] = pa.ListArray.from_arrays(offsets, pa.array(proba.ravel()))
        target = folder / f"bench-{os.getpid()}-{seq:08d}.parquet"
        pq.write_table(pa.table(columns), target.with_suffix(".tmp"))
        os.replace(target.with_suffix(".tmp"), target)


def read_window(root: Path, since: dt.datetime) -> pd.DataFrame:
    """The window as the monitor reads it: inputs renamed to the profile's names."""
    glob = str(root / "predictions" / "endpoint=fraud" / "*" / "*.parquet")
    select = ", ".join(f'"in_{c}" AS "{c}"' for c in FRAUD_FEATURES)
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT {select}, out_label FROM read_parquet(?, hive_partitioning=true, "
            "union_by_name=true) WHERE ts >= ? AND status = 'ok' AND version = 1",
            [glob, since],
        ).df()


def baseline(reference: pd.DataFrame, profile: dict[str, Any], live: pd.DataFrame) -> None:
    """ks_2samp and np.histogram per column: the straightforward recipe."""
    for name in FRAUD_FEATURES:
        values = live[name].to_numpy()
        values = values[~np.isnan(values)]
        stats.ks_2samp(reference[name].to_numpy(), values)
        edges = np.asarray(profile["columns"][name]["histogram"]["edges"])
        np.histogram(np.clip(values, edges[0], edges[-1]), edges)


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def measure(
    name: str,
    live_frame: pd.DataFrame,
    reference: pd.DataFrame,
    profile: dict[str, Any],
    model: LogisticRegression,
    rounds: int,
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_log(root, live_frame, model, now)
        write_s = time.perf_counter() - started
        read_s, live = timed(lambda: read_window(root, now - dt.timedelta(hours=1)), rounds)
    outputs = {"label": "out_label"}
    drift_s, report = timed(
        lambda: drift_report(profile, reference, live, output_columns=outputs), rounds
    )
    base_s, _ = timed(lambda: baseline(reference, profile, live), rounds)
    return {
        "log": name,
        "rows": len(live),
        "write_log_s": round(write_s, 3),
        "read_s": round(read_s, 3),
        "drift_s": round(drift_s, 3),
        "read_and_drift_s": round(read_s + drift_s, 3),
        "baseline_ks_histogram_s": round(base_s, 3),
        "drifted_columns": report.drifted_columns,
        "psi_drifted": [c.column for c in report.columns if c.psi_drifted],
        "dataset_drift": report.dataset_drift,
        "methods": sorted({c.method for c in (*report.columns, *report.outputs)}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    train, y = fraud_data(20_000, seed=7)
    model = LogisticRegression(max_iter=1000).fit(train, y)
    reference = train.head(1000)
    reference_labels = model.predict_proba(reference).argmax(axis=1)
    profile = compute_profile(reference, {"label": reference_labels})
    fresh, _ = fraud_data(args.rows, seed=8)
    shifted = fresh.copy()
    shifted["amount"] = shifted["amount"] * 1.5
    shifted["v1"] = shifted["v1"] + 0.3

    results = [
        measure("unshifted", fresh, reference, profile, model, args.rounds),
        measure("shifted", shifted, reference, profile, model, args.rounds),
    ]
    assert not results[0]["psi_drifted"] and not results[0]["dataset_drift"]
    assert set(SHIFTED) <= set(results[1]["drifted_columns"])

    print(
        f"\nDrift over {args.rows:,} logged rows x 20 float inputs + label ({os.cpu_count()} CPUs)"
    )
    header = ("log", "read (DuckDB) s", "drift_report s", "read+drift s", "baseline s", "drifted")
    print("\n| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['log']} | {r['read_s']:.3f} | {r['drift_s']:.3f} | {r['read_and_drift_s']:.3f} "
            f"| {r['baseline_ks_histogram_s']:.3f} | {', '.join(r['drifted_columns']) or '-'} |"
        )
    out = {
        **machine(),
        "rounds": args.rounds,
        "results": results,
    }
    target = BENCH / "results" / "drift_bench.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {target.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
