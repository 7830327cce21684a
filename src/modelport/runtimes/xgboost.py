"""XGBoost runtime: a native ``.ubj`` or ``.json`` model loaded into a `Booster`.

The native formats hold no code, so they never need trust. The task comes from the
objective saved in the model: ``binary:*`` is a two-class classifier (classes ``[0, 1]``),
``multi:*`` a classifier over ``num_class`` classes, anything else a regressor.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from modelport.errors import PredictionFailed
from modelport.runtimes.base import (
    LoadContext,
    Prediction,
    Task,
    artifact_error,
    as_matrix,
    classification,
    not_loaded,
    prediction_failed,
    regression,
)
from modelport.signature import Columns


class XGBoostRuntime:
    """A `xgboost.Booster` from a native model file."""

    flavor: ClassVar[str] = "xgboost"

    def __init__(self) -> None:
        self.booster: Any = None
        self.objective = ""
        self.num_features = 0
        self.num_threads = 1
        self.task: Task = "other"
        self.classes: list[Any] | None = None

    def load(self, ctx: LoadContext) -> None:
        import xgboost

        try:
            booster = xgboost.Booster(params={"nthread": ctx.num_threads}, model_file=ctx.path)
            learner = json.loads(booster.save_config())["learner"]
        except Exception as exc:
            raise artifact_error(ctx.path, exc) from exc
        self.objective = str(learner["objective"]["name"])
        self.num_features = int(learner["learner_model_param"]["num_feature"])
        if self.objective.startswith("binary:"):
            self.task, self.classes = "classification", [0, 1]
        elif self.objective.startswith("multi:"):
            num_class = int(learner["learner_model_param"]["num_class"])
            self.task, self.classes = "classification", list(range(num_class))
        else:
            self.task, self.classes = "regression", None
        self.booster, self.num_threads = booster, ctx.num_threads

    def predict(self, columns: Columns) -> Prediction:
        import xgboost

        booster = self.booster
        if booster is None:
            raise not_loaded(self.flavor)
        names = list(columns)
        if len(names) != self.num_features:
            # XGBoost would read absent trailing features as missing values, silently.
            raise PredictionFailed(
                f"the model was trained on {self.num_features} features, got {len(names)} "
                f"columns {names}",
                hint="the version's signature must list the model's features",
            )
        # Names are checked only when the booster was trained with the same ones.
        matching = booster.feature_names == names
        try:
            data = xgboost.DMatrix(
                as_matrix(columns, np.float32),
                feature_names=names if matching else None,
                nthread=self.num_threads,
            )
            return self._predict(booster, data, validate=matching)
        except Exception as exc:
            raise prediction_failed(exc) from exc

    def _predict(self, booster: Any, data: Any, *, validate: bool) -> Prediction:
        if self.classes is None:
            return regression(booster.predict(data, validate_features=validate))
        if self.objective in ("binary:logitraw", "multi:softmax"):
            # These objectives predict margins or labels; probabilities come from the margin.
            margin = booster.predict(data, output_margin=True, validate_features=validate)
            return classification(_probabilities(np.asarray(margin, np.float64)), self.classes)
        values = np.asarray(booster.predict(data, validate_features=validate), np.float64)
        if values.ndim == 1:
            values = np.column_stack([1.0 - values, values])
        return classification(values, self.classes)

    def unload(self) -> None:
        self.booster = None


def _probabilities(margin: np.ndarray) -> np.ndarray:
    if margin.ndim == 1:
        p = 1.0 / (1.0 + np.exp(-margin))
        return np.column_stack([1.0 - p, p])
    shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
