"""Dashboard load time: the overview page (/ui/) with 50 endpoints and a week of logged
predictions, against a bare static page, same browser, same run.

1. Registers a classifier (3 versions) in a temporary home and deploys 50 endpoints to
   production: 40 serve one version, 8 split 90/10 between two, 2 add a shadow.
2. Writes a week of prediction log for every endpoint with the log's own functions
   (`records.entry`, `records.build_tables`, `records.write_segment`): one segment per
   endpoint and hour, a daily cycle around ``--rate`` requests/s, 1.5% failures.
3. Starts ``modelport serve`` (one worker, the monitor off so nothing else runs) and
   loads the overview in headless Chromium (Debian's ``chromium`` and
   ``chromedriver``; ``scripts/browser.sh``) ``--runs`` times with the browser cache
   disabled (every asset fetched) and as many with it on (assets from cache, as on a
   second visit). A load is timed from navigation start to the page's own mark
   ``modelport:rendered``, placed once the data is drawn (tables, 150 sparklines).
4. Loads a bare static HTML page served by Python's ``http.server`` the same number of
   times (navigation start to ``loadEventEnd``): the browser's own floor.
5. Times each API call the overview makes, with a plain HTTP client, and the stats
   call over the whole week (the overview's 7d window).
6. The week's traffic figures in process (`TrafficSeries.endpoints` over 7 days), read
   from the segments alone (``day_caches=False``, as before the day caches) and with
   the day caches: the first call (which writes them) and the next ones; the answers
   must be equal. Then the overview set to its 7d window loads in the browser.

Prints a Markdown table and writes bench/results/ui_bench.json.

Run: ``python bench/ui_bench.py [--runs N] [--rate R] [--days D] [--screenshot PNG]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from serve_bench import free_port, machine, stop, wait_ready

from modelport.client import Client
from modelport.monitoring import records
from modelport.settings import Settings

BENCH = Path(__file__).resolve().parent
ENDPOINTS = 50
SPLITS = 8  # endpoints with two live versions (90/10)
SHADOWS = 2  # endpoints with a shadow
COLUMNS = ["amount", "age_days", "n_tx_24h", "distance_km"]
TARGET_S = 1.0  # the goal: the overview loads in under a second
API_CALLS = {
    "deployments": "/v1/deployments",
    "endpoints": "/v1/endpoints",
    "stats": "/v1/stats?window=1h&series=requests_per_s,error_rate,p99_s",
    "incidents": "/v1/incidents?status=firing&limit=1000",
}
#: Not on the default overview: its window set to a week reads every day of the log.
WEEK_STATS = "/v1/stats?window=7d&series=requests_per_s,error_rate,p99_s"
BARE_PAGE = b"<!doctype html><html lang=en><title>bare</title><p>A bare static page.</p>"


# -- the data -----------------------------------------------------------------------


def register(home: Path, workdir: Path) -> Client:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(500, len(COLUMNS))), columns=COLUMNS)
    target = (frame["amount"] - frame["distance_km"] > 0).astype(int)
    path = workdir / "fraud.skops"
    sio.dump(LogisticRegression().fit(frame, target), path)
    client = Client(Settings(home=home, user="bench"))
    client.registry.ensure_model("fraud", owner="ana@example.com", team="risk")
    for _ in range(3):
        client.register_model("fraud", path, sample_input=frame)
    return client


def deploy(client: Client) -> list[tuple[str, dict[str, tuple[str, int]], dict[str, float]]]:
    """50 endpoints; each with its variants' models and live shares."""
    from modelport.registry import DeploymentSpec, Variant

    layout = []
    for i in range(ENDPOINTS):
        name = f"scorer-{i:02d}"
        if i < SPLITS:
            spec = DeploymentSpec(
                (Variant("fraud", 2, weight=10.0), Variant("fraud", 1, weight=90.0))
            )
            shares = {"fraud-v2": 0.1, "fraud-v1": 0.9}
        elif i < SPLITS + SHADOWS:
            spec = DeploymentSpec((Variant("fraud", 1), Variant("fraud", 3, shadow=True)))
            shares = {"fraud-v1": 1.0}
        else:
            spec = DeploymentSpec.single("fraud", 1 + i % 3)
            shares = {f"fraud-v{1 + i % 3}": 1.0}
        client.registry.set_deployment("production", name, spec, actor="bench", reason="bench")
        models = {v.name: (v.model, v.version) for v in spec.variants}
        layout.append((name, models, shares))
    return layout


