"""Comparing a candidate's answers with the live ones: aligned frames, logged shadows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.errors import PredictionFailed
from modelport.monitoring.comparison import Comparison, compare_frames, compare_logged
from modelport.monitoring.logstore import LogStore
from modelport.monitoring.logwriter import PredictionLog
from modelport.monitoring.records import new_prediction_ids
from modelport.runtimes.base import Prediction, classification
from modelport.settings import Settings
from modelport.signature import Table
from tests.unit.monitoring.test_logwriter import make_version


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", log_sample_rate=1.0)


def test_classifier_label_agreement_probabilities_and_latency() -> None:
    live = pd.DataFrame(
        {
            "out_label": [0, 1, 1, 0],
            "out_probabilities": [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]],
            "latency_s": [0.001, 0.002, 0.003, 0.004],
        }
    )
    candidate = pd.DataFrame(
        {
            "out_label": [0, 1, 0, 0],
            "out_probabilities": [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.6, 0.4]],
            "latency_s": [0.01, 0.01, 0.01, 0.01],
            "status": ["ok"] * 4,
        }
    )
    c = compare_frames(live, candidate)
    assert c.task == "classification" and c.pairs == 4 and c.failures == 0
    assert c.agreement == 0.75 and c.disagreement == 0.25
    assert c.probability_mad == pytest.approx(0.4 / 8)  # 0.2 + 0.2 over 4 rows x 2 classes
    assert c.candidate_error_rate == 0.0
    assert c.live_p50_s == pytest.approx(0.0025) and c.candidate_p99_s == pytest.approx(0.01)
    assert c.mean_abs_difference is None
    assert c.to_dict()["disagreement"] == 0.25


def test_labels_compare_as_canonical_texts() -> None:
    live = pd.DataFrame({"out_label": [1, 0, 1]})
    candidate = pd.DataFrame({"out_label": ["1", "0", "0"]})
    c = compare_frames(live, candidate)
    assert c.agreement == pytest.approx(2 / 3)
    assert c.probability_mad is None and c.live_p99_s is None


def test_regressor_difference_distribution_and_tolerance() -> None:
    live = pd.DataFrame({"out_prediction": [1.0, 2.0, 3.0, 100.0, 5.0], "latency_s": 0.001})
    candidate = pd.DataFrame(
        {
            "out_prediction": [1.0, 2.5, 3.0 + 1e-7, 100.00005, np.nan],
            "latency_s": 0.002,
            "status": ["ok", "ok", "ok", "ok", "prediction_failed"],
        }
    )
    c = compare_frames(live, candidate)
    assert c.task == "regression" and c.pairs == 4 and c.failures == 1
    assert c.candidate_error_rate == pytest.approx(1 / 5)
    # 0.5 is over 1e-6 * max(1, 2); 1e-7 and 5e-5 are within 1e-6 * max(1, |live|)
    assert c.disagreement == 0.25 and c.agreement is None
    assert c.max_abs_difference == pytest.approx(0.5)
    assert c.mean_difference == pytest.approx((0.5 + 1e-7 + 5e-5) / 4)
    assert c.mean_abs_difference == pytest.approx((0.5 + 1e-7 + 5e-5) / 4)
    assert c.abs_difference_p50 == pytest.approx((1e-7 + 5e-5) / 2)
    p50, p90, p99 = c.abs_difference_p50, c.abs_difference_p90, c.abs_difference_p99
    assert p50 is not None and p90 is not None and p99 is not None
    assert p50 <= p90 <= p99 <= 0.5
    loose = compare_frames(live, candidate, tolerance=0.5)
    assert loose.disagreement == 0.0 and loose.tolerance == 0.5


def test_nothing_to_compare_is_none_not_zero() -> None:
    empty = pd.DataFrame({"out_label": pd.Series([], dtype=object), "latency_s": []})
    c = compare_frames(empty, empty.assign(status=pd.Series([], dtype=object)))
    assert c == Comparison(
        task="other", pairs=0, failures=0, disagreement=None, candidate_error_rate=None
    )
    failed = compare_frames(
        pd.DataFrame({"out_label": [1]}), pd.DataFrame({"out_label": [None], "status": ["x"]})
    )
    assert failed.pairs == 0 and failed.candidate_error_rate == 1.0
    assert failed.disagreement is None
    with pytest.raises(ValueError, match="2 live rows but 1"):
        compare_frames(pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1]}))


def _request(rows: int, flip: int = 0) -> tuple[Table, Prediction, Prediction]:
    """A request, the live (v1) answer and the shadow (v2) answer, ``flip`` rows apart."""
    columns = Table(["a", "b"], np.arange(rows * 2, dtype=np.float64).reshape(rows, 2))
    live = np.column_stack([np.full(rows, 0.25), np.full(rows, 0.75)])
    shadow = live.copy()
    shadow[:flip] = [0.8, 0.2]
    return columns, classification(live, [0, 1]), classification(shadow, [0, 1])


def test_logged_shadow_rows_pair_with_live_rows_by_prediction_id(settings: Settings) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    v1, v2 = make_version(version=1), make_version(version=2)
    log = PredictionLog(settings, "production")
    for flip in (1, 0, 2):  # 3 requests of 4 rows: 3 of 12 rows disagree
        columns, live, shadow = _request(4, flip)
        ids = new_prediction_ids(4)
        log.record("clf", v1, "clf-v1", ids, columns, live, 0.002)
        log.record("clf", v2, "clf-v2", ids, columns, shadow, 0.01, shadow=True)
    columns, live, _ = _request(2)
    failed_ids = new_prediction_ids(2)
    log.record("clf", v1, "clf-v1", failed_ids, columns, live, 0.002)
    log.record_failure(
        "clf",
        PredictionFailed("boom"),
        version=v2,
        columns=columns,
        latency_s=0.5,
        prediction_ids=failed_ids,
        shadow=True,
    )
    lone = new_prediction_ids(3)  # live rows without a shadow copy (shed): not paired
    log.record("clf", v1, "clf-v1", lone, *_request(3)[:2], 0.002)
    log.close()
    staging = PredictionLog(settings, "staging")  # another environment, same ids
    columns, live, shadow = _request(4, 4)
    ids = new_prediction_ids(4)
    staging.record("clf", v1, "clf-v1", ids, columns, live, 0.002)
    staging.record("clf", v2, "clf-v2", ids, columns, shadow, 0.01, shadow=True)
    staging.close()
    store = LogStore(settings)

    c = compare_logged(store, "clf", "clf-v2", since=start, environment="production")
    assert c.task == "classification"
    assert c.pairs == 12 and c.failures == 2
    assert c.disagreement == pytest.approx(3 / 12)
    assert c.candidate_error_rate == pytest.approx(2 / 14)
    assert c.live_p99_s == pytest.approx(0.002) and c.candidate_p99_s == pytest.approx(0.01)
    assert c.probability_mad == pytest.approx(3 * 2 * 0.55 / (12 * 2))

    everywhere = compare_logged(store, "clf", "clf-v2", since=start)
    assert everywhere.pairs == 16 and everywhere.disagreement == pytest.approx(7 / 16)
    assert compare_logged(store, "clf", "clf-v9", since=start).pairs == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert compare_logged(store, "clf", "clf-v2", since=later).pairs == 0
    before = compare_logged(
        store, "clf", "clf-v2", since=start - dt.timedelta(hours=1), until=start
    )
    assert before.pairs == 0 and before.disagreement is None


def test_an_empty_log_compares_nothing(settings: Settings) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    c = compare_logged(LogStore(settings), "clf", "clf-v2", since=since)
    assert c.pairs == 0 and c.disagreement is None and c.candidate_error_rate is None
