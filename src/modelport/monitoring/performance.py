"""Model performance from delayed labels: classification and regression metrics.

Plain numpy and scipy (scikit-learn is optional here); each figure matches
scikit-learn's on the same rows. Classifier labels and predictions arrive as canonical
texts (`modelport.monitoring.records.label_text`), so ``1``, ``1.0`` and ``"1"`` agree.

Every result carries ``n``, the number of labelled predictions behind it, and a metric
that cannot be computed on those rows is None rather than a misleading number: ROC AUC
with one class only, precision when nothing was predicted positive, and so on.

- accuracy: share of predictions equal to the label;
- precision and recall: of the positive class (the version's last class, as
  scikit-learn's ``pos_label=1`` for 0/1) for binary classifiers; macro-averaged over
  the classes seen in labels or predictions for multiclass, classes where the figure is
  undefined left out (scikit-learn's ``zero_division=np.nan``);
- ROC AUC: binary from the positive class's probability (rank formula, ties averaged);
  multiclass one-vs-rest, macro-averaged over the classes present in the labels;
- log loss: natural log, probabilities clipped to [eps, 1 - eps] (machine epsilon);
- MAE and RMSE for regressors.

Rows whose label is not one of the version's classes count as wrong for accuracy and are
left out of ROC AUC and log loss, which need that class's probability.

Example::

    classification_metrics(["1", "0"], ["1", "1"], [[0.2, 0.8], [0.4, 0.6]], ["0", "1"])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

Metrics = dict[str, float | int | None]
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse")


def classification_metrics(
    labels: Sequence[str] | ArrayLike,
    predicted: Sequence[str] | ArrayLike,
    probabilities: ArrayLike | None = None,
    classes: Sequence[str] | None = None,
) -> Metrics:
    """Accuracy, precision, recall, ROC AUC and log loss of one classifier's predictions.

    ``probabilities`` (n x len(classes), columns in ``classes`` order) may be None, and
    then so are ROC AUC and log loss.
    """
    y = np.asarray(labels, dtype=object).astype(str)
    p = np.asarray(predicted, dtype=object).astype(str)
    n = int(y.size)
    result: Metrics = {"n": n, **dict.fromkeys(CLASSIFICATION_METRICS)}
    if n == 0:
        return result
    result["accuracy"] = float(np.mean(y == p))
    known = list(classes) if classes is not None else sorted(set(y) | set(p))
    if len(known) == 2:
        precision, recall = _binary_precision_recall(y, p, known[1])
    else:
        precision, recall = _macro_precision_recall(y, p)
    result["precision"], result["recall"] = precision, recall
    if probabilities is not None and classes is not None:
        proba = np.asarray(probabilities, dtype=np.float64).reshape(n, len(known))
        index = {c: i for i, c in enumerate(known)}
        keep = np.array([label in index for label in y])
        target = np.array([index[label] for label in y[keep]], dtype=np.int64)
        result["roc_auc"] = _roc_auc(target, proba[keep])
        result["log_loss"] = _log_loss(target, proba[keep])
    return result


def regression_metrics(labels: ArrayLike, predicted: ArrayLike) -> Metrics:
    """MAE and RMSE over the rows where both label and prediction are numbers."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(p)
    error = p[keep] - y[keep]
    n = int(error.size)
    if n == 0:
        return {"n": 0, "mae": None, "rmse": None}
    return {
        "n": n,
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
    }


def roc_auc(target: ArrayLike, score: ArrayLike) -> float | None:
    """Area under the ROC curve: the chance a positive outscores a negative (ties: half)."""
    y = np.asarray(target, dtype=bool)
    positives = int(y.sum())
    negatives = int(y.size) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _binary_precision_recall(
    y: np.ndarray, p: np.ndarray, positive: str
) -> tuple[float | None, float | None]:
    true_positive = int(np.count_nonzero((y == positive) & (p == positive)))
    predicted = int(np.count_nonzero(p == positive))
    actual = int(np.count_nonzero(y == positive))
    return _ratio(true_positive, predicted), _ratio(true_positive, actual)


def _macro_precision_recall(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    precisions: list[float] = []
    recalls: list[float] = []
    for label in sorted(set(y) | set(p)):
        precision, recall = _binary_precision_recall(y, p, label)
        if precision is not None:
            precisions.append(precision)
        if recall is not None:
            recalls.append(recall)
    return _mean(precisions), _mean(recalls)


def _roc_auc(target: np.ndarray, proba: np.ndarray) -> float | None:
    if proba.shape[1] == 2:
        return roc_auc(target == 1, proba[:, 1])
    scores = [roc_auc(target == k, proba[:, k]) for k in range(proba.shape[1])]
    return _mean([s for s in scores if s is not None])


def _log_loss(target: np.ndarray, proba: np.ndarray) -> float | None:
    if target.size == 0:
        return None
    eps = np.finfo(np.float64).eps
    chosen = np.clip(proba[np.arange(target.size), target], eps, 1 - eps)
    return float(-np.mean(np.log(chosen)))


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
