"""Drift and data quality: live inputs and outputs against a version's reference profile.

Each column gets two drift signals and two data-quality rates:

- **A statistical test, chosen as Evidently chooses by default**, run on the raw
  reference sample stored at registration (without one, on the profile's histogram).
  With at most 1000 reference rows: the two-sample Kolmogorov-Smirnov test for
  numeric columns, chi-square for categorical ones (on the two samples' table of
  counts: Evidently's variant takes the reference's shares as exact and flags
  unshifted data once live rows far outnumber reference rows), the two-proportion
  Z-test when there are only two values; drift when p < 0.05. With more
  rows: the Wasserstein distance normed by the reference's standard deviation (numeric)
  and the Jensen-Shannon distance (categorical); drift when >= 0.1. A numeric column
  with at most five distinct values (reference and live together) counts as categorical.
- **The population stability index** over the profile's histogram bins (numeric; the
  outer bins are open-ended, so live values outside the reference range count) or over
  its most frequent values plus "other" (categorical); drift when >= 0.2.
- **Missing rate** (NaN, None and +-inf) beside the reference's, and **out-of-range
  rate**: numbers outside the reference's [min, max]; categories the reference never
  held, when the profile lists every distinct value it saw.

Every threshold, and the method, can be set per column (`ColumnThreshold`).

Speed: nothing is subsampled. Each live column is sorted once, and the PSI bins, the
range check and the KS statistic become binary searches in it; the KS statistic is
exact (the largest CDF gap at the reference's distinct values) and its p-value is
scipy's (exact up to 10,000 rows, Smirnov's asymptotic distribution above, as
``scipy.stats.ks_2samp`` chooses). 1M rows x 20 columns take about half a second
(``bench/drift_bench.py``).

Example::

    report = drift_report(version.profile, client.reference_sample(version), live,
                          output_columns={"label": "out_label"})
    [c.column for c in report.top(3)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from modelport.errors import InvalidInput
from modelport.monitoring.stattests import (
    DEFAULT_THRESHOLDS,
    FEW_VALUES,
    METHODS,
    P_VALUE_METHODS,
    Method,
    Test,
    count_test,
    default_method,
    ks_test,
    psi,
    wasserstein_normed,
)

PSI_THRESHOLD = 0.2
#: Share of drifted input columns at which the whole dataset counts as drifted.
DRIFT_SHARE = 0.5
#: Numeric columns compared as categories keep their values up to this many distinct
#: reference values, and are binned (Sturges) above it.
CATEGORY_VALUES = 20
OTHER = "<other>"


@dataclass(frozen=True)
class ColumnThreshold:
    """Per-column settings; None keeps the default."""

    method: Method | None = None
    threshold: float | None = None
    psi_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise InvalidInput(
                f"unknown drift method {self.method!r}",
                hint=f"use one of {', '.join(METHODS)}, or leave it out for the default",
            )


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift and data quality.

    ``score`` is what ``threshold`` applies to: the p-value for ks, chisquare and z
    (drift when below), the distance for wasserstein and jensenshannon (drift when at or
    above). ``statistic`` is the test statistic (KS D, chi-square, z, or the distance).
    Rates are None when there were no rows; ``score`` and ``psi`` when there was nothing
    to compare. ``reference`` says what the test ran against: the stored ``sample`` or
    the ``profile``.
    """

    column: str
    kind: str
    method: str
    score: float | None
    threshold: float
    drifted: bool
    p_value: float | None
    psi: float | None
    psi_threshold: float
    psi_drifted: bool
    missing_rate: float | None
    reference_missing_rate: float | None
    out_of_range_rate: float | None
    rows: int
    statistic: float | None = None
    reference: str = "sample"

    @property
    def alarm(self) -> bool:
        """Either signal past its threshold."""
        return self.drifted or self.psi_drifted

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()} | {"alarm": self.alarm}


