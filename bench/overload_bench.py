"""Load shedding under overload: admitted latency, shed answers and health at 3x capacity.

A model with a fixed cost (a custom model that sleeps ``--model-ms`` per call, whatever
its rows, so its capacity is known and does not depend on the CPU the load generator
takes) is served by one worker with ``max_batch_size`` ``--batch`` and, on one endpoint
each, ``max_queue`` of 1, 4 and 16 batches (16 is the default). In one run:

1. **capacity**: closed loop (`loadgen.py`, ``2 x batch`` connections, never more than
   the queue takes) on the default endpoint: answers per second;
2. **baseline**: open loop (`openloop.py`) at the sustainable rate, 80% of capacity:
   admitted p50/p99, the figure the overload is compared with;
3. **overload**: open loop at 3x the sustainable rate on each endpoint: admitted
   p50/p99 and their ratio to the baseline's p99, the shed fraction, the 503s' p50/p99
   (target: p99 under 50 ms) and ``/v2/health/live`` every 100 ms meanwhile.

Latencies are from each request's due time (open loop), so a server that falls behind
is charged for it. ``--rounds N`` repeats the three steps on the same server and reports
the median of each figure (a shared machine's stalls hit single runs' p99s). Prints a
Markdown table and writes bench/results/overload_bench.json (every round's figures).
The load generator shares the machine with the server: read ratios within one run.

Run: ``python bench/overload_bench.py [--quick] [--duration S] [--rounds N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from serve_bench import free_port, machine, stop, wait_ready

from modelport.client import Client
from modelport.registry import ServingOptions
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
QUEUE_BATCHES = (1, 4, 16)  # max_queue in batches of max_batch_size; 16 is the default
SUSTAINABLE = 0.8  # share of the measured capacity called sustainable
OVERLOAD = 3.0
FIXED_COST = """
import time


class Model:
    def load(self, path):
        pass

    def predict(self, frame):
        time.sleep({seconds})
        return frame["a"] * 2
