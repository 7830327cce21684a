"""What checking an artifact's SHA-256 adds to loading it, in the same run.

For a few artifact sizes (a scikit-learn random forest saved with skops, grown until
the file reaches the size) this times, as CPU time of this process:

1. ``LocalArtifactStore.verify`` alone (read and hash the stored file);
2. ``load_runtime(..., verify=False)``: the runtime's own load;
3. ``load_runtime(...)``: the same with the check, as every load path runs it.

Rounds alternate the cases; the median of the rounds is reported, with the share of
the checked load that the check takes.

Run: ``python bench/verify_bench.py [--rounds R]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


def _timed(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import skops.io as sio
    from sklearn.ensemble import RandomForestRegressor

    from modelport.client import Client
    from modelport.runtimes.loading import load_runtime
    from modelport.settings import Settings

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2000, 4)), columns=["a", "b", "c", "d"])
    target = frame["a"] * 2 + rng.normal(size=2000)
    with tempfile.TemporaryDirectory() as tmp:
        client = Client(Settings(home=Path(tmp) / "home", user="bench", compile_models=False))
        header = ("trees", 6), ("MiB", 7), ("verify ms", 10), ("load ms", 9), ("checked ms", 11)
        print(" ".join(f"{name:>{width}}" for name, width in header), f"{'share':>6}")
        for trees in (10, 50, 200):
            path = Path(tmp) / f"forest{trees}.skops"
            model = RandomForestRegressor(n_estimators=trees, random_state=0).fit(frame, target)
            sio.dump(model, path)
            mv = client.register_model(f"forest{trees}", path, sample_input=frame.head(50))
            times: dict[str, list[float]] = {"verify": [], "load": [], "checked": []}
            for _ in range(args.rounds):
                times["verify"].append(_timed(lambda mv=mv: client.artifacts.verify(mv.artifact)))
                times["load"].append(
                    _timed(lambda mv=mv: load_runtime(mv, client.artifacts, verify=False).unload())
                )
                times["checked"].append(
                    _timed(lambda mv=mv: load_runtime(mv, client.artifacts).unload())
                )
            med = {k: statistics.median(v) * 1000 for k, v in times.items()}
            size = path.stat().st_size / 2**20
            share = med["verify"] / med["checked"] if med["checked"] else 0.0
            print(
                f"{trees:>6} {size:>7.1f} {med['verify']:>10.1f} {med['load']:>9.1f} "
                f"{med['checked']:>11.1f} {share:>6.0%}"
            )
        client.close()


if __name__ == "__main__":
    main()
