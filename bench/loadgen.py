"""Closed-loop HTTP/1.1 load generator: N keep-alive connections, back to back.

Each connection writes one pre-encoded request, reads the response by its
Content-Length, and sends the next at once. Only requests that start after the
warm-up and finish before the end count. Prints one JSON object on stdout.
Talks only to 127.0.0.1 and stops by itself (hard deadline: warm-up + duration + 30 s).

Run: ``python bench/loadgen.py --port 8000 --path /predict --body body.json -c 8 -d 10``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


def build_request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length is None:
        raise ValueError("response without Content-Length")
    await reader.readexactly(length)
    return status


async def connection(port: int, request: bytes, start: float, end: float, stats: Stats) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while (sent := time.perf_counter()) < end:
            writer.write(request)
            try:
                status = await read_response(reader)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                stats.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            done = time.perf_counter()
            if sent >= start and done <= end:
                if status == 200:
                    stats.latencies.append(done - sent)
                else:
                    stats.errors += 1
    finally:
        writer.close()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run(port: int, request: bytes, concurrency: int, warmup: float, duration: float) -> Stats:
    stats = Stats()
    start = time.perf_counter() + warmup
    end = start + duration
    tasks = [connection(port, request, start, end, stats) for _ in range(concurrency)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=warmup + duration + 30)
    except TimeoutError:
        stats.errors += 1
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--body", required=True, help="file holding the JSON request body")
    parser.add_argument("--rows", type=int, default=1, help="rows per request, for rows/s")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("-w", "--warmup", type=float, default=2.0)
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        request = build_request(args.path, f.read())
    stats = asyncio.run(run(args.port, request, args.concurrency, args.warmup, args.duration))
    lat = sorted(stats.latencies)
    rps = len(lat) / args.duration
    print(
        json.dumps(
            {
                "requests": len(lat),
                "errors": stats.errors,
                "rps": rps,
                "rows_per_s": rps * args.rows,
                "p50_ms": percentile(lat, 0.50) * 1000,
                "p99_ms": percentile(lat, 0.99) * 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
