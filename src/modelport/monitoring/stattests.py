"""The statistical tests drift uses, as Evidently picks them, and PSI.

`default_method` chooses by column type and reference size: with at most 1000
reference rows, two-sample Kolmogorov-Smirnov (numeric), chi-square on the two
samples' table of counts (categorical) or the two-proportion Z-test (two values),
drift when p < 0.05; with more, the Wasserstein distance normed by the reference's
standard deviation (numeric) or the Jensen-Shannon distance (categorical), drift when
>= 0.1. `psi` is the population stability index of two count vectors.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from scipy import stats
from scipy.spatial import distance

Method = Literal["ks", "wasserstein", "chisquare", "z", "jensenshannon"]
METHODS: tuple[str, ...] = get_args(Method)
#: Default threshold per method (Evidently's).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "jensenshannon": 0.1,
}
#: Methods whose score is a p-value: drift when it falls below the threshold.
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
#: Floor for a bin's share in PSI, so an empty bin adds a large but finite term.
PSI_EPSILON = 1e-4
SMALL_REFERENCE_ROWS = 1000
FEW_VALUES = 5
EXACT_KS_ROWS = 10_000


@dataclass(frozen=True)
class Test:
    method: str
    statistic: float | None
    p_value: float | None

    @property
    def score(self) -> float | None:
        return self.p_value if self.method in P_VALUE_METHODS else self.statistic


def default_method(reference_rows: int, n_values: int, *, numeric: bool) -> Method:
    """Evidently's default test for a column of this type and size.

    ``n_values`` counts the distinct values of reference and live data together.
    """
    if reference_rows <= SMALL_REFERENCE_ROWS:
        if numeric and n_values > FEW_VALUES:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if numeric and n_values > FEW_VALUES:
        return "wasserstein"
    return "jensenshannon"


def psi(expected: Any, actual: Any, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two count (or share) vectors over the same bins.

    Shares are floored at ``epsilon`` so an empty bin gives a finite value.

    >>> round(psi([50, 50], [25, 75]), 4)
    0.2747
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    p = np.clip(e / e.sum(), epsilon, None)
    q = np.clip(a / a.sum(), epsilon, None)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_test(
    reference: np.ndarray, live: np.ndarray, *, live_sorted: bool = False
) -> tuple[float, float]:
    """Two-sample KS statistic and p-value, as ``scipy.stats.ks_2samp`` gives them.

    Above 10,000 rows the statistic comes from `_ks_statistic` (one sort, then binary
    searches) and the p-value from Smirnov's asymptotic distribution, scipy's own choice
    at that size.
    """
    n1, n2 = reference.size, live.size
    if max(n1, n2) <= EXACT_KS_ROWS:
        with warnings.catch_warnings():
            # scipy warns when its exact method falls back to the asymptotic one.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ks_2samp(reference, live)
        return float(result.statistic), float(result.pvalue)
    d = _ks_statistic(reference, live, live_sorted)
    en = n1 * n2 / (n1 + n2)
    return d, float(stats.kstwo.sf(d, np.round(en)))


def _ks_statistic(a: np.ndarray, b: np.ndarray, b_sorted: bool = False) -> float:
    """sup |F_a - F_b|, evaluated at the distinct values of the smaller sample.

    Between two of those values the smaller sample's CDF is flat, so the gap is largest
    at one end: the value itself or just below it. Counting the larger sample's values
    at or below, and strictly below, each distinct value gives both ends exactly; with
    the larger sample sorted those counts are binary searches.
    """
    if a.size > b.size:
        a, b, b_sorted = b, a, False
    values, counts = np.unique(a, return_counts=True)
    fa_at = np.cumsum(counts) / a.size
    fa_below = np.concatenate(([0.0], fa_at[:-1]))
    big = b if b_sorted else np.sort(b)
    fb_at = np.searchsorted(big, values, "right") / b.size
    fb_below = np.searchsorted(big, values, "left") / b.size
    return float(max(np.abs(fa_at - fb_at).max(), np.abs(fa_below - fb_below).max()))


def wasserstein_normed(reference: np.ndarray, live: np.ndarray) -> float:
    """First Wasserstein distance over the reference's standard deviation (floor 0.001)."""
    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, live)) / norm


def count_test(ref_c: np.ndarray, live_c: np.ndarray, method: str | None) -> Test:
    """A categorical test on counts of the same keys in reference and live data."""
    n_ref, n_live = int(ref_c.sum()), int(live_c.sum())
    if method is None:
        n_values = int(np.count_nonzero(ref_c + live_c))
        method = default_method(n_ref, n_values, numeric=False)
    if n_ref == 0 or n_live == 0:
        return Test(method, None, None)
    if method == "z":
        return _z_test(ref_c, live_c)
    if method == "chisquare":
        return _chi_square(ref_c, live_c)
    value = distance.jensenshannon(ref_c / n_ref, live_c / n_live, base=2)
    return Test(method, float(value), None)


def _z_test(ref_c: np.ndarray, live_c: np.ndarray) -> Test:
    """Two-proportion Z-test on the share of the first value (the others pooled)."""
    n1, n2 = float(ref_c.sum()), float(live_c.sum())
    pooled = float(ref_c[0] + live_c[0]) / (n1 + n2)
    if pooled <= 0.0 or pooled >= 1.0:
        return Test("z", 0.0, 1.0)
    z = (ref_c[0] / n1 - live_c[0] / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return Test("z", float(z), float(2 * stats.norm.sf(abs(z))))


def _chi_square(ref_c: np.ndarray, live_c: np.ndarray) -> Test:
    """Chi-square test of homogeneity of the two samples' counts (a 2 x k table).

    Evidently fits the live counts to the reference's shares as if those were exact,
    which ignores the reference's own sampling noise: with many more live rows than
    reference rows it then flags unshifted data. The two-sample table counts both.
    """
    keep = (ref_c + live_c) > 0
    if np.count_nonzero(keep) < 2:
        return Test("chisquare", 0.0, 1.0)
    table = np.vstack([ref_c[keep], live_c[keep]])
    result = stats.chi2_contingency(table, correction=False)
    return Test("chisquare", float(result.statistic), float(result.pvalue))
