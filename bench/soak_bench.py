"""Soak: memory of a server held at a steady rate for minutes (default 5).

The demo fraud model (gradient boosting, as in `serve_bench.py`) is served by
``--workers`` workers with the prediction log on, as in production. The run measures the
closed-loop capacity for single-row requests (`loadgen.py`, 8 connections, 5 s), then
holds ``--share`` of it (70% by default; at most ``--max-rate``, what one Python load
generator sustains on a small machine) open loop (`openloop.py`) for ``--seconds``.
Every ``--every`` seconds it reads the memory of every server process (the supervisor,
the workers, the watch process): VmRSS from ``/proc/PID/status`` and PSS from
``/proc/PID/smaps_rollup``, which splits shared pages among the processes sharing them,
so the PSS sum counts each page once. Growth is end minus start, where start is the
first sample after ``--settle`` seconds of load (imports, first batches and log buffers
warm up first).

Prints the figures next to the start figures of the same run and writes
bench/results/soak_bench.json.

Run: ``python bench/soak_bench.py [--seconds 300] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from serve_bench import free_port, machine, prepare, stop, wait_ready, write_bodies

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def _kb(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def memory(pgid: int) -> dict[str, Any]:
    """RSS and PSS (MB) of each process in the group but its leader (the `timeout`)."""
    processes = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            pid = int(stat.parent.name)
            if int(fields[2]) != pgid or pid == pgid:
                continue
            processes[pid] = {
                "rss_mb": round(_kb(stat.parent / "status", "VmRSS") / 1024, 1),
                "pss_mb": round(_kb(stat.parent / "smaps_rollup", "Pss") / 1024, 1),
            }
        except (OSError, ValueError, IndexError):
            continue
    return {
        "rss_mb": round(sum(p["rss_mb"] for p in processes.values()), 1),
        "pss_mb": round(sum(p["pss_mb"] for p in processes.values()), 1),
        "processes": processes,
    }


def start(home: Path, port: int, workers: int, limit: float) -> subprocess.Popen[bytes]:
    argv = ["timeout", "--signal=TERM", str(int(limit)), sys.executable, "-m"]
    argv += ["modelport.cli.main", "--home", str(home), "serve", "--host", HOST]
    argv += ["--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    proc = subprocess.Popen(argv, start_new_session=True)
    wait_ready(proc, f"http://{HOST}:{port}/v2/health/ready")
    return proc


def capacity(port: int, body: Path) -> float:
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--port", str(port)]
    argv += ["--path", "/v1/endpoints/fraud/predict", "--body", str(body), "-c", "8"]
    argv += ["-d", "5", "-w", "1"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rps"])


def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    _, home = prepare(workdir)
    body = write_bodies(workdir)[1]
    port = free_port()
    proc = start(home, port, args.workers, limit=args.seconds + 900)
    try:
        cap = capacity(port, body)
        rate = min(args.share * cap, args.max_rate)
        print(f"capacity {cap:.0f} req/s; soaking at {rate:.0f} req/s for {args.seconds:g} s")
        argv = [sys.executable, str(BENCH / "openloop.py"), "--port", str(port)]
        argv += ["--path", "/v1/endpoints/fraud/predict", "--body", str(body)]
        argv += ["--rate", f"{rate:.1f}", "-d", str(args.seconds), "-w", "0"]
        argv += ["--health-every", "1"]
        load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        began = time.monotonic()
        samples = []
        while load.poll() is None:
            time.sleep(args.every)
            sample = {"t": round(time.monotonic() - began, 1), **memory(proc.pid)}
            samples.append(sample)
            print(f"t={sample['t']:>6} s  RSS {sample['rss_mb']} MB  PSS {sample['pss_mb']} MB")
        out, _ = load.communicate(timeout=60)
        figures = json.loads(out.strip().splitlines()[-1])
    finally:
        stop(proc)
    settled = [s for s in samples if s["t"] >= args.settle and s["t"] <= args.seconds] or samples
    first, last = settled[0], settled[-1]
    half = next(s for s in settled if s["t"] >= (first["t"] + last["t"]) / 2)
    return {
        "half": half,
        "second_half_pss_growth_mb": round(last["pss_mb"] - half["pss_mb"], 1),
        "capacity_rps": cap,
        "rate": rate,
        "load": figures,
        "start": first,
        "end": last,
        "rss_growth_mb": round(last["rss_mb"] - first["rss_mb"], 1),
        "pss_growth_mb": round(last["pss_mb"] - first["pss_mb"], 1),
        "pss_median_mb": statistics.median(s["pss_mb"] for s in settled),
        "samples": [{k: s[k] for k in ("t", "rss_mb", "pss_mb")} for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the soak")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--share", type=float, default=0.7, help="share of capacity held")
    parser.add_argument("--max-rate", type=float, default=800.0, help="req/s at most")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before start")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelport-soak-") as tmp:
        figures = soak(args, Path(tmp))
    result = machine() | {
        "seconds": args.seconds,
        "workers": args.workers,
        **figures,
    }
    out = BENCH / "results" / "soak_bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    load, first, last = figures["load"], figures["start"], figures["end"]
    print()
    print(
        f"`bench/soak_bench.py`, {result['timestamp']}, {result['cpus']} CPUs, Python "
        f"{result['python']}, {args.seconds:g} s at {figures['rate']:.0f} req/s "
        f"({figures['rate'] / figures['capacity_rps']:.0%} of the {figures['capacity_rps']:.0f}"
        f" req/s measured), {args.workers} workers, prediction log on, load average "
        f"{result['load_average'][0]:.1f}."
    )
    print()
    print(f"| | at t={first['t']:.0f} s | at t={last['t']:.0f} s | growth |")
    print("|---|---:|---:|---:|")
    print(
        f"| RSS, sum over {len(last['processes'])} processes (MB) | {first['rss_mb']} | "
        f"{last['rss_mb']} | {figures['rss_growth_mb']:+} |"
    )
    print(
        f"| PSS, sum (MB) | {first['pss_mb']} | {last['pss_mb']} | {figures['pss_growth_mb']:+} |"
    )
    print(
        f"| PSS growth over the second half, t={figures['half']['t']:.0f} s to the end (MB) | "
        f"{figures['half']['pss_mb']} | {last['pss_mb']} | "
        f"{figures['second_half_pss_growth_mb']:+} |"
    )
    for pid, end in last["processes"].items():
        began = first["processes"].get(pid, {"rss_mb": 0.0, "pss_mb": 0.0})
        print(
            f"| process {pid}: RSS / PSS (MB) | {began['rss_mb']} / {began['pss_mb']} | "
            f"{end['rss_mb']} / {end['pss_mb']} | {end['rss_mb'] - began['rss_mb']:+.1f} / "
            f"{end['pss_mb'] - began['pss_mb']:+.1f} |"
        )
    print(
        f"\nanswered {load['answered']} ({load['ok']['n']} ok, codes {load['codes']}), "
        f"p50/p99 {load['ok'].get('p50_ms')} / {load['ok'].get('p99_ms')} ms, "
        f"connection errors {load['connection_errors']}, unsent {load['unsent']}"
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
