"""Online features: lookup latency from Redis, and what enrichment costs a prediction.

1. Lookup: `RedisStore.read` of one entity in three views (two row views of six
   features, one stream view of three aggregations), N calls, p50/p99, next to a bare
   Redis PING round trip measured in the same run (the floor of any lookup).
2. Enrichment: one Modelport server (2 workers, online store Redis) with two endpoints
   serving the same demo fraud model (20 float features): ``fraud`` gets all 20 columns
   in the request; ``fraud_features`` gets the user id and 5 columns, and joins the
   other 15 from the three views. wrk drives both with the same single-row load, at
   concurrency 1 (latency: the target is under 1 ms added at p50) and 64 (throughput),
   alternating, ``--rounds`` times; figures are medians.

Prints a Markdown table and writes bench/results/features_bench.json.

Run: ``python bench/features_bench.py [--duration S] [--rounds N] [--quick]`` (needs
``wrk`` and Redis at 127.0.0.1:6379; uses Redis database 14 and empties it)
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis
from fast_bench import figures, report_header, write_report, wrk
from serve_bench import free_port, stop, wait_ready

from modelport.client import Client
from modelport.examples.demo import fraud_data, train_fraud
from modelport.features.aggregates import ops
from modelport.features.online import Event, Lookup
from modelport.features.redis import RedisStore
from modelport.features.views import Aggregation, Feature, FeatureView, StreamSource
from modelport.registry import DeploymentSpec
from modelport.registry.features import FeatureViewStore
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
HOST = "127.0.0.1"
REDIS_URL = "redis://127.0.0.1:6379/14"
USERS = 1000
WORKERS = 2
TARGET_ADDED_P50_MS = 1.0


@dataclass(frozen=True)
class Timing:
    duration: int
    warmup: int
    rounds: int
    lookups: int


def views() -> list[FeatureView]:
    """Three views that provide 15 of the model's 20 columns, keyed by user_id."""
    profile = FeatureView(
        "bench_profile", "user_id", features=tuple(Feature(f"v{i}") for i in range(1, 7))
    )
    risk = FeatureView(
        "bench_risk", "user_id", features=tuple(Feature(f"v{i}") for i in range(7, 13))
    )
    stats = FeatureView(
        "bench_stats",
        "user_id",
        aggregations=(
            Aggregation("v13", "count", None, 3600.0),
            Aggregation("v14", "mean", "x", 3600.0),
            Aggregation("v15", "max", "x", 3600.0),
        ),
        source=StreamSource("bench_events"),
    )
    return [profile, risk, stats]


def fill(store: RedisStore, all_views: list[FeatureView]) -> None:
    rng = np.random.default_rng(0)
    now = time.time()
    for view in all_views[:2]:
        rows = {
            f"u{u}": ({c: float(rng.normal()) for c in view.columns}, now) for u in range(USERS)
        }
        store.write(view.name, rows)
    stats = all_views[2]
    events = [
        Event(f"e{u}-{k}", f"u{u}", ops(stats, {"x": float(rng.normal())}, now - k))
        for u in range(USERS)
        for k in range(5)
    ]
    for start in range(0, len(events), 500):
        store.apply(stats.name, events[start : start + 500])


def lookups(store: RedisStore, n: int) -> dict[str, Any]:
    """p50/p99 of a 1 key x 3 views read, next to PING, interleaved."""
    raw = redis.Redis.from_url(REDIS_URL)
    request = [
        Lookup("bench_profile", "rows", ["u7"]),
        Lookup("bench_risk", "rows", ["u7"]),
        Lookup("bench_stats", "state", ["u7"]),
    ]
    read_us, ping_us = [], []
    for _ in range(n):
        t = time.perf_counter()
        store.read(request)
        read_us.append((time.perf_counter() - t) * 1e6)
        t = time.perf_counter()
        raw.ping()
        ping_us.append((time.perf_counter() - t) * 1e6)
    raw.close()

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    return {
        "calls": n,
        "read_p50_us": pct(read_us, 50),
        "read_p99_us": pct(read_us, 99),
        "ping_p50_us": pct(ping_us, 50),
        "ping_p99_us": pct(ping_us, 99),
    }


def prepare(workdir: Path) -> Path:
    """The fraud model deployed twice, one endpoint enriched; views registered and filled."""
    train_fraud(workdir)
    home = workdir / "home"
    client = Client(Settings(home=home))
    sample = pd.read_parquet(workdir / "fraud_sample.parquet")
    mv = client.register_model("fraud", workdir / "fraud.skops", sample_input=sample)
    client.deploy("fraud", f"models:/fraud/{mv.version}")
    store = FeatureViewStore(client.registry.engine)
    all_views = views()
    for view in all_views:
        store.put(view)
    spec = DeploymentSpec.single("fraud", mv.version)
    enriched = DeploymentSpec(spec.variants, features=tuple(v.name for v in all_views))
    client.registry.set_deployment("production", "fraud_features", enriched)
    client.close()
    return home


