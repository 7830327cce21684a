"""A candidate's answers beside the live answers to the same requests.

Two sources of pairs, one comparison:

- `compare_logged`: a shadow variant's rows in the prediction log, each joined (one
  DuckDB join) to the live row with the same ``prediction_id`` (`modelport.serving.shadow`
  logs a shadow's answer under the live request's ids);
- `compare_frames`: any two aligned frames, e.g. logged answers and a replay's
  (`modelport.replay`).

What a `Comparison` says, over the rows the candidate answered (``pairs``):

- classifiers (both sides log ``out_label``): ``agreement``, the share of pairs whose
  predicted labels are equal as canonical texts (`label_text`: ``1``, ``1.0`` and
  ``"1"`` agree), and ``probability_mad``, the mean absolute difference of the
  probabilities over pairs and classes (when both sides log them with the same number
  of classes; compared by position);
- regressors (both log ``out_prediction``): the difference ``candidate - live``: its
  mean, the mean, p50, p90, p99 and max of its absolute value (over pairs where both
  are finite);
- ``disagreement``: ``1 - agreement`` for classifiers; for regressors the share of
  pairs that differ by more than ``tolerance * max(1, |live|)`` (relative to the live
  value, absolute below 1, as compiled models are verified; NaN on both sides agrees,
  on one side only disagrees); None for other tasks or without pairs;
- latency p50 and p99 of each side, over rows (a logged row carries its request's
  latency), the candidate's over the rows it answered;
- ``failures``: candidate rows that failed (a shadow's error is logged with status =
  its error code), and ``candidate_error_rate = failures / (pairs + failures)``.

The task is read from the logged outputs as label performance reads it
(`modelport.monitoring.labels`).

Example::

    store = LogStore(settings)
    c = compare_logged(store, "fraud", "fraud-v4", since=datetime.now(UTC) - timedelta(hours=1))
    c.pairs, c.disagreement, c.candidate_error_rate, c.candidate_p99_s
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.monitoring.labels import _task
from modelport.monitoring.logstore import LogStore, quote
from modelport.monitoring.records import OK, label_text

if TYPE_CHECKING:
    import pandas as pd

    from modelport.registry import Registry

#: Default of ``tolerance``: regressors' answers closer than this (relative) agree.
DEFAULT_TOLERANCE = 1e-6
#: The outputs a comparison reads.
LABEL, PROBABILITIES, PREDICTION = "out_label", "out_probabilities", "out_prediction"
OUTPUT_COLUMNS = (LABEL, PROBABILITIES, PREDICTION)
#: How long after its live row a shadow row may be logged and still be found.
SHADOW_LAG = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Comparison:
    """How a candidate's answers differ from the live ones (module docstring).

    Figures that cannot be computed (no pairs, not that task) are None.
    """

    task: str
    pairs: int
    failures: int
    disagreement: float | None
    candidate_error_rate: float | None
    agreement: float | None = None
    probability_mad: float | None = None
    mean_difference: float | None = None
    mean_abs_difference: float | None = None
    abs_difference_p50: float | None = None
    abs_difference_p90: float | None = None
    abs_difference_p99: float | None = None
    max_abs_difference: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    live_p50_s: float | None = None
    live_p99_s: float | None = None
    candidate_p50_s: float | None = None
    candidate_p99_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_frames(
    live: pd.DataFrame, candidate: pd.DataFrame, *, tolerance: float = DEFAULT_TOLERANCE
) -> Comparison:
    """Compare aligned rows: row i of ``candidate`` answered the request of row i of ``live``.

    Both hold ``out_*`` columns and ``latency_s`` (either may be missing: no latency);
    ``candidate`` may hold ``status`` (rows other than ``ok`` failed).
    """
    if len(live) != len(candidate):
        raise ValueError(f"{len(live)} live rows but {len(candidate)} candidate rows")
    if "status" in candidate.columns:
        answered = (candidate["status"] == OK).to_numpy(dtype=bool)
    else:
        answered = np.ones(len(candidate), dtype=bool)
    pairs = int(answered.sum())
    failures = len(candidate) - pairs
    live, candidate = live[answered], candidate[answered]
    task = _task(None, live) if pairs else "other"
    if task != _task(None, candidate):
        task = "other"
    figures: dict[str, Any] = {}
    if task == "classification":
        figures = _classification(live, candidate)
    elif task == "regression":
        figures = _regression(live[PREDICTION], candidate[PREDICTION], tolerance)
    live_p50, live_p99 = _latency(live)
    candidate_p50, candidate_p99 = _latency(candidate)
    total = pairs + failures
    return Comparison(
        task=task,
        pairs=pairs,
        failures=failures,
        disagreement=figures.pop("disagreement", None),
        candidate_error_rate=failures / total if total else None,
        tolerance=tolerance,
        live_p50_s=live_p50,
        live_p99_s=live_p99,
        candidate_p50_s=candidate_p50,
        candidate_p99_s=candidate_p99,
        **figures,
    )


def _classification(live: pd.DataFrame, candidate: pd.DataFrame) -> dict[str, Any]:
    same = _same_labels(live[LABEL].to_numpy(), candidate[LABEL].to_numpy())
    agreement = float(same.mean())
    figures: dict[str, Any] = {"agreement": agreement, "disagreement": 1.0 - agreement}
    if PROBABILITIES in live.columns and PROBABILITIES in candidate.columns:
        a, b = _matrix(live[PROBABILITIES]), _matrix(candidate[PROBABILITIES])
        if a is not None and b is not None and a.shape == b.shape:
            figures["probability_mad"] = float(np.mean(np.abs(a - b)))
    return figures


def _same_labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each pair of labels is equal as canonical texts; numbers on both sides
    compare as numbers (the same result, without a text per row)."""
    if a.dtype.kind in "iuf" and b.dtype.kind in "iuf":
        return np.asarray(a.astype(np.float64) == b.astype(np.float64))
    texts = [np.array([label_text(v) for v in side], dtype=object) for side in (a, b)]
    return np.asarray(texts[0] == texts[1], dtype=bool)


