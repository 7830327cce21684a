"""What a request pays for online features while Redis hangs: with and without the
circuit breaker, in the same run.

A "hanging Redis" is a TCP listener on 127.0.0.1 that accepts connections and never
answers (as a Redis host that stopped responding). `RedisStore.read` is called
``--calls`` times with the server's timeout (``feature_timeout_seconds``, 0.25 s) on a
store without a breaker and on one with it (`RedisStore.use_breaker`); every call must
raise `Unavailable`. Prints the median and p99 time a call took to fail, and the share
of calls that reached the socket.

    .venv/bin/python bench/breaker_bench.py            # 40 calls each
    .venv/bin/python bench/breaker_bench.py --calls 100
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time

from modelport.errors import Unavailable
from modelport.features.online import Lookup
from modelport.features.redis import RedisStore

TIMEOUT_S = 0.25


def hanging_listener() -> tuple[socket.socket, list[socket.socket]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return listener, held


def measure(store: RedisStore, calls: int) -> list[float]:
    took = []
    lookup = [Lookup("profile", "rows", ["u1"])]
    for _ in range(calls):
        started = time.perf_counter()
        try:
            store.read(lookup)
        except Unavailable:
            took.append(time.perf_counter() - started)
        else:
            raise AssertionError("a read from a hanging Redis succeeded")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    listener, held = hanging_listener()
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    print(f"hanging Redis at {url}, timeout {TIMEOUT_S} s, {args.calls} reads each")
    print(f"{'store':<16} {'p50 ms':>9} {'p99 ms':>9} {'total s':>8} {'sockets':>8}")
    for name, breaker in (("no breaker", False), ("with breaker", True)):
        store = RedisStore(url, timeout_s=TIMEOUT_S)
        if breaker:
            store.use_breaker()
        before = len(held)
        took = measure(store, args.calls)
        store.close()
        ms = sorted(t * 1000 for t in took)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        print(
            f"{name:<16} {statistics.median(ms):>9.3f} {p99:>9.1f} {sum(took):>8.2f} "
            f"{len(held) - before:>8}"
        )
    listener.close()


if __name__ == "__main__":
    main()
