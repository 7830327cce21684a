"""Cost of the prediction log on the hot path: the same server with the log on and off.

One Modelport server (2 workers, the demo fraud model) is started with
``MODELPORT_LOG_SAMPLE_RATE=1`` (every request logged) and with ``0`` (no log at all),
alternately, ``--rounds`` times each, and driven by wrk exactly as
``bench/fast_bench.py`` drives it (``bench/wrk/post.lua``): 1-row requests at 64
connections (the target point) and 64-row requests at 64 connections. Figures are
medians over rounds; the loss is judged on the median of each round's on/off ratio
(the two blocks of a round run back to back, so drift in the machine's load cancels).
After each logged block the bench reads the log's own counters (rows written, rows
dropped) from ``/metrics`` and counts the rows on disk with DuckDB, so a log that
silently fell behind would show. The built-in monitor is off in both
modes (``MODELPORT_MONITOR_INTERVAL_SECONDS=0``): it runs off the hot path.

Prints a Markdown table and writes bench/results/log_bench.json.

Run: ``python bench/log_bench.py [--duration S] [--rounds N] [--quick]`` (needs ``wrk``)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fast_bench import INSTALL_WRK, WORKERS, figures, report_header, write_report, wrk
from serve_bench import free_port, prepare, stop, wait_ready, write_bodies

from modelport.monitoring.logstore import LogStore
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PATH = "/v1/endpoints/fraud/predict"
POINTS = ((1, 64), (64, 64))  # (rows per request, connections); the first is the target
MODES = {"log on": "1", "log off": "0"}
TARGET_LOSS = 0.10  # the goal: under 10% throughput lost at full sampling
Figures = dict[str, Any]


@dataclass(frozen=True)
class Timing:
    duration: int  # seconds measured per point
    warmup: int  # seconds of unmeasured load before each point
    rounds: int  # on/off pairs; the order alternates from round to round


def log_counters(port: int) -> dict[str, float]:
    """The prediction log's row counters, summed over the workers."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.findall(
        r'^modelport_prediction_log_rows_total\{outcome="(\w+)"\} (\S+)$', text, re.M
    )
    return {outcome: float(value) for outcome, value in found}


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every process in the server's process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / ticks


def rows_on_disk(home: Path, logs: Path) -> int:
    store = LogStore(Settings(home=home, log_dir=logs))
    return int(store.query("SELECT count(*) AS n FROM predictions").to_pylist()[0]["n"])