def hour_entries(
    endpoint: str,
    start: float,
    span: float,
    requests: int,
    shares: dict[str, float],
    rng: np.random.Generator,
) -> list[records.Entry]:
    """``span`` seconds (an hour, or less for the current one) of one endpoint's
    requests, as the log buffers them (one row each)."""
    stamps = np.sort(rng.uniform(start, start + span, requests))
    variants = rng.choice(list(shares), size=requests, p=list(shares.values()))
    inputs = rng.normal(size=(requests, len(COLUMNS)))
    latency = rng.gamma(2.0, 0.0015, requests)
    failed = rng.random(requests) < 0.015
    out = []
    for i in range(requests):
        ids = records.new_prediction_ids(1)
        columns = {c: inputs[i : i + 1, j] for j, c in enumerate(COLUMNS)}
        if failed[i]:
            made = records.entry(
                endpoint, str(variants[i]), ids, columns, None, float(latency[i]),
                "signature_mismatch", "column 'amount' expects double",
            )  # fmt: skip
        else:
            label = np.array([int(inputs[i, 0] > 0)])
            made = records.entry(
                endpoint, str(variants[i]), ids, columns, {"label": label}, float(latency[i])
            )
        out.append((float(stamps[i]), *made[1:]))
    return out


def write_week(
    logs: Path,
    layout: list[tuple[str, dict[str, tuple[str, int]], dict[str, float]]],
    days: float,
    rate: float,
) -> dict[str, Any]:
    """Segments for every endpoint and hour of the last ``days``; what was written."""
    rng = np.random.default_rng(1)
    now = time.time()
    first_hour = math.floor((now - days * 86400) / 3600) * 3600
    rows = files = 0
    started = time.perf_counter()
    for endpoint, models, shares in layout:
        scale = rng.uniform(0.3, 1.7)  # endpoints differ in traffic
        hour = first_hour
        while hour < now:
            daily = 1 + 0.6 * math.sin((hour % 86400) / 86400 * 2 * math.pi)
            span = min(3600.0, now - hour)
            requests = int(rng.poisson(rate * scale * daily * span))
            if requests:
                entries = hour_entries(endpoint, hour, span, requests, shares, rng)
                batch = records.build_tables(entries, "production", models)
                day = records.date_of_day(records.day_of(hour))
                folder = records.endpoint_folder(logs, endpoint) / f"date={day}"
                for k, table in enumerate(batch.tables):
                    records.write_segment(table, folder / f"bench-{int(hour)}-{k}.parquet")
                    rows += table.num_rows
                    files += 1
            hour += 3600
    size = sum(p.stat().st_size for p in logs.rglob("*.parquet"))
    return {
        "endpoints": len(layout),
        "days": days,
        "mean_rate_per_endpoint": rate,
        "rows": rows,
        "files": files,
        "bytes": size,
        "write_s": round(time.perf_counter() - started, 1),
    }


# -- the browser --------------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_path is None:
        sys.exit("chromium and chromedriver are needed: run scripts/browser.sh")
    options = Options()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--window-size=1400,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        yield driver
    finally:
        driver.quit()


def chromium_version() -> str:
    try:
        out = subprocess.run(["chromedriver", "--version"], capture_output=True, text=True)
        return out.stdout.strip()
    except OSError:
        return "unknown"


