"""What one watch round reads of a busy prediction log: traffic windows summed from the
segments' footers against the same windows read row by row.

Writes ``--minutes`` of prediction log for one endpoint, in the layout and with the
writer the server uses (``records.build_tables`` and ``write_segment``):
``--segments-per-s`` segments a second (a 2-worker server under load writes 2), each
of ``--requests`` requests of ``--rows`` rows, stamped evenly over the span, with each
file's modification time set to its last request's, as if written then. Then it times
the traffic reads of one watch round (``LogStore.traffic`` over the monitor's window,
1 h, and the default alert rules' 5 m, 10 m and 70 m), ``--rounds`` times (medians):

1. **footers, warm**: a watch process's steady state: every summary already cached,
   only the edge segments read;
2. **footers, cold**: a new process: every footer in the windows read once;
3. **rows (baseline)**: the same segments with their summaries stripped, read row by
   row, as every round read them before segments carried summaries.

Counts must agree exactly and p50/p99 within the sketches' relative error (0.5%).
The cost of rows grows with rows logged; that of footers with segments: the defaults
keep the log small (8 rows a request), so the ratio here understates a 64-row load.

Run: ``python bench/watch_bench.py [--minutes M] [--rounds R] [--quick]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from fast_bench import report_header, write_report

from modelport.monitoring.logstore import LogStore
from modelport.monitoring.records import (
    TS,
    build_tables,
    endpoint_folder,
    entry,
    new_prediction_ids,
    write_segment,
)
from modelport.monitoring.traffic import RELATIVE_ERROR, attach
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
ENDPOINT = "fraud"
WINDOWS = {"monitor 1h": 3600, "rule 5m": 300, "rule 10m": 600, "rule 70m": 4200}


def write_log(settings: Settings, args: argparse.Namespace, now: float) -> tuple[int, int]:
    """The log of the last ``args.minutes``; (segments, rows) written."""
    rng = np.random.default_rng(0)
    segments = int(args.minutes * 60 * args.segments_per_s)
    gap = 1.0 / args.segments_per_s
    models = {"fraud-v1": ("fraud", 1)}
    folder = endpoint_folder(settings.logs_path, ENDPOINT)
    start = now - args.minutes * 60
    rows = 0
    for i in range(segments):
        stamps = start + i * gap + np.sort(rng.uniform(0, gap, args.requests))
        latency = rng.lognormal(np.log(0.004), 0.5, args.requests)
        failed = rng.random(args.requests) < 0.01
        entries = []
        for ts, seconds, bad in zip(stamps, latency, failed, strict=True):
            inputs = {"amount": rng.random(args.rows), "age": rng.random(args.rows)}
            outputs = None if bad else {"label": np.zeros(args.rows, np.int64)}
            status = "model_error" if bad else "ok"
            one = entry(ENDPOINT, "fraud-v1", new_prediction_ids(args.rows), inputs,
                        outputs, float(seconds), status)  # fmt: skip
            entries.append((float(ts), *one[TS + 1 :]))
        for table in build_tables(entries, "production", models).tables:
            day = dt.datetime.fromtimestamp(float(stamps[-1]), dt.UTC).date().isoformat()
            path = folder / f"date={day}" / f"bench-{i:08d}-{table.num_rows}.parquet"
            write_segment(table, path)
            os.utime(path, (float(stamps[-1]), float(stamps[-1])))
            rows += table.num_rows
    return segments, rows


def strip(settings: Settings) -> None:
    """Rewrite every segment without its summary, keeping its modification time."""
    for path in (settings.logs_path / "predictions").rglob("*.parquet"):
        stat = path.stat()
        pq.write_table(attach(pq.read_table(path), None), path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def one_round(store: LogStore, now: dt.datetime) -> tuple[float, dict[str, dict[str, Any]]]:
    begun = time.perf_counter()
    found = {
        name: store.traffic(ENDPOINT, since=now - dt.timedelta(seconds=s), until=now)
        for name, s in WINDOWS.items()
    }
    return time.perf_counter() - begun, found


def timed(settings: Settings, now: dt.datetime, rounds: int, *, warm: bool) -> dict[str, Any]:
    seconds, found = [], {}
    store = LogStore(settings)
    if warm:
        one_round(store, now)
    for _ in range(rounds):
        if not warm:
            store = LogStore(settings)
        spent, found = one_round(store, now)
        seconds.append(spent)
    return {"seconds": statistics.median(seconds), "runs": seconds, "windows": found}


def agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for name in WINDOWS:
        x, y = a[name], b[name]
        if (x["requests"], x["errors"]) != (y["requests"], y["errors"]):
            return False
        for q in ("p50_s", "p99_s"):
            if abs(x[q] - y[q]) > RELATIVE_ERROR * abs(y[q]) * 1.01:
                return False
    return True


def markdown(report: dict[str, Any]) -> str:
    log = report["log"]
    rows = report["results"]
    base = rows["rows (baseline)"]["seconds"]
    lines = [
        f"One watch round's traffic reads (4 windows) over {log['minutes']} min of log: "
        f"{log['segments']:,} segments, {log['rows']:,} rows "
        f"({log['requests_per_segment']} requests x {log['rows_per_request']} rows each)",
        "",
        "| read | seconds (median) | vs rows |",
        "|---|---:|---:|",
    ]
    for name, result in rows.items():
        lines.append(f"| {name} | {result['seconds']:.3f} | {base / result['seconds']:.1f}x |")
    warm = rows["footers, warm"]["windows"]["monitor 1h"]
    lines += [
        "",
        f"Counts equal, quantiles within {RELATIVE_ERROR:.1%}: **{report['agree']}**. "
        f"1 h window: {warm['requests']:,} requests, {warm['errors']:,} errors, "
        f"p50 {warm['p50_s'] * 1000:.3f} ms, p99 {warm['p99_s'] * 1000:.3f} ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=70.0)
    parser.add_argument("--segments-per-s", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=100, help="requests per segment")
    parser.add_argument("--rows", type=int, default=8, help="rows per request")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10 minutes, 3 rounds")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "watch_bench.json")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.rounds = 10.0, 3
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="watch-bench-") as tmp:
        settings = Settings(home=Path(tmp))
        now = time.time()
        print(f"writing {args.minutes:g} min of log ...", file=sys.stderr)
        segments, rows = write_log(settings, args, now)
        at = dt.datetime.fromtimestamp(now, dt.UTC)
        results = {
            "footers, warm": timed(settings, at, args.rounds, warm=True),
            "footers, cold": timed(settings, at, args.rounds, warm=False),
        }
        strip(settings)
        results["rows (baseline)"] = timed(settings, at, args.rounds, warm=False)
    windows = [r["windows"] for r in results.values()]
    report = report_header(argparse.Namespace(**(vars(args) | {"out": str(args.out)}))) | {
        "log": {
            "minutes": args.minutes,
            "segments": segments,
            "rows": rows,
            "requests_per_segment": args.requests,
            "rows_per_request": args.rows,
        },
        "results": results,
        "agree": all(agree(w, windows[-1]) for w in windows),
    }
    report["markdown"] = markdown(report)
    write_report(report, args.out, begun)


if __name__ == "__main__":
    main()
