"""Open-loop HTTP/1.1 load generator: requests at a fixed arrival rate, whatever the answers.

Unlike `loadgen.py` (closed loop: each connection waits for its answer before sending
again, so a slow server is sent less), request ``i`` is due at ``start + i / rate`` and
goes out then on an idle keep-alive connection, or a new one (up to
``--max-connections``; a request with none to go on is counted ``unsent``). Latency is
measured from the due time, so a server that falls behind is charged for the wait.
Beside the load, one connection probes ``--health`` every ``--health-every`` seconds.

Every answer is classified: 200; a clean shed (503 with ``Retry-After`` and a JSON body
with a ``code``); any other status; connection errors. Only requests due after the
warm-up count. Prints one JSON object on stdout. Talks only to 127.0.0.1 and stops by
itself (hard deadline: warm-up + duration + 30 s).

Run: ``python bench/openloop.py --port 8000 --path /v1/endpoints/m/predict --body b.json
--rate 300 -d 5``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
#: Idle connections older than this are not reused: the server may have closed them
#: (uvicorn's keep-alive timeout is 5 s), which would read as a connection error.
STALE_SECONDS = 3.0
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Tally:
    ok: list[float] = field(default_factory=list)  # seconds from due time, 200s
    shed: list[float] = field(default_factory=list)  # clean 503s
    codes: dict[str, int] = field(default_factory=dict)  # every status (and shed code)
    unclean: list[str] = field(default_factory=list)  # answers that were neither
    connection_errors: int = 0
    unsent: int = 0
    sent: int = 0
    health: list[float] = field(default_factory=list)
    health_failures: int = 0


def build_request(path: str, body: bytes | None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(conn: Connection, request: bytes) -> Answer:
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(lines[0].split()[1]), headers, body)


def classify(answer: Answer, tally: Tally, seconds: float) -> None:
    key = str(answer.status)
    if answer.status == 200:
        tally.ok.append(seconds)
    elif answer.status == 503:
        try:
            code = json.loads(answer.body).get("code")
        except ValueError:
            code = None
        if code and answer.headers.get("retry-after", "").isdigit():
            tally.shed.append(seconds)
            key = f"503 {code}"
        else:
            tally.unclean.append(f"503 {answer.headers} {answer.body[:200]!r}")
    else:
        tally.unclean.append(f"{answer.status} {answer.body[:200]!r}")
    tally.codes[key] = tally.codes.get(key, 0) + 1


class Pool:
    """Idle keep-alive connections, opened on demand up to ``limit``."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.idle: list[tuple[Connection, float]] = []
        self.open = 0
        self.peak = 0

    async def take(self) -> Connection | None:
        while self.idle:
            conn, since = self.idle.pop()
            if time.perf_counter() - since < STALE_SECONDS:
                return conn
            self.drop(conn)
        if self.open >= self.limit:
            return None
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            return await asyncio.open_connection(HOST, self.port)
        except OSError:
            self.open -= 1
            raise

    def give(self, conn: Connection, reusable: bool) -> None:
        if reusable:
            self.idle.append((conn, time.perf_counter()))
        else:
            self.drop(conn)

    def drop(self, conn: Connection) -> None:
        self.open -= 1
        conn[1].close()

    def close(self) -> None:
        for conn, _ in self.idle:
            conn[1].close()


async def one(pool: Pool, request: bytes, due: float, counted: bool, tally: Tally) -> None:
    try:
        conn = await pool.take()
    except OSError:
        tally.connection_errors += counted
        return
    if conn is None:
        tally.unsent += counted
        return
    try:
        answer = await exchange(conn, request)
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pool.drop(conn)
        tally.connection_errors += counted
        return
    pool.give(conn, answer.headers.get("connection", "").lower() != "close")
    if counted:
        tally.sent += 1
        classify(answer, tally, time.perf_counter() - due)


async def probe(port: int, path: str, every: float, start: float, end: float, tally: Tally) -> None:
    request = build_request(path, None)
    conn: Connection | None = None
    while (now := time.perf_counter()) < end:
        try:
            conn = conn or await asyncio.open_connection(HOST, port)
            answer = await exchange(conn, request)
            if now >= start:
                if answer.status == 200:
                    tally.health.append(time.perf_counter() - now)
                else:
                    tally.health_failures += 1
        except (OSError, ValueError, asyncio.IncompleteReadError):
            tally.health_failures += now >= start
            conn = None
        await asyncio.sleep(max(0.0, now + every - time.perf_counter()))
    if conn is not None:
        conn[1].close()


async def drive(args: argparse.Namespace, request: bytes) -> tuple[Tally, Pool]:
    tally = Tally()
    pool = Pool(args.port, args.max_connections)
    begin = time.perf_counter()
    start = begin + args.warmup
    end = start + args.duration
    health = asyncio.ensure_future(
        probe(args.port, args.health, args.health_every, start, end, tally)
    )
    tasks: set[asyncio.Task[None]] = set()
    i = 0
    while (due := begin + i / args.rate) < end:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(pool, request, due, due >= start, tally))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=args.grace)
    unfinished = [t for t in tasks if not t.done()]
    for task in unfinished:
        task.cancel()
    tally.connection_errors += len(unfinished)
    await health
    pool.close()
    return tally, pool


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)}


def summary(args: argparse.Namespace, tally: Tally, pool: Pool) -> dict[str, Any]:
    answered = len(tally.ok) + len(tally.shed)
    return {
        "rate": args.rate,
        "duration": args.duration,
        "due": int(args.rate * args.duration),
        "answered": tally.sent,
        "ok": percentiles(tally.ok),
        "ok_per_s": round(len(tally.ok) / args.duration, 1),
        "shed": percentiles(tally.shed),
        "shed_fraction": round(len(tally.shed) / answered, 4) if answered else 0.0,
        "codes": tally.codes,
        "unclean": len(tally.unclean),
        "unclean_examples": tally.unclean[:5],
        "connection_errors": tally.connection_errors,
        "unsent": tally.unsent,
        "connections_peak": pool.peak,
        "health": percentiles(tally.health),
        "health_failures": tally.health_failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True, help="file holding the JSON request body")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-w", "--warmup", type=float, default=1.0)
    parser.add_argument("--health", default="/v2/health/live")
    parser.add_argument("--health-every", type=float, default=0.1)
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument("--grace", type=float, default=10.0, help="wait for late answers")
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        request = build_request(args.path, f.read())

    async def bounded() -> tuple[Tally, Pool]:
        limit = args.warmup + args.duration + args.grace + 30
        return await asyncio.wait_for(drive(args, request), limit)

    tally, pool = asyncio.run(bounded())
    print(json.dumps(summary(args, tally, pool)))


if __name__ == "__main__":
    main()