@dataclass(frozen=True)
class DriftReport:
    """Drift of every input column and output over ``rows`` live rows."""

    columns: tuple[ColumnDrift, ...]
    outputs: tuple[ColumnDrift, ...]
    rows: int
    drift_share: float = DRIFT_SHARE

    @property
    def drifted_share(self) -> float:
        """Share of input columns whose test found drift."""
        if not self.columns:
            return 0.0
        return sum(c.drifted for c in self.columns) / len(self.columns)

    @property
    def dataset_drift(self) -> bool:
        """Whether at least ``drift_share`` of the input columns drifted (Evidently's rule)."""
        return self.rows > 0 and bool(self.columns) and self.drifted_share >= self.drift_share

    @property
    def drifted_columns(self) -> list[str]:
        """Inputs and outputs with either signal past its threshold."""
        return [c.column for c in (*self.columns, *self.outputs) if c.alarm]

    def top(self, n: int = 5) -> list[ColumnDrift]:
        """The ``n`` columns (inputs and outputs) with the highest PSI."""
        ranked = sorted(
            (*self.columns, *self.outputs),
            key=lambda c: -1.0 if c.psi is None else c.psi,
            reverse=True,
        )
        return ranked[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "drifted_share": self.drifted_share,
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "drifted_columns": self.drifted_columns,
            "columns": [c.to_dict() for c in self.columns],
            "outputs": [c.to_dict() for c in self.outputs],
        }


def drift_report(
    profile: Mapping[str, Any],
    reference: pd.DataFrame | None,
    live: pd.DataFrame,
    *,
    output_columns: Mapping[str, str] | None = None,
    thresholds: Mapping[str, ColumnThreshold] | None = None,
    reference_outputs: pd.DataFrame | None = None,
    drift_share: float = DRIFT_SHARE,
) -> DriftReport:
    """Compare ``live`` with the reference a version was registered with.

    ``live`` holds the input columns under the profile's names; ``output_columns`` maps
    a profile output name to its column in ``live`` (e.g. ``{"label": "out_label"}``).
    ``reference`` is the stored sample (inputs), ``reference_outputs`` the model's
    outputs on it, keyed by output name; without them the tests run on the profile.
    ``thresholds`` are keyed by input column or output name.
    """
    limits = thresholds or {}
    rows = len(live)
    columns = tuple(
        _column(name, prof, _raw(reference, name), _live(live, name), limits.get(name), rows)
        for name, prof in profile.get("columns", {}).items()
    )
    output_profiles = profile.get("outputs", {})
    outputs = tuple(
        _column(
            name,
            output_profiles[name],
            _raw(reference_outputs, name),
            _live(live, column),
            limits.get(name),
            rows,
        )
        for name, column in (output_columns or {}).items()
        if name in output_profiles
    )
    return DriftReport(columns, outputs, rows, drift_share)


# -- one column ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    """What one column's comparison found, before thresholds apply."""

    kind: str
    missing_rate: float | None
    reference_missing_rate: float | None
    out_of_range_rate: float | None
    psi: float | None
    test: Test
    reference: str


def _column(
    name: str,
    prof: Mapping[str, Any],
    raw: pd.Series | None,
    live: pd.Series | None,
    limits: ColumnThreshold | None,
    rows: int,
) -> ColumnDrift:
    limits = limits or ColumnThreshold()
    if prof.get("kind") == "numeric":
        parts = _numeric(prof, raw, live, rows, limits.method)
    else:
        parts = _categorical(prof, raw, live, rows, limits.method)
    test = parts.test
    threshold = DEFAULT_THRESHOLDS[test.method] if limits.threshold is None else limits.threshold
    score = test.score
    if score is None:
        drifted = False
    elif test.method in P_VALUE_METHODS:
        drifted = score < threshold
    else:
        drifted = score >= threshold
    psi_threshold = PSI_THRESHOLD if limits.psi_threshold is None else limits.psi_threshold
    return ColumnDrift(
        column=name,
        kind=parts.kind,
        method=test.method,
        score=score,
        threshold=threshold,
        drifted=drifted,
        p_value=test.p_value,
        psi=parts.psi,
        psi_threshold=psi_threshold,
        psi_drifted=parts.psi is not None and parts.psi >= psi_threshold,
        missing_rate=parts.missing_rate,
        reference_missing_rate=parts.reference_missing_rate,
        out_of_range_rate=parts.out_of_range_rate,
        rows=rows,
        statistic=test.statistic,
        reference=parts.reference,
    )


def _numeric(
    prof: Mapping[str, Any],
    raw: pd.Series | None,
    live: pd.Series | None,
    rows: int,
    method: str | None,
) -> _Parts:
    values = _floats(live) if live is not None else np.empty(0)
    # Sorted once: bin counts, range checks and the KS statistic become binary searches.
    x = np.sort(values[np.isfinite(values)])
    outside: float | None = None
    if x.size and "min" in prof:
        below = np.searchsorted(x, prof["min"], "left")
        above = x.size - np.searchsorted(x, prof["max"], "right")
        outside = float(below + above) / x.size
    ref = _floats(raw) if raw is not None else np.empty(0)
    ref = ref[np.isfinite(ref)]
    if ref.size:
        test, source = _numeric_test(ref, x, method), "sample"
    else:
        test, source = _profile_test(prof, x, method), "profile"
    return _Parts(
        "numeric",
        _rate(rows - x.size, rows),
        _reference_missing(prof),
        outside,
        _numeric_psi(prof, x),
        test,
        source,
    )


