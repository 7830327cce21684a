"""How the batching defaults were chosen: one server, settings changed live, wrk each time.

Serves the demo fraud model (compiled, 2 workers) and, for each
(batching, max_batch_size, max_wait_ms), redeploys the endpoint with those serving
options (the server picks the change up without a restart), waits until it serves the
new revision, and measures single-row and 64-row requests at concurrency 8 and 64 with
wrk.

    .venv/bin/python bench/batching_sweep.py [--seconds 5] [--rounds 2]

With ``--rounds N`` the grid is run N times, in reverse order every other time, and
each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from fast_bench import figures, wrk
from serve_bench import free_port, prepare, write_bodies

from modelport.client import Client
from modelport.registry import ServingOptions
from modelport.settings import Settings

GRID = [
    (False, 1, 0.0),
    (True, 16, 1.0),
    (True, 64, 0.0),
    (True, 64, 1.0),
    (True, 64, 5.0),
    (True, 128, 0.0),
    (True, 256, 0.0),
    (True, 256, 1.0),
    (True, 1024, 0.0),
    (True, 4096, 0.0),
]
ROWS = (1, 64)
CONCURRENCY = (8, 64)
HERE = Path(__file__).resolve().parent


def serving_revision(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/endpoints", timeout=5) as r:
        endpoints = json.loads(r.read())["endpoints"]
    return int(next(e["revision"] for e in endpoints if e["endpoint"] == "fraud"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelport-sweep-"))
    prepare(work)
    home = work / "home"
    bodies = write_bodies(work)
    port = free_port()
    env = os.environ | {"MODELPORT_HOME": str(home), "MODELPORT_POLL_INTERVAL_SECONDS": "0.2"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelport.cli.main",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        start_new_session=True,
    )
    client = Client(Settings(home=home))
    results: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                serving_revision(port)
                break
            except OSError:
                time.sleep(0.2)
        runs: dict[tuple[bool, int, float], list[dict[str, Any]]] = {g: [] for g in GRID}
        for round_ in range(args.rounds):
            for batching, size, wait in GRID if round_ % 2 == 0 else GRID[::-1]:
                options = ServingOptions(batching=batching, max_batch_size=size, max_wait_ms=wait)
                revision = client.deploy("fraud", "models:/fraud/1", serving=options).revision
                while serving_revision(port) != revision:  # both workers poll
                    time.sleep(0.2)
                time.sleep(1.0)
                row: dict[str, Any] = {}
                for rows in ROWS:
                    for conc in CONCURRENCY:
                        path = "/v1/endpoints/fraud/predict"
                        f = figures(wrk(port, path, bodies[rows], conc, args.seconds), rows, conc)
                        keep = ("rps", "p50_ms", "p99_ms")
                        row[f"r{rows}_c{conc}"] = {k: round(f[k], 2) for k in keep}
                runs[(batching, size, wait)].append(row)
                print(json.dumps({"round": round_, "grid": [batching, size, wait], **row}))
        for (batching, size, wait), rounds in runs.items():
            median = {
                point: {
                    k: float(np.median([r[point][k] for r in rounds]))
                    for k in ("rps", "p50_ms", "p99_ms")
                }
                for point in rounds[0]
            }
            results.append(
                {"batching": batching, "max_batch_size": size, "max_wait_ms": wait, **median}
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        client.close()
    points = [f"r{rows}_c{conc}" for rows in ROWS for conc in CONCURRENCY]
    head = " | ".join(f"{p.replace('_', ' ')} req/s | p99 ms" for p in points)
    print(f"\n| batching | max_batch_size | max_wait_ms | {head} |")
    print("|---|---:|---:|" + "---:|---:|" * len(points))
    for r in results:
        cells = " | ".join(f"{r[p]['rps']:.0f} | {r[p]['p99_ms']:.2f}" for p in points)
        print(f"| {r['batching']} | {r['max_batch_size']} | {r['max_wait_ms']} | {cells} |")
    out = HERE / "results" / "batching_sweep.json"
    report = {"timestamp": time.time(), "seconds": args.seconds, "rounds": args.rounds}
    out.write_text(json.dumps({**report, "results": results}, indent=2))


if __name__ == "__main__":
    main()
