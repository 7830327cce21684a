"""Traffic summaries: what each prediction-log segment says of its requests, in its
footer, so that a window's requests, errors and latency are summed from a few hundred
bytes per segment instead of read from every row.

The log writer puts a `Summary` in the Arrow schema metadata of every table it builds
(key ``modelport.traffic``); tables joined with `concat` carry the sum of theirs, and
Parquet keeps it in the file's key-value metadata. A summary holds the segment's
environment, the time range of its requests and, per (variant, shadow), how many
requests it logged, how many failed, and a `Sketch` of the answered ones' latency.

A sketch counts values in logarithmic buckets, each ``GAMMA`` times as wide as the one
before (DDSketch's scheme): sketches add bucket by bucket, so the sketch of a window is
the sum of its segments', and a quantile read from it is within ``RELATIVE_ERROR`` of
the one computed from the values themselves. Counts are exact.

`Summaries` is a reader's cache of them, one footer read per segment version.

Example::

    sketch = Sketch.of(np.array([0.002, 0.003, 0.004]))
    sketch.quantile(0.5)                    # 0.003, within 0.5%
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: The key of a summary in a table's schema metadata and a segment's footer.
KEY = b"modelport.traffic"
#: Relative accuracy of a quantile read from a sketch.
RELATIVE_ERROR = 0.005
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LN_GAMMA = math.log(GAMMA)
#: Values below this (a latency of 0) are counted in one bucket that stands for 0.
SMALLEST = 1e-9
ZERO_KEY = math.floor(math.log(SMALLEST) / LN_GAMMA) - 1
#: The key of a billion seconds: no latency is larger (a summary saying so is damaged).
LARGEST_KEY = math.ceil(math.log(1e9) / LN_GAMMA)
#: The bucket key of a value, as DuckDB SQL over a column (the same as `keys`).
SQL_KEY = (
    "CASE WHEN {column} < " + repr(SMALLEST) + f" THEN {ZERO_KEY} "
    "ELSE least(CAST(ceil(ln({column}) / " + repr(LN_GAMMA) + f") AS BIGINT), {LARGEST_KEY}) END"
)


def keys(values: np.ndarray) -> np.ndarray:
    """The bucket of each value: ``ceil(log_GAMMA(value))``, `ZERO_KEY` below `SMALLEST`."""
    values = np.asarray(values, np.float64)
    small = values < SMALLEST
    safe = np.where(small, 1.0, values)
    out = np.ceil(np.log(safe) / LN_GAMMA).astype(np.int64)
    out[small] = ZERO_KEY
    np.minimum(out, LARGEST_KEY, out=out)
    return out


@dataclass(frozen=True)
class Sketch:
    """Counts of values per logarithmic bucket: ``keys`` ascending, ``counts`` > 0."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, values: np.ndarray) -> Sketch:
        found, counts = np.unique(keys(values), return_counts=True)
        return cls(found, counts.astype(np.int64))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, int]]) -> Sketch:
        items = list(pairs)
        if not items:
            return cls()
        raw = np.array(items, np.int64).reshape(-1, 2)
        return cls.sum_of([raw[:, 0]], [raw[:, 1]])

    @classmethod
    def sum_of(cls, keys: Sequence[np.ndarray], counts: Sequence[np.ndarray]) -> Sketch:
        """The sketch of every value counted in ``keys``/``counts`` pairs."""
        every = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        if not len(every):
            return cls()
        lowest = int(every.min())  # keys span a few thousand at most: count in place
        summed = np.bincount(every - lowest, weights=np.concatenate(counts))
        found = np.flatnonzero(summed)
        return cls(found + lowest, summed[found].astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def __add__(self, other: Sketch) -> Sketch:
        return Sketch.sum_of([self.keys, other.keys], [self.counts, other.counts])

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated between the two nearest ranks as DuckDB's
        ``quantile_cont`` is (each value read as its bucket's midpoint); None when empty."""
        n = self.n
        if n == 0:
            return None
        rank = q * (n - 1)
        below, above = math.floor(rank), math.ceil(rank)
        ends = np.cumsum(self.counts)
        low, high = np.searchsorted(ends, [below, above], side="right")
        a, b = _value(int(self.keys[low])), _value(int(self.keys[high]))
        return a + (rank - below) * (b - a)

    def to_json(self) -> list[list[int]]:
        return [self.keys.tolist(), self.counts.tolist()]

    @classmethod
    def from_json(cls, raw: Any) -> Sketch:
        found, counts = (np.asarray(part, np.int64) for part in raw)
        if found.shape != counts.shape or found.ndim != 1:
            raise ValueError("a sketch needs as many counts as keys")
        if len(found) and (found.min() < ZERO_KEY or found.max() > LARGEST_KEY):
            raise ValueError("a sketch key is out of range")
        return cls(found, counts)


def _value(key: int) -> float:
    """What a bucket stands for: the point within ``RELATIVE_ERROR`` of all its values."""
    return 0.0 if key == ZERO_KEY else 2 * GAMMA**key / (GAMMA + 1)


@dataclass
class Figures:
    """Requests, failed requests and the answered ones' latency sketch of one group."""

    requests: int = 0
    errors: int = 0
    latency: Sketch = field(default_factory=Sketch)

    @classmethod
    def total(cls, parts: Sequence[Figures]) -> Figures:
        """The figures of every request counted in ``parts`` (their sketches summed in
        one pass)."""
        return cls(
            sum(f.requests for f in parts),
            sum(f.errors for f in parts),
            Sketch.sum_of([f.latency.keys for f in parts], [f.latency.counts for f in parts]),
        )


def by_group(groups: Iterable[Mapping[Group, Figures]]) -> dict[Group, Figures]:
    """The figures of each group, totalled over ``groups``."""
    parts: dict[Group, list[Figures]] = {}
    for found in groups:
        for group, figures in found.items():
            parts.setdefault(group, []).append(figures)
    return {group: Figures.total(figures) for group, figures in parts.items()}


#: A group of requests: (variant, shadow); the variant is None for a request that
#: failed before a model was chosen.
Group = tuple[str | None, bool]


@dataclass(frozen=True)
class Summary:
    """What one table or segment logged: its environment, the first and last request's
    time (microseconds since the epoch, as ``ts``) and the figures of each group."""

    environment: str
    first_us: int
    last_us: int
    groups: Mapping[Group, Figures]

    @classmethod
    def of_requests(
        cls,
        environment: str,
        group: Group,
        stamps_us: np.ndarray,
        latency_s: np.ndarray,
        *,
        failed: bool,
    ) -> Summary:
        """One group's requests (one stamp and latency each), all answered or all failed."""
        n = len(stamps_us)
        figures = Figures(n, n if failed else 0, Sketch() if failed else Sketch.of(latency_s))
        return cls(environment, int(stamps_us.min()), int(stamps_us.max()), {group: figures})

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.groups.values())

    def within(self, since_us: int, until_us: int) -> bool:
        return since_us <= self.first_us and self.last_us < until_us

    def outside(self, since_us: int, until_us: int) -> bool:
        return self.last_us < since_us or self.first_us >= until_us

    def encode(self) -> bytes:
        groups = [
            [variant, shadow, f.requests, f.errors, f.latency.to_json()]
            for (variant, shadow), f in self.groups.items()
        ]
        return json.dumps(
            {
                "v": 1,
                "environment": self.environment,
                "ts": [self.first_us, self.last_us],
                "groups": groups,
            },  # fmt: skip
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Summary:
        """A summary from `encode`'s bytes; ValueError when they are not one."""
        try:
            doc = json.loads(raw)
            first, last = (int(t) for t in doc["ts"])
            groups = {
                (None if variant is None else str(variant), bool(shadow)): Figures(
                    int(requests), int(errors), Sketch.from_json(sketch)
                )
                for variant, shadow, requests, errors, sketch in doc["groups"]
            }
            return cls(str(doc["environment"]), first, last, groups)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a traffic summary: {exc}") from None

    @classmethod
    def total(cls, summaries: Sequence[Summary]) -> Summary:
        """The summary of every request of ``summaries`` (at least one)."""
        return cls(
            summaries[0].environment,
            min(s.first_us for s in summaries),
            max(s.last_us for s in summaries),
            by_group(s.groups for s in summaries),
        )


def attach(table: pa.Table, summary: Summary | None) -> pa.Table:
    """``table`` carrying ``summary`` (without one when None)."""
    metadata = dict(table.schema.metadata or {})
    metadata.pop(KEY, None)
    if summary is not None:
        metadata[KEY] = summary.encode()
    return table.replace_schema_metadata(metadata or None)


def summary_of(table: pa.Table) -> Summary | None:
    """The summary a table carries; None when it has none (or a damaged one)."""
    raw = (table.schema.metadata or {}).get(KEY)
    if raw is None:
        return None
    try:
        return Summary.decode(raw)
    except ValueError:
        return None


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """``tables`` as one, columns matched by name, carrying the total of their summaries
    (none when one of them has none). Raises what `pa.concat_tables` raises when a
    column's type differs."""
    if len(tables) == 1:
        return tables[0]
    joined = pa.concat_tables(tables, promote_options="default")
    summaries = [summary_of(t) for t in tables]
    known = [s for s in summaries if s is not None]
    return attach(joined, Summary.total(known) if len(known) == len(summaries) else None)


class Summaries:
    """A reader's cache of segment summaries, one footer read per version of a file
    (its size and modification time), at most ``capacity`` files (the oldest first out)."""

    def __init__(self, capacity: int = 32_768) -> None:
        self.capacity = capacity
        self._known: dict[str, tuple[tuple[int, int], Summary | None]] = {}

    def get(self, path: str, stat: os.stat_result) -> Summary | None:
        """The summary in the segment's footer; None when it has none or cannot be read."""
        stamp = (stat.st_size, stat.st_mtime_ns)
        known = self._known.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        summary = read_summary(path)
        if len(self._known) >= self.capacity:
            for old in list(self._known)[: self.capacity // 4]:
                self._known.pop(old, None)  # another thread may have dropped it
        self._known[path] = (stamp, summary)
        return summary


def read_summary(path: str) -> Summary | None:
    """The summary in a Parquet file's footer; None when it has none or cannot be read."""
    try:
        raw = (pq.read_metadata(path).metadata or {}).get(KEY)
        return Summary.decode(raw) if raw is not None else None
    except (OSError, pa.ArrowException, ValueError):
        return None