def bodies(workdir: Path) -> dict[str, Path]:
    frame, _ = fraud_data(1, seed=99)
    row = frame.iloc[0].to_dict()
    joined = {f"v{i}" for i in range(1, 16)}
    slim = {"user_id": "u7"} | {k: v for k, v in row.items() if k not in joined}
    out = {}
    for name, record in (("fraud", row), ("fraud_features", slim)):
        out[name] = workdir / f"{name}.json"
        out[name].write_text(json.dumps({"dataframe_records": [record]}))
    return out


def serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "modelport.cli.main", "--home", str(home), "serve"]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(WORKERS)]
    argv += ["--log-level", "warning"]
    env = os.environ | {
        "MODELPORT_ONLINE_STORE": REDIS_URL,
        "MODELPORT_MONITOR_INTERVAL_SECONDS": "0",
        "MODELPORT_ROLLOUT_INTERVAL_SECONDS": "0",
    }
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    wait_ready(proc, f"http://{HOST}:{port}/v2/health/ready")
    return proc


def drive(port: int, paths: dict[str, Path], timing: Timing) -> list[dict[str, Any]]:
    points = []
    for round_ in range(timing.rounds):
        order = list(paths) if round_ % 2 == 0 else list(reversed(paths))
        for conc in (1, 64):
            for name in order:
                path = f"/v1/endpoints/{name}/predict"
                if timing.warmup:
                    wrk(port, path, paths[name], conc, timing.warmup)
                point = figures(wrk(port, path, paths[name], conc, timing.duration), 1, conc)
                point["endpoint"] = name
                points.append(point)
                print(f"   {name:15s} c={conc:<3d} {point['rps']:8.0f} req/s, "
                      f"p50 {point['p50_ms']:.2f} ms, errors {point['non_2xx']}")  # fmt: skip
    return points


def medians(points: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for name in ("fraud", "fraud_features"):
        for conc in (1, 64):
            mine = [p for p in points if p["endpoint"] == name and p["concurrency"] == conc]
            out.setdefault(name, {})[conc] = {
                k: statistics.median(p[k] for p in mine) for k in ("rps", "p50_ms", "p99_ms")
            }
    return out


def markdown(report: dict[str, Any]) -> str:
    look, m = report["lookup"], report["enrichment"]
    plain, rich = m["fraud"], m["fraud_features"]
    added = rich[1]["p50_ms"] - plain[1]["p50_ms"]
    met = "met" if added < TARGET_ADDED_P50_MS else "**not met**"
    lines = [
        f"`bench/features_bench.py {' '.join(report['argv'])}`, {report['timestamp']}, "
        f"{report['cpus']} CPUs; Redis on loopback; load average "
        f"{report['load_average'][0]:.1f}.",
        "",
        "| lookup (1 entity x 3 views) | p50 µs | p99 µs |",
        "|---|---:|---:|",
        f"| `RedisStore.read` | {look['read_p50_us']:.0f} | {look['read_p99_us']:.0f} |",
        f"| Redis PING (floor) | {look['ping_p50_us']:.0f} | {look['ping_p99_us']:.0f} |",
        "",
        "| endpoint | c=1 p50 ms | c=1 req/s | c=64 req/s | c=64 p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, fig in (("all 20 columns sent", plain), ("15 joined from 3 views", rich)):
        lines.append(
            f"| {name} | {fig[1]['p50_ms']:.2f} | {fig[1]['rps']:.0f} | "
            f"{fig[64]['rps']:.0f} | {fig[64]['p99_ms']:.1f} |"
        )
    lines += [
        "",
        f"Enrichment adds {added:.2f} ms at p50, concurrency 1 (target < "
        f"{TARGET_ADDED_P50_MS:g} ms: {met}); throughput at c=64 is "
        f"{rich[64]['rps'] / plain[64]['rps']:.2f} of the plain endpoint's.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 s points, 1 round")
    args = parser.parse_args()
    timing = Timing(args.duration, 2, args.rounds, 2000)
    if args.quick:
        timing = Timing(3, 1, 1, 500)
    begun = time.monotonic()
    redis.Redis.from_url(REDIS_URL).flushdb()
    store = RedisStore(REDIS_URL, timeout_s=1.0)
    fill(store, views())
    report: dict[str, Any] = report_header(timing)
    report["lookup"] = lookups(store, timing.lookups)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        home = prepare(workdir)
        paths = bodies(workdir)
        port = free_port()
        proc = serve(home, port)
        try:
            points = drive(port, paths, timing)
        finally:
            stop(proc)
    store.close()
    report["points"] = points
    report["enrichment"] = medians(points)
    report["markdown"] = markdown(report)
    write_report(report, BENCH / "results" / "features_bench.json", begun)


if __name__ == "__main__":
    main()