def _categorical(
    prof: Mapping[str, Any],
    raw: pd.Series | None,
    live: pd.Series | None,
    rows: int,
    method: str | None,
) -> _Parts:
    if method in ("ks", "wasserstein"):
        raise InvalidInput(
            f"{method} compares numbers, but this column is categorical",
            hint="use chisquare, z or jensenshannon for categorical columns",
        )
    live_counts = _text_counts(live) if live is not None else _no_counts()
    present = int(live_counts.sum())
    top: dict[str, int] = prof.get("top", {})
    outside: float | None = None
    if present and top and prof.get("distinct", len(top)) <= len(top):
        unseen = live_counts[~live_counts.index.isin(list(top))]
        outside = float(unseen.sum() / present)
    ref_c, live_c = _align(_profile_counts(prof), _fold_other(live_counts, top))
    psi_value = psi(ref_c, live_c) if ref_c.sum() and live_c.sum() else None
    ref_counts = _text_counts(raw) if raw is not None else _no_counts()
    source = "sample"
    if ref_counts.sum() == 0:
        ref_counts, source = _profile_counts(prof), "profile"
    ref_c, live_c = _align(ref_counts, live_counts)
    return _Parts(
        "categorical",
        _rate(rows - present, rows),
        _reference_missing(prof),
        outside,
        psi_value,
        count_test(ref_c, live_c, method),
        source,
    )


def _numeric_test(ref: np.ndarray, x: np.ndarray, method: str | None) -> Test:
    if method is None:
        n_values = _distinct_together(ref, x)
        method = default_method(ref.size, n_values, numeric=True)
    if x.size == 0:
        return Test(method, None, None)
    if method == "ks":
        d, p = ks_test(ref, x, live_sorted=True)
        return Test(method, d, p)
    if method == "wasserstein":
        return Test(method, wasserstein_normed(ref, x), None)
    ref_c, live_c = _numeric_counts(ref, x)
    return count_test(ref_c, live_c, method)


def _profile_test(prof: Mapping[str, Any], x: np.ndarray, method: str | None) -> Test:
    """The test without the stored sample: on the profile's histogram.

    A two-valued reference is rebuilt exactly. Otherwise KS takes the largest gap at the
    histogram's edges, where the reference's CDF is known exactly (a lower bound of the
    statistic the sample would give, so it errs toward quiet), with Smirnov's asymptotic
    p-value; other methods run on a sample spread evenly within each bin.
    """
    two = _two_values(prof)
    if two is not None:
        return _numeric_test(np.repeat(np.array(list(two)), list(two.values())), x, method)
    hist: Mapping[str, Any] = prof.get("histogram") or {}
    n = int(sum(hist.get("counts", ())))
    if method is None:
        method = default_method(n, FEW_VALUES + 1, numeric=True)
    if n == 0 or x.size == 0:
        return Test(method, None, None)
    if method != "ks":
        return _numeric_test(_profile_sample(hist), x, method)
    edges = np.asarray(hist["edges"], dtype=np.float64)
    ref_below = np.concatenate((np.zeros(1), np.cumsum(hist["counts"])[:-1])) / n
    live_below = np.searchsorted(x, edges[:-1], "left") / x.size
    d = float(np.abs(ref_below - live_below).max())
    return Test("ks", d, float(stats.kstwo.sf(d, np.round(n * x.size / (n + x.size)))))


# -- helpers --------------------------------------------------------------------------------


def _numeric_psi(prof: Mapping[str, Any], x: np.ndarray) -> float | None:
    """PSI of sorted live values over the profile's bins (two values: per value)."""
    if x.size == 0:
        return None
    two = _two_values(prof)
    if two is not None:
        keys = np.array(list(two))
        ref_c = np.array(list(two.values()), dtype=np.float64)
        live_c = np.searchsorted(x, keys, "right") - np.searchsorted(x, keys, "left")
        return psi(np.append(ref_c, 0.0), np.append(live_c, x.size - live_c.sum()))
    hist = prof.get("histogram")
    if not hist:
        return None
    edges = np.asarray(hist["edges"], dtype=np.float64)
    # The outer bins are open-ended: below the first inner edge, at or above the last.
    cuts = np.searchsorted(x, edges[1:-1], "left")
    return psi(hist["counts"], np.diff(np.concatenate(([0], cuts, [x.size]))))


