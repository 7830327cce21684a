"""Fast online path benchmark: Modelport vs three baselines under wrk, in the same run.

Servers, each alone in its own process group on a free 127.0.0.1 port, 2 uvicorn workers:
``fastapi_sklearn`` (naive FastAPI + scikit-learn), ``fastapi_onnx`` (FastAPI +
onnxruntime), ``asgi_floor`` (bare ASGI, constant answer) and ``modelport serve``.
Models: the demo fraud model (gradient boosting) and a logistic regression on the same
20 features; Modelport serves both plus the demo ``price`` model. Each server is started
once per model and runs every point (1 and 64 rows, 1/8/64 connections); the server
order reverses between models so drift on a shared machine hits all of them alike
(``--rounds N`` repeats the whole cycle and reports medians).
Prints Markdown tables (figures, the issue's targets met or not, memory, cold start)
and writes bench/results/fast_bench.json.

Run: ``python bench/fast_bench.py [--quick] [--duration S]`` (needs ``wrk`` on PATH)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from math import nan
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from serve_bench import check, free_port, machine, prepare, stop, wait_ready, write_bodies
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from modelport.client import Client
from modelport.examples.demo import fraud_data, train_price
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
INSTALL_WRK = "command -v wrk || (apt-get update -qq && apt-get install -y -qq wrk)"
ROWS = (1, 64)
CONCURRENCY = (1, 8, 64)
WORKERS = 2
BASELINES = ("fastapi_sklearn", "fastapi_onnx", "asgi_floor")
#: The name of `modelport serve`'s watch process (`serving.supervisor.WATCH_NAME`).
WATCH_PROCESS = "modelport-watch"
Figures = dict[str, Any]


@dataclass(frozen=True)
class Model:
    name: str  # registered model and Modelport endpoint
    skops: Path
    onnx: Path


@dataclass(frozen=True)
class Server:
    name: str
    argv: list[str]  # "PORT" stands for the port
    env: dict[str, str]
    predict_path: str
    ready_path: str | None  # GET answering 200 once ready; None: the first good POST


@dataclass(frozen=True)
class Timing:
    duration: int  # seconds measured per point
    warmup: int  # seconds of unmeasured load before each point (0: none)
    start_warmup: int  # seconds of unmeasured load right after a server starts
    rounds: int = 1  # full cycles over every server and model; figures are medians


def register(client: Client, name: str, path: Path, sample: pd.DataFrame) -> None:
    mv = client.register_model(name, path, sample_input=sample, owner="bench@example.com")
    client.deploy(name, f"models:/{name}/{mv.version}", env="production")


def export_onnx(path: Path) -> Path:
    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    x = fraud_data(1)[0].to_numpy()
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    out = path.with_suffix(".onnx")
    out.write_bytes(onx.SerializeToString())
    return out


def prepare_models(workdir: Path) -> tuple[list[Model], Path]:
    """Train fraud, fraud_lr and price; register and deploy all three; export ONNX."""
    prepare(workdir)  # serve_bench: trains, registers and deploys `fraud`
    home = workdir / "home"
    client = Client(Settings(home=home))
    x, y = fraud_data(4000)
    sio.dump(LogisticRegression(max_iter=1000).fit(x, y), workdir / "fraud_lr.skops")
    register(client, "fraud_lr", workdir / "fraud_lr.skops", x.head(500))
    train_price(workdir)
    price_sample = pd.read_parquet(workdir / "price_sample.parquet")
    register(client, "price", workdir / "price.txt", price_sample)
    client.close()
    paths = [workdir / f"{name}.skops" for name in ("fraud", "fraud_lr")]
    return [Model(p.stem, p, export_onnx(p)) for p in paths], home


def uvicorn_stack() -> list[str]:
    """httptools + uvloop when importable (Modelport's uvicorn picks them itself then)."""
    if all(importlib.util.find_spec(m) for m in ("uvloop", "httptools")):
        return ["--http", "httptools", "--loop", "uvloop"]
    print(
        "warning: uvloop/httptools missing, stacks may differ: .venv/bin/pip install "
        "uvloop httptools",
        file=sys.stderr,
    )
    return ["--http", "auto", "--loop", "auto"]


def modelport_workers() -> int:
    """2 once `modelport serve --workers` exists, else 1 (and the report says so)."""
    out = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    return WORKERS if "--workers" in out.stdout else 1


def servers(model: Model, home: Path, stack: list[str], mp_workers: int) -> list[Server]:
    def baseline(name: str, path: Path) -> Server:
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "--factory"]
        argv += [f"apps.{name}:create_app", "--host", HOST, "--port", "PORT"]
        argv += ["--workers", str(WORKERS), *stack, "--log-level", "warning", "--no-access-log"]
        return Server(name, argv, {**os.environ, "BENCH_MODEL": str(path)}, "/predict", None)

    mp = [sys.executable, "-m", "modelport.cli.main", "--home", str(home), "serve"]
    mp += ["--env", "production", "--host", HOST, "--port", "PORT", "--log-level", "warning"]
    mp += ["--workers", str(mp_workers)] if mp_workers > 1 else []
    return [
        Server(
            "modelport",
            mp,
            dict(os.environ),
            f"/v1/endpoints/{model.name}/predict",
            "/v2/health/ready",
        ),
        baseline("fastapi_sklearn", model.skops),
        baseline("fastapi_onnx", model.onnx),
        baseline("asgi_floor", model.skops),
    ]


