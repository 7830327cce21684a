"""Performance metrics agree with scikit-learn's on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from modelport.monitoring.performance import (
    classification_metrics,
    regression_metrics,
    roc_auc,
)


def probabilities(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    raw = rng.random((n, k)) ** 2
    return raw / raw.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ["0", "1"]
    proba = probabilities(rng, 500, 2)
    predicted = np.array(classes)[proba.argmax(axis=1)]
    # Labels agree with the model most of the time, so the metrics are not trivial.
    labels = np.where(rng.random(500) < 0.75, predicted, np.array(classes)[rng.integers(0, 2, 500)])
    got = classification_metrics(list(labels), list(predicted), proba, classes)
    assert got["n"] == 500
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert got["precision"] == pytest.approx(sk.precision_score(labels, predicted, pos_label="1"))
    assert got["recall"] == pytest.approx(sk.recall_score(labels, predicted, pos_label="1"))
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(labels == "1", proba[:, 1]))
    assert got["log_loss"] == pytest.approx(sk.log_loss(labels, proba, labels=classes))


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = ["bird", "cat", "dog", "fish"]
    proba = probabilities(rng, 800, 4)
    predicted = np.array(classes)[proba.argmax(axis=1)]
    labels = np.where(rng.random(800) < 0.6, predicted, np.array(classes)[rng.integers(0, 4, 800)])
    got = classification_metrics(list(labels), list(predicted), proba, classes)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert got["precision"] == pytest.approx(sk.precision_score(labels, predicted, average="macro"))
    assert got["recall"] == pytest.approx(sk.recall_score(labels, predicted, average="macro"))
    assert got["roc_auc"] == pytest.approx(
        sk.roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=classes)
    )
    assert got["log_loss"] == pytest.approx(sk.log_loss(labels, proba, labels=classes))


def test_macro_precision_leaves_out_classes_never_predicted() -> None:
    labels = ["a", "b", "c", "c"]
    predicted = ["a", "a", "c", "b"]
    got = classification_metrics(labels, predicted, classes=["a", "b", "c"])
    expected = sk.precision_score(labels, predicted, average="macro", zero_division=np.nan)
    assert got["precision"] == pytest.approx(expected)
    assert got["roc_auc"] is None and got["log_loss"] is None


def test_roc_auc_with_ties_matches_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    target = rng.random(300) < 0.3
    score = np.round(rng.random(300), 1)
    assert roc_auc(target, score) == pytest.approx(sk.roc_auc_score(target, score))


def test_metrics_that_cannot_be_computed_are_none() -> None:
    one_class = classification_metrics(["1", "1"], ["1", "0"], [[0.2, 0.8], [0.6, 0.4]], ["0", "1"])
    assert one_class["roc_auc"] is None and one_class["accuracy"] == 0.5
    assert one_class["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)
    nothing_positive = classification_metrics(["1", "0"], ["0", "0"], classes=["0", "1"])
    assert nothing_positive["precision"] is None and nothing_positive["recall"] == 0.0
    empty = classification_metrics([], [], classes=["0", "1"])
    assert empty == {
        "n": 0,
        "accuracy": None,
        "precision": None,
        "recall": None,
        "roc_auc": None,
        "log_loss": None,
    }
    assert regression_metrics([], []) == {"n": 0, "mae": None, "rmse": None}


def test_log_loss_clips_certain_mistakes() -> None:
    got = classification_metrics(["1"], ["0"], [[1.0, 0.0]], ["0", "1"])
    assert got["log_loss"] == pytest.approx(sk.log_loss(["1"], [[1.0, 0.0]], labels=["0", "1"]))


def test_labels_outside_the_classes_count_as_wrong_and_skip_probabilities() -> None:
    got = classification_metrics(
        ["1", "0", "maybe"], ["1", "0", "1"], [[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]], ["0", "1"]
    )
    assert got["n"] == 3 and got["accuracy"] == pytest.approx(2 / 3)
    assert got["roc_auc"] == 1.0
    assert got["log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.7)) / 2)


def test_regression_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(4)
    labels = rng.normal(size=400)
    predicted = labels + rng.normal(scale=0.3, size=400)
    got = regression_metrics(list(labels), list(predicted))
    assert got["n"] == 400
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(labels, predicted))
    assert got["rmse"] == pytest.approx(sk.root_mean_squared_error(labels, predicted))


def test_regression_skips_rows_without_a_numeric_label() -> None:
    got = regression_metrics([1.0, float("nan"), 3.0], [2.0, 5.0, 3.0])
    assert got == {"n": 2, "mae": 0.5, "rmse": pytest.approx(np.sqrt(0.5))}
