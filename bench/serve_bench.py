"""Serving benchmark: Modelport vs a plain FastAPI app serving the same model, same run.

Trains the demo fraud model, registers and deploys it in a temporary home, then
starts each server alone as its own process (one uvicorn worker) and drives it
with bench/loadgen.py from another process: 1- and 64-row requests at concurrency
1 and 8, each point on a freshly started pair (order alternating). Prints a
Markdown table and writes bench/results/serve_bench.json.

Run: ``python bench/serve_bench.py [--duration S] [--quick]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from modelport.client import Client
from modelport.examples.demo import fraud_data, train_fraud
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
POINTS = [(1, 1), (1, 8), (64, 1), (64, 8)]  # (rows per request, concurrency)


@dataclass
class Server:
    name: str
    argv: list[str]
    ready_path: str
    predict_path: str


def machine() -> dict[str, Any]:
    """What every benchmark report starts with: when, and on what machine and Python."""
    return {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(workdir: Path) -> tuple[Path, Path]:
    """Train, register and deploy the fraud model; return (model file, modelport home)."""
    train_fraud(workdir)
    home = workdir / "home"
    client = Client(Settings(home=home))
    sample = pd.read_parquet(workdir / "fraud_sample.parquet")
    mv = client.register_model(
        "fraud", workdir / "fraud.skops", sample_input=sample, owner="bench@example.com"
    )
    client.deploy("fraud", f"models:/fraud/{mv.version}", env="production")
    return workdir / "fraud.skops", home


def write_bodies(workdir: Path) -> dict[int, Path]:
    frame, _ = fraud_data(64, seed=99)
    bodies: dict[int, Path] = {}
    for rows in sorted({r for r, _ in POINTS}):
        split = {"columns": list(frame.columns), "data": frame.head(rows).to_numpy().tolist()}
        bodies[rows] = workdir / f"body_{rows}.json"
        bodies[rows].write_text(json.dumps({"dataframe_split": split}))
    return bodies


def servers(model: Path, home: Path) -> list[Server]:
    """Each server's command line; PORT is filled in with a free port at start."""
    py = sys.executable
    return [
        Server(
            "modelport",
            [
                py,
                "-m",
                "modelport.cli.main",
                "--home",
                str(home),
                "serve",
                "--env",
                "production",
                "--host",
                "127.0.0.1",
                "--port",
                "PORT",
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            "/v2/health/ready",
            "/v1/endpoints/fraud/predict",
        ),
        Server(
            "baseline",
            [py, str(BENCH / "baseline_app.py"), "--model", str(model), "--port", "PORT"],
            "/ready",
            "/predict",
        ),
    ]


def wait_ready(
    proc: subprocess.Popen[bytes], url: str | urllib.request.Request, timeout: float = 120.0
) -> None:
    """Poll ``url`` (a GET, or any prepared request) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    shown = url.full_url if isinstance(url, urllib.request.Request) else url
    raise RuntimeError(f"{shown} not ready after {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server's whole process group; kill it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@contextmanager
def running(server: Server, port: int) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """Start ``server``; yield (process, cold start seconds); always stop it."""
    started = time.perf_counter()
    argv = [str(port) if a == "PORT" else a for a in server.argv]
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}{server.ready_path}")
        yield proc, time.perf_counter() - started
    finally:
        stop(proc)


def check(port: int, path: str, body: Path) -> list[list[float]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return list(json.loads(resp.read())["probabilities"])


def load(
    port: int, path: str, body: Path, rows: int, conc: int, dur: float, warmup: float
) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--port",
        str(port),
        "--path",
        path,
        "--body",
        str(body),
        "--rows",
        str(rows),
        "-c",
        str(conc),
        "-d",
        str(dur),
        "-w",
        str(warmup),
    ]
    out = subprocess.run(argv, check=True, capture_output=True, timeout=dur + warmup + 60)
    return dict(json.loads(out.stdout))


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def measure(
    server: Server, body: Path, rows: int, conc: int, dur: float, warmup: float
) -> dict[str, Any]:
    """One point on a freshly started server: cold start, load figures, RSS after load."""
    port = free_port()
    with running(server, port) as (proc, cold):
        proba = check(port, server.predict_path, body)
        fig = load(port, server.predict_path, body, rows, conc, dur, warmup)
        fig.update(rss_mb(proc.pid), cold_start_s=cold, positive=[p[1] for p in proba])
    print(
        f"   {server.name:9} rows={rows:<2} c={conc}: {fig['rps']:.0f} req/s",
        file=sys.stderr,
        flush=True,
    )
    return fig


def run_points(
    servers: list[Server], bodies: dict[int, Path], dur: float, warmup: float
) -> list[dict[str, Any]]:
    """Each point on both servers back to back; who goes first alternates (drift cancels)."""
    points = []
    for i, (rows, conc) in enumerate(POINTS):
        point: dict[str, Any] = {"rows": rows, "concurrency": conc}
        for server in servers[::-1] if i % 2 else servers:
            point[server.name] = measure(server, bodies[rows], rows, conc, dur, warmup)
        mp, bl = point["modelport"], point["baseline"]
        point["ratio_rps"] = mp["rps"] / bl["rps"] if bl["rps"] else float("nan")
        # Modelport serves the compiled (ONNX, float32 trees) form: equal within the
        # tolerance it was verified to at registration.
        point["same_probabilities"] = all(
            abs(a - b) < 1e-4 for a, b in zip(mp.pop("positive"), bl.pop("positive"), strict=True)
        )
        points.append(point)
    return points


def summary(points: list[dict[str, Any]], name: str) -> dict[str, float]:
    colds = sorted(p[name]["cold_start_s"] for p in points)
    return {
        "cold_start_s_median": colds[len(colds) // 2],
        "rss_mb_max": max(p[name]["rss_mb"] for p in points),
        "peak_rss_mb_max": max(p[name]["peak_rss_mb"] for p in points),
    }


def markdown(points: list[dict[str, Any]], servers: dict[str, dict[str, float]]) -> str:
    lines = [
        "| rows/req | conc | Modelport req/s | baseline req/s | ratio | Modelport rows/s "
        "| baseline rows/s | Modelport p50/p99 ms | baseline p50/p99 ms | errors (M/b) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        m, b = p["modelport"], p["baseline"]
        lines.append(
            f"| {p['rows']} | {p['concurrency']} | {m['rps']:.0f} | {b['rps']:.0f} "
            f"| {p['ratio_rps']:.2f} | {m['rows_per_s']:.0f} | {b['rows_per_s']:.0f} "
            f"| {m['p50_ms']:.2f} / {m['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} "
            f"| {m['errors']} / {b['errors']} |"
        )
    lines += [
        "",
        "| server | cold start s (median) | RSS after load MB (max) | peak RSS MB |",
        "|---|---:|---:|---:|",
    ]
    for name, r in servers.items():
        lines.append(
            f"| {name} | {r['cold_start_s_median']:.2f} | {r['rss_mb_max']:.0f} "
            f"| {r['peak_rss_mb_max']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    parser.add_argument("--quick", action="store_true", help="3 s per point, 1 s warm-up")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "serve_bench.json")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    dur, warmup = (3.0, 1.0) if args.quick else (args.duration, 2.0)
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        workdir = Path(tmp)
        model, home = prepare(workdir)
        points = run_points(servers(model, home), write_bodies(workdir), dur, warmup)
    totals = {name: summary(points, name) for name in ("modelport", "baseline")}
    table = markdown(points, totals)
    report = machine() | {
        "duration_s": dur,
        "warmup_s": warmup,
        "argv": sys.argv[1:],
        "servers": totals,
        "points": points,
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table)
    same = all(p["same_probabilities"] for p in points)
    print(f"\nsame probabilities from both servers: {same}; wrote {args.out}")


if __name__ == "__main__":
    main()