def load_overview(driver: Any, url: str) -> dict[str, float]:
    """One fresh load of the overview: ms from navigation start to the data drawn."""
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mark = driver.execute_script(
            "const m = performance.getEntriesByName('modelport:rendered');"
            "return m.length ? m[0].startTime : null;"
        )
        if mark is not None:
            break
        time.sleep(0.01)
    else:
        raise RuntimeError("the overview did not render in 30 s")
    timing = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "const api = performance.getEntriesByType('resource')"
        "  .filter(r => r.name.includes('/v1/'));"
        "return {document: n.responseEnd, dom: n.domContentLoadedEventEnd,"
        "  api_end: Math.max(...api.map(r => r.responseEnd)),"
        "  rows: document.querySelectorAll('tbody tr').length,"
        "  sparklines: document.querySelectorAll('canvas.spark').length};"
    )
    return {"rendered_ms": float(mark)} | timing


def load_bare(driver: Any, url: str) -> float:
    driver.get("about:blank")
    driver.get(url)
    return float(
        driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd;"
        )
    )


@contextmanager
def bare_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(BARE_PAGE)))
            self.end_headers()
            self.wfile.write(BARE_PAGE)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/bare.html"
    finally:
        server.shutdown()


def api_times(base: str, runs: int) -> dict[str, float]:
    """Median ms of each call the overview makes, one at a time (and of its stats call
    over the whole week)."""
    out = {}
    for name, path in {**API_CALLS, "stats_7d": WEEK_STATS}.items():
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            with urllib.request.urlopen(base + path, timeout=30) as resp:
                resp.read()
            times.append((time.perf_counter() - started) * 1000)
        out[name] = round(statistics.median(times), 1)
    return out


# -- the run -----------------------------------------------------------------------------


def week_figures(settings: Settings, runs: int) -> dict[str, Any]:
    """ms of the overview's 7d stats in process: from the segments alone, then with the
    day caches (first call writes them); the answers must be the same."""
    from modelport.monitoring.timeseries import Grid, TrafficSeries, default_step

    until = dt.datetime.now(dt.UTC)
    since = until - dt.timedelta(days=7)
    grid = Grid.covering(since, until, default_step(7 * 86400))
    series = ["requests_per_s", "error_rate", "p99_s"]

    def timed(stats: TrafficSeries) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        answer = stats.endpoints(grid, series=series)
        return (time.perf_counter() - started) * 1000, answer

    plain = [timed(TrafficSeries(settings, day_caches=False)) for _ in range(runs)]
    cached = TrafficSeries(settings)
    first_ms, first = timed(cached)
    warm = [timed(cached) for _ in range(runs)]
    if not all(answer == first for _, answer in plain + warm):
        raise AssertionError("the day caches changed the week's figures")
    return {
        "segments_only_ms": round(statistics.median(t for t, _ in plain), 1),
        "caches_first_call_ms": round(first_ms, 1),
        "caches_ms": round(statistics.median(t for t, _ in warm), 1),
        "cache_files": len(list(settings.logs_path.glob("predictions/*/*/_traffic-*.cache"))),
        "endpoints": len(first["endpoints"]),
        "step_s": grid.step_s,
    }


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


def measure(url: str, runs: int, screenshot: Path | None) -> dict[str, Any]:
    cold: list[dict[str, float]] = []
    warm: list[dict[str, float]] = []
    with chromium() as driver, bare_server() as bare_url:
        load_overview(driver, url)  # the first launch's own costs, not counted
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        cold = [load_overview(driver, url) for _ in range(runs)]
        bare_cold = [load_bare(driver, bare_url) for _ in range(runs)]
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
        load_overview(driver, url)
        warm = [load_overview(driver, url) for _ in range(runs)]
        bare_warm = [load_bare(driver, bare_url) for _ in range(runs)]
        week = [load_overview(driver, url + "?window=7d") for _ in range(runs)]
        if screenshot is not None:
            load_overview(driver, url)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1400, min(int(height), 8000))
            time.sleep(0.5)
            driver.save_screenshot(str(screenshot))
    return {
        "overview_cold": summary([r["rendered_ms"] for r in cold]),
        "overview_warm": summary([r["rendered_ms"] for r in warm]),
        "overview_7d_warm": summary([r["rendered_ms"] for r in week]),
        "bare_page_cold": summary(bare_cold),
        "bare_page_warm": summary(bare_warm),
        "overview_cold_parts": {
            "document_ms": round(statistics.median(r["document"] for r in cold), 1),
            "dom_content_loaded_ms": round(statistics.median(r["dom"] for r in cold), 1),
            "last_api_answer_ms": round(statistics.median(r["api_end"] for r in cold), 1),
        },
        "table_rows": int(cold[-1]["rows"]),
        "sparklines": int(cold[-1]["sparklines"]),
    }