def wait_ok(proc: subprocess.Popen[bytes], req: urllib.request.Request, limit: float = 120) -> None:
    wait_ready(proc, req, limit)


def _kb(path: str, key: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def memory_mb(pgid: int) -> dict[str, float]:
    """VmRSS and PSS summed over the process group (uvicorn parent + workers), and the
    PSS of Modelport's watch process (monitor, alerts, rollouts), found by its name.

    The group leader is the `timeout` wrapper that bounds the server's life; it is left
    out. RSS counts pages shared between workers once per process; PSS splits them.
    """
    rss = pss = watch = count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[2]) != pgid:
                continue
            pid = int(stat.parent.name)
            if pid != pgid:
                rss += _kb(f"/proc/{pid}/status", "VmRSS")
                own = _kb(f"/proc/{pid}/smaps_rollup", "Pss")
                pss += own
                if Path(f"/proc/{pid}/comm").read_text().strip() == WATCH_PROCESS:
                    watch += own
                count += 1
        except (OSError, ValueError, IndexError):
            continue
    return {
        "rss_mb": rss / 1024,
        "pss_mb": pss / 1024,
        "watch_pss_mb": watch / 1024,
        "processes": count,
    }


def wrk(port: int, path: str, body: Path, conc: int, seconds: int) -> Figures:
    """One wrk run; wrk itself takes a core's worth of CPU, so 2 threads only for c=64."""
    argv = ["wrk", f"-t{1 if conc <= 8 else 2}", f"-c{conc}", f"-d{seconds}s", "--timeout", "10s"]
    argv += ["-s", str(BENCH / "wrk" / "post.lua"), f"http://{HOST}:{port}{path}", "--", str(body)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds + 60)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def figures(raw: Figures, rows: int, conc: int) -> Figures:
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non_2xx"]
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        "rows": rows,
        "concurrency": conc,
        "rps": ok / seconds,
        "rows_per_s": ok * rows / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "non_2xx": raw["non_2xx"],
        "socket_errors": errors,
        "wrk": raw,
    }


