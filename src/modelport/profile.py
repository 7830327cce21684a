"""Reference profiles: a compact summary of the data a version was trained on.

Stored with each version at registration so drift can later be measured against
it: per column the type, count, missing rate, and for numbers quantiles and a
histogram over fixed bin edges (the edges are reused for live data); for strings
the most frequent values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

HISTOGRAM_BINS = 10
TOP_VALUES = 20
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _numeric_profile(values: pd.Series) -> dict[str, Any]:
    clean = values.dropna().astype(float).to_numpy()
    if clean.size == 0:
        return {"kind": "numeric"}
    qs = np.quantile(clean, QUANTILES)
    lo, hi = float(clean.min()), float(clean.max())
    edges = np.unique(np.quantile(clean, np.linspace(0, 1, HISTOGRAM_BINS + 1)))
    if edges.size < 2:
        edges = np.array([lo, hi if hi > lo else lo + 1.0])
    counts, _ = np.histogram(clean, bins=edges)
    return {
        "kind": "numeric",
        "min": lo,
        "max": hi,
        "mean": float(clean.mean()),
        "std": float(clean.std()),
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, qs, strict=True)},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def _categorical_profile(values: pd.Series) -> dict[str, Any]:
    counts = values.dropna().astype(str).value_counts()
    return {
        "kind": "categorical",
        "distinct": int(counts.size),
        "top": {str(k): int(v) for k, v in counts.head(TOP_VALUES).items()},
    }


def column_profile(values: pd.Series) -> dict[str, Any]:
    """Summary of one column."""
    import pandas as pd

    base = {"count": int(values.size), "missing": int(values.isna().sum())}
    is_numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    body = _numeric_profile(values) if is_numeric else _categorical_profile(values)
    return base | body


def compute_profile(frame: pd.DataFrame, outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Profile every input column and, when given, the model's outputs on the same rows."""
    import pandas as pd

    profile: dict[str, Any] = {
        "rows": int(len(frame)),
        "columns": {str(c): column_profile(frame[c]) for c in frame.columns},
    }
    if outputs:
        profile["outputs"] = {
            name: column_profile(pd.Series(np.asarray(values).tolist()))
            for name, values in outputs.items()
            if np.asarray(values).ndim == 1
        }
    return profile