def _matrix(values: pd.Series) -> np.ndarray | None:
    """A list column as a rows x classes matrix; None when a row lacks it or differs."""
    rows = values.tolist()
    if not rows or any(r is None or not hasattr(r, "__len__") for r in rows):
        return None
    if len({len(r) for r in rows}) != 1:
        return None
    return np.asarray([np.asarray(r, dtype=np.float64) for r in rows])


def _regression(live: pd.Series, candidate: pd.Series, tolerance: float) -> dict[str, Any]:
    x = live.to_numpy(dtype=np.float64, na_value=np.nan)
    y = candidate.to_numpy(dtype=np.float64, na_value=np.nan)
    both_nan = np.isnan(x) & np.isnan(y)
    finite = np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore"):
        difference = y - x
        close = np.abs(difference) <= tolerance * np.maximum(1.0, np.abs(x))
    figures: dict[str, Any] = {"disagreement": float(np.mean(~(both_nan | (finite & close))))}
    if finite.any():
        d = difference[finite]
        absolute = np.abs(d)
        p50, p90, p99 = np.quantile(absolute, [0.5, 0.9, 0.99])
        figures |= {
            "mean_difference": float(d.mean()),
            "mean_abs_difference": float(absolute.mean()),
            "abs_difference_p50": float(p50),
            "abs_difference_p90": float(p90),
            "abs_difference_p99": float(p99),
            "max_abs_difference": float(absolute.max()),
        }
    return figures


