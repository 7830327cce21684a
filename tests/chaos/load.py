"""A load generator in a process of its own: predictions on keep-alive connections
until a stop file appears, every outcome classified and written as JSON.

An outcome is ``ok`` (200 with the predictions), ``refused`` (no connection: nothing
was sent), ``dropped`` (the server closed the connection before answering: an idle
keep-alive connection closed under the request, or a process that died), ``json_5xx``
(a 5xx whose body is the server's JSON error) or ``unclean`` (anything else: a timeout,
a non-JSON error, a 4xx, a cut answer). Whether a ``dropped`` request was processed is
what the prediction log tells: the tests compare its rows with the ``ok`` count.

    python -m tests.chaos.load URL ENDPOINT OUT.json STOPFILE [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

ROW = {"a": 0.5, "b": -1.0, "c": 0.2, "d": 1.0}
CLEAN = ("ok", "refused", "dropped", "json_5xx")


@dataclass
class Outcome:
    kind: str
    t: float
    status: int = 0
    detail: str = ""


def classify_response(response: httpx.Response) -> Outcome:
    now = time.time()
    try:
        body: Any = response.json()
    except ValueError:
        return Outcome("unclean", now, response.status_code, response.text[:200])
    if response.status_code == 200 and isinstance(body, dict) and "predictions" in body:
        return Outcome("ok", now, 200)
    if response.status_code >= 500 and isinstance(body, dict) and "error" in body:
        return Outcome("json_5xx", now, response.status_code, str(body["error"])[:300])
    return Outcome("unclean", now, response.status_code, json.dumps(body)[:200])


def classify_error(exc: httpx.HTTPError) -> Outcome:
    now = time.time()
    if isinstance(exc, httpx.ConnectError):
        return Outcome("refused", now, detail=str(exc)[:200])
    # The server closed (or reset) the connection without a byte of an answer.
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return Outcome("dropped", now, detail=f"{type(exc).__name__}: {exc}"[:200])
    return Outcome("unclean", now, detail=f"{type(exc).__name__}: {exc}"[:200])


async def user(
    client: httpx.AsyncClient, url: str, body: Any, stop: Path, out: list[Outcome]
) -> None:
    started = stop.with_name("started")  # after the first answer: the test may go on
    while not stop.exists():
        try:
            outcome = classify_response(await client.post(url, json=body))
        except httpx.HTTPError as exc:
            outcome = classify_error(exc)
        out.append(outcome)
        if outcome.kind != "ok":
            await asyncio.sleep(0.02)  # the server is away or failing: do not spin
        elif not started.exists():
            started.touch()


async def run(
    base: str, endpoint: str, stop: Path, concurrency: int, verify: str, body: Any
) -> list[Outcome]:
    url = f"{base}/v1/endpoints/{endpoint}/predict"
    out: list[Outcome] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    trust: ssl.SSLContext | bool = ssl.create_default_context(cafile=verify) if verify else True
    async with httpx.AsyncClient(timeout=30, limits=limits, verify=trust) as client:
        await asyncio.gather(*(user(client, url, body, stop, out) for _ in range(concurrency)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("endpoint")
    parser.add_argument("out", type=Path)
    parser.add_argument("stop", type=Path)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--verify", default="")
    parser.add_argument("--body", default=json.dumps({"dataframe_records": [ROW]}))
    args = parser.parse_args()
    outcomes = asyncio.run(
        run(
            args.base,
            args.endpoint,
            args.stop,
            args.concurrency,
            args.verify,
            json.loads(args.body),
        )
    )
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(o) for o in outcomes]))
    os.replace(tmp, args.out)


def summary(outcomes: list[dict[str, Any]]) -> Counter[str]:
    return Counter(o["kind"] for o in outcomes)


class Load:
    """`main` in a child process against ``base``; `finish` stops it and returns what
    every request got."""

    def __init__(
        self,
        base: str,
        endpoint: str,
        folder: Path,
        *,
        concurrency: int = 8,
        verify: str = "",
        body: Any = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.stop_file, self.out = folder / "stop", folder / "outcomes.json"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.chaos.load",
                base,
                endpoint,
                str(self.out),
                str(self.stop_file),
                "--concurrency",
                str(concurrency),
                "--verify",
                verify,
                "--body",
                json.dumps(body or {"dataframe_records": [ROW]}),
            ],
            cwd=Path(__file__).resolve().parents[2],
        )

    def wait_answered(self, timeout: float = 60) -> None:
        """Return once the load got its first 200 (its process takes a while to start)."""
        deadline = time.monotonic() + timeout
        while not self.stop_file.with_name("started").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the load got no answer")
            time.sleep(0.02)
        time.sleep(0.3)  # and some more

    def finish(self, timeout: float = 60) -> list[dict[str, Any]]:
        self.stop_file.touch()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        outcomes: list[dict[str, Any]] = json.loads(self.out.read_text())
        return outcomes


def report(name: str, outcomes: list[dict[str, Any]]) -> Counter[str]:
    """Print the summary line every chaos test prints, and return the counts."""
    counts = summary(outcomes)
    clean_failures = sum(counts[k] for k in CLEAN if k != "ok")
    print(
        f"\n{name}: sent {len(outcomes)} / ok {counts['ok']} / failed cleanly "
        f"{clean_failures} ({', '.join(f'{k} {counts[k]}' for k in CLEAN[1:])}) / "
        f"failed uncleanly {counts['unclean']}"
    )
    return counts


def unclean(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in outcomes if o["kind"] not in CLEAN]


if __name__ == "__main__":
    main()
