"""Cost of shadow variants on live traffic: no shadow vs a 2 s-sleeping vs a raising one.

One Modelport server (1 worker, the demo fraud model) serves three endpoints with the
same live version: ``off`` (no shadow), ``sleepy`` (plus a shadow whose model sleeps
2 s per call) and ``raising`` (plus a shadow whose model raises). wrk drives each
endpoint in turn with the same load (``bench/wrk/post.lua``: 1-row requests at
``--connections``), in an order that reverses every round, and the live p50/p99 and
throughput are printed side by side (medians over rounds). After each block the
shadow counters (``modelport_shadow_requests_total``: answered, failed, shed) are read
from ``/metrics``: a sleeping shadow should shed almost every copy and cost the live
path next to nothing; a raising one runs (and logs a failure for) every copy it
keeps. Every request is logged (``MODELPORT_LOG_SAMPLE_RATE=1``), shadows included;
the built-in monitor is off.

Prints a Markdown table and writes bench/results/shadow_bench.json.

Run: ``python bench/shadow_bench.py [--duration S] [--rounds N] [--quick]`` (needs ``wrk``)
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

import pandas as pd
from fast_bench import INSTALL_WRK, figures, report_header, write_report, wrk
from serve_bench import free_port, prepare, stop, wait_ready, write_bodies

from modelport.client import Client
from modelport.registry import DeploymentSpec, Variant
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
MODES = ("off", "sleepy", "raising")  # the endpoint names: no shadow, slow, failing
SHADOWS = {
    "sleepy": (
        "import time\n\nclass Model:\n    def load(self, path):\n        pass\n\n"
        "    def predict(self, frame):\n        if len(frame) == 1:\n"
        "            time.sleep(2.0)\n        return frame.iloc[:, 0] * 0\n"
    ),
    "raising": (
        "class Model:\n    def load(self, path):\n        pass\n\n"
        "    def predict(self, frame):\n        if len(frame) == 1:\n"
        "            raise ValueError('this shadow fails every request')\n"
        "        return frame.iloc[:, 0] * 0\n"
    ),
}
Figures = dict[str, Any]


@dataclass(frozen=True)
class Timing:
    duration: int  # seconds measured per block
    warmup: int  # seconds of unmeasured load before each block
    rounds: int  # cycles over the three endpoints; the order reverses every round
    connections: int


def deploy_endpoints(home: Path, workdir: Path) -> None:
    """``off``, ``sleepy`` and ``raising``: the fraud model live, and each its shadow."""
    client = Client(Settings(home=home))
    try:
        fraud = client.get_version("models:/fraud/1")
        sample = pd.read_parquet(workdir / "fraud_sample.parquet")
        for name, source in SHADOWS.items():
            folder = workdir / f"shadow-{name}"
            folder.mkdir()
            (folder / "model.py").write_text(source)
            client.register_model(
                f"shadow-{name}", folder, flavor="custom", trust=True, sample_input=sample
            )
        live = Variant(fraud.name, fraud.version)
        for mode in MODES:
            variants = [live]
            if mode in SHADOWS:
                variants.append(Variant(f"shadow-{mode}", 1, shadow=True))
            spec = DeploymentSpec(variants=tuple(variants))
            client.registry.set_deployment("production", mode, spec, actor="bench")
    finally:
        client.close()


def shadow_counters(port: int) -> dict[tuple[str, str], float]:
    """(endpoint, outcome) -> the shadow copies counted so far."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.findall(
        r'^modelport_shadow_requests_total\{endpoint="(\w+)",outcome="(\w+)",'
        r'variant="[^"]*"\} (\S+)$',
        text,
        re.M,
    )
    return {(endpoint, outcome): float(value) for endpoint, outcome, value in found}