def run_block(
    mode: str, home: Path, logs: Path, bodies: dict[int, Path], timing: Timing
) -> dict[str, Any]:
    """Start the server in ``mode``, measure every point, read the log's counters, stop."""
    port = free_port()
    life = 120 + len(POINTS) * (timing.duration + timing.warmup + 60)
    argv = ["timeout", "-k", "5", str(life), sys.executable, "-m", "modelport.cli.main"]
    argv += ["--home", str(home), "serve", "--env", "production", "--host", HOST]
    argv += ["--port", str(port), "--workers", str(WORKERS), "--log-level", "warning"]
    env = os.environ | {
        "MODELPORT_LOG_SAMPLE_RATE": MODES[mode],
        "MODELPORT_LOG_DIR": str(logs),
        "MODELPORT_MONITOR_INTERVAL_SECONDS": "0",
    }
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        wait_ready(proc, f"http://{HOST}:{port}/v2/health/ready")
        wrk(port, PATH, bodies[1], 8, 2)  # every worker warm before the first point
        points = []
        for rows, conc in POINTS:
            if timing.warmup:
                wrk(port, PATH, bodies[rows], conc, timing.warmup)
            used = cpu_seconds(proc.pid)
            raw = wrk(port, PATH, bodies[rows], conc, timing.duration)
            used = cpu_seconds(proc.pid) - used
            points.append(figures(raw, rows, conc))
            points[-1]["server_cpu_us"] = used / max(raw["requests"], 1) * 1e6
            print(
                f"   {mode:8} rows={rows:<2} c={conc}: {points[-1]['rps']:7.0f} req/s, "
                f"p99 {points[-1]['p99_ms']:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(3)  # two flushes: what was buffered is written by now
        counters = log_counters(port)
    finally:
        stop(proc)
    return {
        "mode": mode,
        "points": points,
        "log_rows_written": counters.get("written", 0.0),
        "log_rows_dropped": counters.get("dropped", 0.0),
        "rows_on_disk": rows_on_disk(home, logs) if MODES[mode] != "0" else 0,
    }


def summary(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point: each mode's medians over rounds, and on/off ratios."""
    table = []
    for i, (rows, conc) in enumerate(POINTS):
        point: dict[str, Any] = {"rows": rows, "concurrency": conc}
        for mode in MODES:
            runs = [b["points"][i] for b in blocks if b["mode"] == mode]
            point[mode] = {
                k: statistics.median(r[k] for r in runs)
                for k in ("rps", "p50_ms", "p99_ms", "server_cpu_us")
            }
            point[mode]["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in runs)
        on, off = point["log on"], point["log off"]
        point["throughput_ratio"] = on["rps"] / off["rps"] if off["rps"] else float("nan")
        point["p99_ratio"] = on["p99_ms"] / off["p99_ms"] if off["p99_ms"] else float("nan")
        point["paired_ratios"] = paired(blocks, i)
        point["paired_ratio"] = statistics.median(point["paired_ratios"])
        table.append(point)
    return table


def paired(blocks: list[dict[str, Any]], i: int) -> list[float]:
    """on/off req/s of each round: the two blocks ran back to back, so a machine that
    gets busier or quieter over the run moves both alike."""
    ratios = []
    for r in sorted({b["round"] for b in blocks}):
        rps = {b["mode"]: b["points"][i]["rps"] for b in blocks if b["round"] == r}
        if rps.get("log off"):
            ratios.append(rps["log on"] / rps["log off"])
    return ratios


def markdown(report: dict[str, Any]) -> str:
    t = report["timing"]
    lines = [
        f"`bench/log_bench.py {' '.join(report['argv'])}`, {report['timestamp']}, "
        f"{report['cpus']} CPUs, Python {report['python']}, {report['versions']['wrk']}; "
        f"Modelport {WORKERS} workers, demo fraud model; {t['duration']} s per point, "
        f"median of {t['rounds']} rounds; load average {report['load_average'][0]:.1f}.",
        "",
        "| rows | c | log on req/s | log off req/s | on/off (medians) | on/off (median of "
        "rounds) | server CPU µs/request on / off | p99 ms on / off | p50 ms on / off "
        "| errors on/off |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report["summary"]:
        on, off = p["log on"], p["log off"]
        lines.append(
            f"| {p['rows']} | {p['concurrency']} | {on['rps']:.0f} | {off['rps']:.0f} "
            f"| {p['throughput_ratio']:.3f} | {p['paired_ratio']:.3f} "
            f"| {on['server_cpu_us']:.0f} / {off['server_cpu_us']:.0f} "
            f"| {on['p99_ms']:.2f} / {off['p99_ms']:.2f} "
            f"| {on['p50_ms']:.2f} / {off['p50_ms']:.2f} | {on['errors']} / {off['errors']} |"
        )
    logged = [b for b in report["blocks"] if b["mode"] == "log on"]
    written = sum(b["log_rows_written"] for b in logged)
    dropped = sum(b["log_rows_dropped"] for b in logged)
    on_disk = sum(b["rows_on_disk"] for b in logged)
    target = report["summary"][0]
    loss = 1 - target["paired_ratio"]
    rounds = ", ".join(f"{x:.3f}" for x in target["paired_ratios"])
    lines += [
        "",
        f"Log rows over the logged blocks: {written:.0f} written ({on_disk} on disk), "
        f"{dropped:.0f} dropped.",
        f"Throughput lost with the log on at 1 row, c=64: {loss:.1%}, the median of the "
        f"rounds' on/off ratios ({rounds}) (target < {TARGET_LOSS:.0%}: "
        f"{'met' if loss < TARGET_LOSS else '**not met**'}).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per point")
    parser.add_argument("--rounds", type=int, default=6, help="on/off pairs; figures are medians")
    parser.add_argument("--quick", action="store_true", help="5 s per point, 2 rounds")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "log_bench.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(f"wrk is not on PATH; install it with:\n  {INSTALL_WRK}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    timing = Timing(5, 1, 2) if args.quick else Timing(args.duration, 1, args.rounds)
    begun = time.monotonic()
    blocks = []
    with tempfile.TemporaryDirectory(prefix="modelport-log-bench-") as tmp:
        workdir = Path(tmp)
        _, home = prepare(workdir)
        bodies = write_bodies(workdir)
        for r in range(timing.rounds):
            order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
            for mode in order:
                print(f"-- round {r + 1}: {mode}", file=sys.stderr, flush=True)
                logs = workdir / f"logs-{r}-{mode.replace(' ', '-')}"
                blocks.append({"round": r, **run_block(mode, home, logs, bodies, timing)})
    report = report_header(timing) | {"blocks": blocks, "summary": summary(blocks)}
    report["markdown"] = markdown(report)
    write_report(report, args.out, begun)


if __name__ == "__main__":
    main()