def run_server(server: Server, bodies: dict[int, Path], timing: Timing) -> dict[str, Any]:
    """Start one server, measure every point on it, read its memory, stop it."""
    port = free_port()
    points = len(ROWS) * len(CONCURRENCY)
    life = 180 + timing.start_warmup + points * (timing.duration + timing.warmup + 60)
    argv = ["timeout", "-k", "5", str(life)] + [
        str(port) if a == "PORT" else a for a in server.argv
    ]
    if server.ready_path is None:  # ready = the first good prediction
        url, data = f"http://{HOST}:{port}{server.predict_path}", bodies[1].read_bytes()
        ready = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    else:
        ready = urllib.request.Request(f"http://{HOST}:{port}{server.ready_path}")
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=server.env, start_new_session=True)
    try:
        wait_ok(proc, ready)
        cold = time.perf_counter() - started
        proba = check(port, server.predict_path, bodies[64])
        wrk(port, server.predict_path, bodies[1], 8, timing.start_warmup)
        results = []
        for rows in ROWS:
            for conc in CONCURRENCY:
                if timing.warmup:
                    wrk(port, server.predict_path, bodies[rows], conc, timing.warmup)
                raw = wrk(port, server.predict_path, bodies[rows], conc, timing.duration)
                results.append(figures(raw, rows, conc))
                print(
                    f"   {server.name:15} rows={rows:<2} c={conc:<2}: "
                    f"{results[-1]['rps']:7.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
        memory = memory_mb(proc.pid)
    finally:
        stop(proc)
    return {"cold_start_s": cold, **memory, "positive": [p[-1] for p in proba], "points": results}


def run_all(
    models: list[Model], home: Path, bodies: dict[int, Path], timing: Timing, mp_workers: int
) -> list[dict[str, Any]]:
    """One block per (round, model, server), one server at a time; the order reverses
    from each model to the next, so drift over the run hits every server alike."""
    stack = uvicorn_stack()
    blocks = []
    for r in range(timing.rounds):
        for i, model in enumerate(models):
            order = servers(model, home, stack, mp_workers)
            for server in order[::-1] if (r + i) % 2 else order:
                print(f"-- round {r + 1}, {model.name}: {server.name}", file=sys.stderr, flush=True)
                block = run_server(server, bodies, timing)
                blocks.append({"round": r, "model": model.name, "server": server.name, **block})
    return blocks


def agreement(blocks: list[dict[str, Any]]) -> dict[str, float]:
    """Max |P(positive)| difference vs fastapi_sklearn on the 64 rows, per model and server."""
    ref = {b["model"]: b["positive"] for b in blocks if b["server"] == "fastapi_sklearn"}
    out = {}
    for b in blocks:
        if b["server"] in ("modelport", "fastapi_onnx"):
            diff = max(abs(p - q) for p, q in zip(b["positive"], ref[b["model"]], strict=True))
            out[f"{b['model']}/{b['server']}"] = diff
    for b in blocks:
        b.pop("positive")
    return out


@dataclass(frozen=True)
class Target:
    label: str
    rows: int
    conc: int
    key: str  # a key of ratios()
    goal: float
    at_most: bool = False


TARGETS = (
    Target("req/s vs fastapi_sklearn", 1, 64, "x_fastapi_sklearn", 10.0),
    Target("req/s vs fastapi_onnx", 1, 64, "x_fastapi_onnx", 1.5),
    Target("req/s vs asgi_floor", 1, 64, "x_asgi_floor", 0.33),
    Target("p50 minus asgi_floor p50 (ms)", 1, 1, "p50_minus_floor_ms", 0.5, at_most=True),
    Target("rows/s vs fastapi_sklearn", 64, 64, "x_fastapi_sklearn", 10.0),
)
MEMORY_MB, COLD_START_S = 300.0, 3.0
MEDIAN_KEYS = ("rps", "rows_per_s", "p50_ms", "p90_ms", "p99_ms")


def by_point(blocks: list[dict[str, Any]]) -> dict[tuple[str, int, int], dict[str, Figures]]:
    """(model, rows, concurrency) -> server -> figures, the median over rounds."""
    runs: dict[tuple[str, int, int], dict[str, list[Figures]]] = {}
    for b in blocks:
        for p in b["points"]:
            key = (b["model"], p["rows"], p["concurrency"])
            runs.setdefault(key, {}).setdefault(b["server"], []).append(p)
    return {key: {s: median(f) for s, f in point.items()} for key, point in runs.items()}


def median(runs: list[Figures]) -> Figures:
    out = {k: statistics.median(r[k] for r in runs) for k in MEDIAN_KEYS}
    return out | {k: sum(r[k] for r in runs) for k in ("non_2xx", "socket_errors")}


def ratios(point: dict[str, Figures]) -> dict[str, float]:
    """Modelport over each baseline (req/s; the same as rows/s at equal rows), p50 gap."""
    mp = point["modelport"]
    out = {f"x_{n}": mp["rps"] / point[n]["rps"] if point[n]["rps"] else nan for n in BASELINES}
    out["p50_minus_floor_ms"] = mp["p50_ms"] - point["asgi_floor"]["p50_ms"]
    return out


def target(label: str, where: str, value: float, goal: str, met: bool | None) -> dict[str, Any]:
    return {"target": label, "where": where, "value": value, "goal": goal, "met": met}


def targets(blocks: list[dict[str, Any]], mp_workers: int) -> list[dict[str, Any]]:
    """The issue's targets, each at its point and per model, then memory and cold start."""
    table = by_point(blocks)
    found = []
    for model in dict.fromkeys(b["model"] for b in blocks):
        for t in TARGETS:
            value = ratios(table[(model, t.rows, t.conc)])[t.key]
            met = value <= t.goal if t.at_most else value >= t.goal
            where = f"{model}, {t.rows} row{'s' if t.rows > 1 else ''}, c={t.conc}"
            goal = f"{'<=' if t.at_most else '>='} {t.goal:g}"
            found.append(target(t.label, where, value, goal, met))
    mp = [b for b in blocks if b["server"] == "modelport"]
    # Memory the server holds: PSS counts each page once across its processes (what the
    # machine, or a container's cgroup, pays); the RSS sum counts the pages the forked
    # workers share once per process, so it is reported beside it but not judged.
    # The watch process (drift reports with pandas, SciPy and DuckDB) is a part of
    # Modelport the baselines do not have: the serving processes alone are judged too.
    pss = max(b["pss_mb"] for b in mp)
    serving = max(b["pss_mb"] - b.get("watch_pss_mb", 0.0) for b in mp)
    rss = max(b["rss_mb"] for b in mp)
    where = f"modelport, {mp_workers} worker(s), max of {len(mp)} starts"
    ok = mp_workers == WORKERS
    found.append(
        target(
            "PSS after load, MB (3 models), all processes",
            where,
            pss,
            f"< {MEMORY_MB:g}",
            ok and pss < MEMORY_MB,
        )
    )
    found.append(
        target(
            "PSS after load, MB, serving processes (supervisor + workers; no watch process)",
            where,
            serving,
            f"< {MEMORY_MB:g}",
            ok and serving < MEMORY_MB,
        )
    )
    found.append(
        target(
            "RSS sum after load, MB (shared pages counted per process)",
            where,
            rss,
            "reported",
            True,
        )
    )
    cold = statistics.median(b["cold_start_s"] for b in mp)
    where = f"modelport, median of {len(mp)} starts"
    found.append(
        target("cold start to ready, s", where, cold, f"< {COLD_START_S:g}", cold < COLD_START_S)
    )
    return found


def markdown(report: dict[str, Any]) -> str:
    n = report["workers"]["modelport"]
    note = "" if n == WORKERS else " (`serve --workers` not there yet: NOT comparable)"
    lines = [
        f"`bench/fast_bench.py {' '.join(report['argv'])}`, {report['timestamp']}, "
        f"{report['cpus']} CPUs, Python {report['python']}, {report['versions']['wrk']}; "
        f"{report['timing']['duration']} s per point; baselines {WORKERS} uvicorn workers, "
        f"Modelport {n}{note}; load average {report['load_average'][0]:.1f}.",
        "",
        "| model | rows | c | Modelport req/s | sklearn | onnx | floor | ×sklearn | ×onnx "
        "| ×floor | Modelport rows/s | p50 ms M/s/o/f | p99 ms M/s/o/f | non-2xx M/s/o/f |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = ("modelport", *BASELINES)
    for (model, rows, conc), point in by_point(report["blocks"]).items():
        r, mp = ratios(point), point["modelport"]
        rps = " | ".join(f"{point[s]['rps']:.0f}" for s in names)
        x = " | ".join(f"{r[f'x_{s}']:.2f}" for s in BASELINES)
        p50 = " / ".join(f"{point[s]['p50_ms']:.2f}" for s in names)
        p99 = " / ".join(f"{point[s]['p99_ms']:.1f}" for s in names)
        bad = "/".join(str(point[s]["non_2xx"] + point[s]["socket_errors"]) for s in names)
        lines.append(
            f"| {model} | {rows} | {conc} | {rps} | {x} | {mp['rows_per_s']:.0f} "
            f"| {p50} | {p99} | {bad} |"
        )
    lines += ["", "| target | where | value | goal | met |", "|---|---|---:|---|---|"]
    for t in report["targets"]:
        lines.append(
            f"| {t['target']} | {t['where']} | {t['value']:.2f} | {t['goal']} "
            f"| {'-' if t['met'] is None else 'met' if t['met'] else '**not met**'} |"
        )
    lines += [
        "",
        "| server | model | round | cold start s | RSS after load MB (processes) | PSS MB "
        "| of which watch process |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for b in report["blocks"]:
        lines.append(
            f"| {b['server']} | {b['model']} | {b.get('round', 0) + 1} | {b['cold_start_s']:.2f} "
            f"| {b['rss_mb']:.0f} ({b['processes']}) | {b['pss_mb']:.0f} "
            f"| {b.get('watch_pss_mb', 0.0):.0f} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    wrk_line = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    found = {"wrk": wrk_line.partition(" Copyright")[0] or "?"}
    for dist in ("uvicorn", "uvloop", "httptools", "fastapi", "scikit-learn", "onnxruntime"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "missing"
    return found


def report_header(timing: Any) -> dict[str, Any]:
    """What every benchmark report starts with: when, where, with what."""
    return machine() | {
        "versions": versions(),
        "argv": sys.argv[1:],
        "timing": vars(timing),
    }


def write_report(report: dict[str, Any], out: Path, begun: float) -> None:
    """Finish ``report`` (wall time), write it as JSON to ``out`` and print its table."""
    report["wall_s"] = time.monotonic() - begun
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(report["markdown"])
    print(f"\nwall time {report['wall_s']:.0f} s; wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=15, help="seconds measured per point")
    parser.add_argument("--quick", action="store_true", help="3 s per point, no per-point warm-up")
    parser.add_argument("--rounds", type=int, default=1, help="cycles; figures are medians")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "fast_bench.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit(f"wrk is not on PATH; install it with:\n  {INSTALL_WRK}")
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    timing = (
        Timing(3, 0, 1, args.rounds) if args.quick else Timing(args.duration, 1, 2, args.rounds)
    )
    mp_workers = modelport_workers()
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelport-fast-bench-") as tmp:
        workdir = Path(tmp)
        models, home = prepare_models(workdir)
        blocks = run_all(models, home, write_bodies(workdir), timing, mp_workers)
    report = report_header(timing) | {
        "workers": {"baselines": WORKERS, "modelport": mp_workers},
        "agreement_max_abs_diff": agreement(blocks),
        "blocks": blocks,
    }
    report["targets"] = targets(blocks, mp_workers)
    report["markdown"] = markdown(report)
    write_report(report, args.out, begun)


if __name__ == "__main__":
    main()