def run(home: Path, body: Path, timing: Timing) -> list[dict[str, Any]]:
    """Start the server once, run every block, stop it."""
    port = free_port()
    blocks = 3 * timing.rounds
    life = 180 + blocks * (timing.duration + timing.warmup + 30)
    argv = ["timeout", "-k", "5", str(life), sys.executable, "-m", "modelport.cli.main"]
    argv += ["--home", str(home), "serve", "--env", "production", "--host", HOST]
    argv += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    env = os.environ | {
        "MODELPORT_LOG_SAMPLE_RATE": "1",
        "MODELPORT_MONITOR_INTERVAL_SECONDS": "0",
        "MODELPORT_ROLLOUT_INTERVAL_SECONDS": "0",
    }
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    results = []
    try:
        wait_ready(proc, f"http://{HOST}:{port}/v2/health/ready")
        for mode in MODES:  # every endpoint warm before the first block
            wrk(port, f"/v1/endpoints/{mode}/predict", body, 4, 1)
        for r in range(timing.rounds):
            order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
            for mode in order:
                path = f"/v1/endpoints/{mode}/predict"
                if timing.warmup:
                    wrk(port, path, body, timing.connections, timing.warmup)
                before = shadow_counters(port)
                raw = wrk(port, path, body, timing.connections, timing.duration)
                after = shadow_counters(port)
                point = figures(raw, 1, timing.connections)
                point.update(round=r, mode=mode)
                point["shadow"] = {
                    outcome: after.get((mode, outcome), 0.0) - before.get((mode, outcome), 0.0)
                    for outcome in ("answered", "failed", "shed")
                }
                results.append(point)
                print(
                    f"   round {r + 1} {mode:8}: {point['rps']:7.0f} req/s, p50 "
                    f"{point['p50_ms']:.2f} ms, p99 {point['p99_ms']:.2f} ms, shadow "
                    f"{point['shadow']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        stop(proc)
    return results


def summary(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per endpoint: medians over rounds; shadow copies summed; ratios to ``off``."""
    table: dict[str, Any] = {}
    for mode in MODES:
        runs = [b for b in blocks if b["mode"] == mode]
        table[mode] = {
            k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")
        }
        table[mode]["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in runs)
        table[mode]["shadow"] = {
            outcome: sum(r["shadow"][outcome] for r in runs)
            for outcome in ("answered", "failed", "shed")
        }
    off = table["off"]
    for mode in MODES:
        table[mode]["rps_vs_off"] = table[mode]["rps"] / off["rps"] if off["rps"] else None
        table[mode]["p99_vs_off"] = table[mode]["p99_ms"] / off["p99_ms"] if off["p99_ms"] else None
    return table


def markdown(report: dict[str, Any]) -> str:
    t = report["timing"]
    lines = [
        f"`bench/shadow_bench.py {' '.join(report['argv'])}`, {report['timestamp']}, "
        f"{report['cpus']} CPUs, Python {report['python']}, {report['versions']['wrk']}; "
        f"Modelport 1 worker, demo fraud model live, 1-row requests at c={t['connections']}; "
        f"{t['duration']} s per block, median of {t['rounds']} rounds; load average "
        f"{report['load_average'][0]:.1f}.",
        "",
        "| shadow | req/s | vs off | p50 ms | p99 ms | p99 vs off | shadow answered / failed "
        "/ shed | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"off": "none", "sleepy": "sleeps 2 s", "raising": "raises"}
    for mode, s in report["summary"].items():
        sh = s["shadow"]
        lines.append(
            f"| {labels[mode]} | {s['rps']:.0f} | {s['rps_vs_off']:.3f} | {s['p50_ms']:.2f} "
            f"| {s['p99_ms']:.2f} | {s['p99_vs_off']:.2f} "
            f"| {sh['answered']:.0f} / {sh['failed']:.0f} / {sh['shed']:.0f} | {s['errors']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per block")
    parser.add_argument("--rounds", type=int, default=3, help="cycles; figures are medians")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="3 s per block, 1 round")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "shadow_bench.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(f"wrk is not on PATH; install it with:\n  {INSTALL_WRK}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        timing = Timing(3, 0, 1, args.connections)
    else:
        timing = Timing(args.duration, 2, args.rounds, args.connections)
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelport-shadow-bench-") as tmp:
        workdir = Path(tmp)
        _, home = prepare(workdir)
        deploy_endpoints(home, workdir)
        body = write_bodies(workdir)[1]
        blocks = run(home, body, timing)
    report = report_header(timing) | {"blocks": blocks, "summary": summary(blocks)}
    report["markdown"] = markdown(report)
    write_report(report, args.out, begun)


if __name__ == "__main__":
    main()