def markdown(result: dict[str, Any]) -> str:
    b = result["browser"]
    data = result["data"]
    lines = [
        f"Overview with {data['endpoints']} endpoints, {data['rows']:,} logged predictions over "
        f"{data['days']:g} days ({data['files']:,} segments, {data['bytes'] / 1e6:.0f} MB):",
        "",
        "| page | cache | median | p90 | min | max |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, page, cache in (
        ("overview_cold", "overview, data drawn", "off"),
        ("overview_warm", "overview, data drawn", "on"),
        ("overview_7d_warm", "overview, 7d window, data drawn", "on"),
        ("bare_page_cold", "bare static page, loaded", "off"),
        ("bare_page_warm", "bare static page, loaded", "on"),
    ):
        s = b[key]
        lines.append(
            f"| {page} | {cache} | {s['median_ms']:.0f} ms | {s['p90_ms']:.0f} ms | "
            f"{s['min_ms']:.0f} ms | {s['max_ms']:.0f} ms |"
        )
    api = dict(result["api_ms"])
    week = api.pop("stats_7d")
    calls = ", ".join(f"{k} {v:.0f} ms" for k, v in api.items())
    lines += [
        "",
        f"API calls alone (median): {calls}; stats over the whole week: {week:.0f} ms.",
    ]
    w = result["week_figures"]
    lines += [
        "",
        f"The week's figures in process ({w['endpoints']} endpoints, {w['step_s']:g} s "
        f"buckets): {w['segments_only_ms']:.0f} ms from the segments alone, "
        f"{w['caches_first_call_ms']:.0f} ms for the call that writes the "
        f"{w['cache_files']} day caches, {w['caches_ms']:.0f} ms with them (same answers).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="loads per mode (default 10)")
    parser.add_argument("--days", type=float, default=7.0, help="days of log (default 7)")
    parser.add_argument(
        "--rate", type=float, default=0.1, help="mean requests/s per endpoint (default 0.1)"
    )
    parser.add_argument("--screenshot", type=Path, help="save the overview as this PNG")
    args = parser.parse_args()
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        workdir = Path(tmp)
        home = workdir / "home"
        client = register(home, workdir)
        layout = deploy(client)
        client.close()
        print(f"writing {args.days:g} days of log for {ENDPOINTS} endpoints ...", file=sys.stderr)
        data = write_week(Settings(home=home).logs_path, layout, args.days, args.rate)
        print(f"  {data}", file=sys.stderr)
        week = week_figures(Settings(home=home), max(3, args.runs // 3))
        print(f"  {week}", file=sys.stderr)
        port = free_port()
        argv = [sys.executable, "-m", "modelport.cli.main", "--home", str(home), "serve"]
        argv += ["--env", "production", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", "1", "--log-level", "warning"]
        env = os.environ | {"MODELPORT_MONITOR_INTERVAL_SECONDS": "0"}
        proc = subprocess.Popen(argv, env=env, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(proc, f"{base}/v2/health/ready")
            browser = measure(f"{base}/ui/#/", args.runs, args.screenshot)
            api = api_times(base, args.runs)
        finally:
            stop(proc)
    result = machine() | {
        "browser_version": chromium_version(),
        "argv": sys.argv[1:],
        "data": data,
        "browser": browser,
        "api_ms": api,
        "week_figures": week,
        "target_ms": TARGET_S * 1000,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    result["markdown"] = markdown(result)
    out = BENCH / "results" / "ui_bench.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["markdown"])
    print(f"\nwritten to {out.relative_to(BENCH.parent)}")


if __name__ == "__main__":
    main()