"""


def prepare(workdir: Path, model_ms: float, batch: int) -> Path:
    """Register the fixed-cost model; deploy it once per queue length; return the home."""
    home = workdir / "home"
    client = Client(Settings(home=home))
    folder = workdir / "fixed"
    folder.mkdir()
    (folder / "model.py").write_text(FIXED_COST.format(seconds=model_ms / 1000))
    sample = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 0.0]})
    client.register_model("fixed", folder, flavor="custom", trust=True, sample_input=sample)
    for batches in QUEUE_BATCHES:
        serving = ServingOptions(max_batch_size=batch, max_queue=batches * batch)
        client.deploy(f"q{batches}", "models:/fixed/1", serving=serving)
    client.close()
    return home


def start(home: Path, port: int, limit: float) -> subprocess.Popen[bytes]:
    argv = ["timeout", "--signal=TERM", str(int(limit)), sys.executable, "-m"]
    argv += ["modelport.cli.main", "--home", str(home), "serve", "--host", HOST]
    argv += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    env = {**os.environ, "MODELPORT_LOG_SAMPLE_RATE": "0"}  # the model, not the log
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    wait_ready(proc, f"http://{HOST}:{port}/v2/health/ready")
    return proc


def run_json(argv: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def capacity(port: int, body: Path, conc: int, seconds: float) -> dict[str, Any]:
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--port", str(port)]
    argv += ["--path", "/v1/endpoints/q16/predict", "--body", str(body), "-c", str(conc)]
    argv += ["-d", str(seconds), "-w", "1"]
    return run_json(argv, seconds + 60)


def open_loop(port: int, endpoint: str, body: Path, rate: float, seconds: float) -> dict[str, Any]:
    argv = [sys.executable, str(BENCH / "openloop.py"), "--port", str(port)]
    argv += ["--path", f"/v1/endpoints/{endpoint}/predict", "--body", str(body)]
    argv += ["--rate", f"{rate:.1f}", "-d", str(seconds), "-w", "1"]
    return run_json(argv, seconds + 90)


def one_round(args: argparse.Namespace, port: int, body: Path) -> dict[str, Any]:
    cap = capacity(port, body, 2 * args.batch, args.duration)
    sustainable = SUSTAINABLE * cap["rps"]
    print(f"capacity {cap['rps']:.0f} req/s; sustainable {sustainable:.0f}", flush=True)
    baseline = open_loop(port, "q16", body, sustainable, args.duration)
    print(f"baseline: {json.dumps(baseline)}", flush=True)
    overload = {}
    for batches in QUEUE_BATCHES:
        time.sleep(1)  # let the previous queue drain
        name = f"q{batches}"
        overload[name] = open_loop(port, name, body, OVERLOAD * sustainable, args.duration)
        print(f"overload {name}: {json.dumps(overload[name])}", flush=True)
    return {"capacity": cap, "sustainable_rps": sustainable, "baseline": baseline, **overload}


def median_of(rounds: list[Any]) -> Any:
    """The median of every number across rounds, keeping the shape of the first."""
    first = rounds[0]
    if isinstance(first, dict):
        return {k: median_of([r[k] for r in rounds]) for k in first if all(k in r for r in rounds)}
    if isinstance(first, int | float) and not isinstance(first, bool):
        return statistics.median(rounds)
    return first


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    home = prepare(workdir, args.model_ms, args.batch)
    body = workdir / "body.json"
    body.write_text(json.dumps({"dataframe_records": [{"a": 1.5, "b": 0.0}]}))
    port = free_port()
    proc = start(home, port, limit=args.rounds * (20 * args.duration + 120) + 600)
    try:
        rounds = [one_round(args, port, body) for _ in range(args.rounds)]
    finally:
        stop(proc)
    return {**median_of(rounds), "rounds": rounds}


def table(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    base = figures["baseline"]
    base_p99 = base["ok"].get("p99_ms", float("nan"))
    lines = [
        f"capacity {figures['capacity']['rps']:.0f} req/s (closed loop, "
        f"{2 * args.batch} connections); sustainable rate {figures['sustainable_rps']:.0f} "
        f"req/s; baseline at it: admitted p50/p99 {base['ok'].get('p50_ms')} / {base_p99} ms, "
        f"shed {base['shed_fraction']:.1%}, health p99 {base['health'].get('p99_ms')} ms",
        "",
        "| max_queue | offered req/s | admitted req/s | admitted p50 / p99 ms | p99 / baseline "
        "p99 | shed | 503 p50 / p99 ms | health p50 / p99 ms | unclean / conn. errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batches in QUEUE_BATCHES:
        f = figures[f"q{batches}"]
        ok, shed, health = f["ok"], f["shed"], f["health"]
        ratio = ok.get("p99_ms", float("nan")) / base_p99
        lines.append(
            f"| {batches * args.batch} ({batches} batches) | {f['rate']:.0f} | {f['ok_per_s']:.0f}"
            f" | {ok.get('p50_ms')} / {ok.get('p99_ms')} | {ratio:.1f} | "
            f"{f['shed_fraction']:.1%} | {shed.get('p50_ms')} / {shed.get('p99_ms')} | "
            f"{health.get('p50_ms')} / {health.get('p99_ms')} | "
            f"{f['unclean']} / {f['connection_errors']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--quick", action="store_true", help="4 s per phase")
    parser.add_argument("--model-ms", type=float, default=20.0, help="model cost per call")
    parser.add_argument("--batch", type=int, default=4, help="max_batch_size")
    parser.add_argument("--rounds", type=int, default=1, help="repeat, report medians")
    args = parser.parse_args()
    if args.quick:
        args.duration = 4.0
    with tempfile.TemporaryDirectory(prefix="modelport-overload-") as tmp:
        figures = measure(args, Path(tmp))
    result = machine() | {
        "duration_s": args.duration,
        "model_ms": args.model_ms,
        "max_batch_size": args.batch,
        **figures,
    }
    out = BENCH / "results" / "overload_bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(
        f"`bench/overload_bench.py`, {result['timestamp']}, {result['cpus']} CPUs, Python "
        f"{result['python']}, {args.duration:g} s per phase, model {args.model_ms:g} ms per "
        f"call, max_batch_size {args.batch}, 1 worker, {args.rounds} round(s) (medians), "
        "load average "
        f"{result['load_average'][0]:.1f}."
    )
    print()
    print(table(args, figures))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