def _latency(frame: pd.DataFrame) -> tuple[float | None, float | None]:
    if "latency_s" not in frame.columns:
        return None, None
    seconds = frame["latency_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    seconds = seconds[np.isfinite(seconds)]
    if not seconds.size:
        return None, None
    p50, p99 = np.quantile(seconds, [0.5, 0.99])
    return float(p50), float(p99)


# -- from the prediction log ------------------------------------------------------------


def logged_source(store: LogStore, endpoint: str, since: dt.datetime, until: dt.datetime) -> str:
    """SQL (a SELECT) for the rows of ``endpoint`` in the day partitions of [since, until]."""
    last = _utc(until).date().isoformat()
    days = [d for d in store._days(endpoint, since) if d <= last]
    return store._predictions(endpoint, days)


def present_columns(con: Any, source: str) -> set[str]:
    """The columns the segments of ``source`` have (the base columns at least).

    ``shadow`` counts only as a boolean: the view of an empty log types it otherwise.
    """
    rows = con.sql(f"DESCRIBE {source}").fetchall()
    return {str(r[0]) for r in rows if r[0] != "shadow" or str(r[1]).upper() == "BOOLEAN"}


def live_condition(columns: set[str]) -> str:
    """SQL true for a live (not shadow) row; segments without the column are all live."""
    return "NOT coalesce(shadow, false)" if "shadow" in columns else "true"


def compare_logged(
    store: LogStore,
    endpoint: str,
    candidate: str,
    *,
    since: dt.datetime,
    until: dt.datetime | None = None,
    environment: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Comparison:
    """Compare the shadow variant ``candidate`` (``fraud-v4``) of ``endpoint`` with the
    live answers to the same requests, answered in [since, until) (until: now).

    Pairs each shadow row of ``candidate`` with the live row (answered, not shadow) of
    the same ``prediction_id`` and environment (``environment`` only, when given);
    failed shadow rows count in ``candidate_error_rate``.
    """
    import duckdb

    until = until or dt.datetime.now(dt.UTC)
    source = logged_source(store, endpoint, since, until + SHADOW_LAG)
    with duckdb.connect() as con:
        present = present_columns(con, source)
        if "shadow" not in present:  # nothing was logged by a shadow
            return compare_frames(_empty(), _empty(), tolerance=tolerance)
        outputs = [c for c in OUTPUT_COLUMNS if c in present]
        picked = ", ".join(
            quote(c) for c in ["prediction_id", "environment", "shadow", "status", "latency_s"]
        )
        picked += "".join(f", {quote(c)}" for c in outputs)
        where = ["ts >= $since", "ts < $end"]
        params: dict[str, Any] = {
            "since": _utc(since),
            "until": _utc(until),
            "end": _utc(until + SHADOW_LAG),
            "candidate": candidate,
            "ok": OK,
        }
        if environment is not None:
            where.append("environment = $environment")
            params["environment"] = environment
        sides = [
            f"l.{quote(c)} AS {quote('live_' + c)}, c.{quote(c)} AS {quote('cand_' + c)}"
            for c in ["latency_s", *outputs]
        ]
        sql = (
            f"WITH r AS (SELECT {picked} FROM ({source}) WHERE {' AND '.join(where)} AND "
            "((NOT coalesce(shadow, false) AND status = $ok AND ts < $until) "
            "OR (shadow AND variant = $candidate))) "
            f"SELECT {', '.join(sides)}, c.status AS cand_status FROM r l JOIN r c "
            "ON l.prediction_id = c.prediction_id AND l.environment = c.environment "
            "WHERE NOT coalesce(l.shadow, false) AND c.shadow"
        )
        frame = fetch_frame(con, sql, params)
    live = _side(frame, "live_")
    shadow = _side(frame, "cand_")
    return compare_frames(live, shadow, tolerance=tolerance)


def fetch_frame(con: Any, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    """The result as a frame of NumPy columns (numbers with nulls as float NaN, lists
    as arrays), through Arrow."""
    frame: pd.DataFrame = con.sql(sql, params=params).to_arrow_table().to_pandas()
    return frame


def _side(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    names = [c for c in frame.columns if c.startswith(prefix)]
    return frame[names].rename(columns=lambda c: c.removeprefix(prefix))


def _empty() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"latency_s": np.zeros(0)})


def shadow_report(
    store: LogStore,
    registry: Registry,
    endpoint: str,
    *,
    environment: str,
    since: dt.datetime,
    until: dt.datetime | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """One comparison per shadow variant ``endpoint`` serves now in ``environment``.

    Raises `NotFound` when the endpoint is not deployed there.
    """
    until = until or dt.datetime.now(dt.UTC)
    spec = registry.get_deployment(environment, endpoint).spec
    shadows = []
    for variant in spec.shadows:
        comparison = compare_logged(
            store,
            endpoint,
            variant.name,
            since=since,
            until=until,
            environment=environment,
            tolerance=tolerance,
        )
        shadows.append({"variant": variant.name, "uri": variant.uri, **comparison.to_dict()})
    return {
        "endpoint": endpoint,
        "environment": environment,
        "since": _utc(since).isoformat(),
        "until": _utc(until).isoformat(),
        "live": [v.uri for v in spec.live],
        "shadows": shadows,
    }


def _utc(value: dt.datetime) -> dt.datetime:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