def _two_values(prof: Mapping[str, Any]) -> dict[float, int] | None:
    """Counts of a numeric reference that took at most two values (e.g. a 0/1 label).

    Its quantile histogram collapses to one bin, so the profile's mean gives the split.
    """
    if "min" not in prof:
        return None
    lo, hi = float(prof["min"]), float(prof["max"])
    seen = {lo, hi, *(float(v) for v in prof.get("quantiles", {}).values())}
    if len(seen) > 2:
        return None
    n = int(prof["count"]) - int(prof.get("missing", 0))
    high = round((float(prof["mean"]) - lo) / (hi - lo) * n) if hi > lo else 0
    return {lo: n - high, hi: high} if hi > lo else {lo: n}


def _profile_sample(hist: Mapping[str, Any]) -> np.ndarray:
    """A sample with the histogram's distribution: each bin's count spread evenly over it."""
    edges, counts = hist["edges"], hist["counts"]
    parts = [
        lo + (np.arange(c) + 0.5) * (hi - lo) / c
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        if c > 0
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def _numeric_counts(ref: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts per distinct value, or per Sturges bin when the reference has many values."""
    if np.unique(ref).size > CATEGORY_VALUES:
        edges = np.histogram_bin_edges(np.concatenate([ref, x]), bins="sturges")
        return np.histogram(ref, edges)[0], np.histogram(x, edges)[0]
    keys = np.union1d(np.unique(ref), np.unique(x))
    ref_c = np.bincount(np.searchsorted(keys, ref), minlength=keys.size)
    live_c = np.bincount(np.searchsorted(keys, x), minlength=keys.size)
    return ref_c, live_c


def _distinct_together(ref: np.ndarray, x: np.ndarray) -> int:
    """Distinct values of both samples, counted exactly only up to what the choice needs."""
    ref_values = np.unique(ref)
    if ref_values.size > FEW_VALUES:
        return int(ref_values.size)
    return int(np.union1d(ref_values, pd.unique(x)).size)


def _profile_counts(prof: Mapping[str, Any]) -> pd.Series:
    """A categorical profile's most frequent values, the rest under `OTHER`."""
    top = {str(k): int(v) for k, v in prof.get("top", {}).items()}
    rest = int(prof.get("count", 0)) - int(prof.get("missing", 0)) - sum(top.values())
    if rest > 0:
        top[OTHER] = rest
    return pd.Series(top, dtype=np.int64)


def _fold_other(counts: pd.Series, top: Mapping[str, int]) -> pd.Series:
    """Live counts over the profile's values, every other value under `OTHER`."""
    known = counts.index.isin(list(top))
    folded = counts[known]
    rest = int(counts[~known].sum())
    if rest:
        folded = pd.concat([folded, pd.Series({OTHER: rest}, dtype=np.int64)])
    return folded


def _align(ref: pd.Series, live: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Both count vectors over the union of their keys, in sorted key order."""
    keys = sorted(set(ref.index) | set(live.index))
    return (
        ref.reindex(keys, fill_value=0).to_numpy(dtype=np.float64),
        live.reindex(keys, fill_value=0).to_numpy(dtype=np.float64),
    )


def _no_counts() -> pd.Series:
    return pd.Series(dtype=np.int64)


def _text_counts(values: pd.Series) -> pd.Series:
    """Counts of the present values, keyed by their text (as the profile keys them)."""
    counts = values.value_counts(dropna=True)
    if counts.empty:
        return counts.astype(np.int64)
    counts.index = counts.index.map(str)
    return counts.groupby(level=0).sum().astype(np.int64)


def _floats(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(np.float64)
    numbers = pd.to_numeric(values, errors="coerce")
    return np.asarray(numbers.to_numpy(dtype=np.float64, na_value=np.nan))


def _raw(frame: pd.DataFrame | None, column: str) -> pd.Series | None:
    if frame is None or column not in frame.columns:
        return None
    return frame[column]


def _live(frame: pd.DataFrame, column: str) -> pd.Series | None:
    return frame[column] if column in frame.columns else None


def _reference_missing(prof: Mapping[str, Any]) -> float | None:
    return _rate(int(prof.get("missing", 0)), int(prof.get("count", 0)))


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
