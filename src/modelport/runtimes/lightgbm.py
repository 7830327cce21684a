"""LightGBM runtime: a native text model loaded into a `lightgbm.Booster`.

The text format holds no code, so it never needs trust. The task comes from the saved
objective: ``binary`` is a two-class classifier (classes ``[0, 1]``), ``multiclass`` /
``multiclassova`` a classifier over ``num_class`` classes, anything else a regressor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

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

MULTICLASS_OBJECTIVES = frozenset({"multiclass", "softmax", "multiclassova", "multiclass_ova"})

#: Markers every complete model file has (LightGBM >= 3 writes both).
END_MARKERS = ("end of trees", "end of parameters")


def read_model_text(path: Path) -> str:
    """The model file's text, refused if it is truncated or holds NUL bytes.

    LightGBM 4 hangs on a NUL byte and crashes the process (SIGSEGV/abort) on a file cut
    short, so such files never reach it.
    """
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError("the file holds NUL bytes; a LightGBM text model never does")
    text = data.decode("utf-8")
    missing = [m for m in END_MARKERS if m not in text]
    if missing:
        raise ValueError(f"the file is truncated or not a LightGBM text model: no {missing}")
    return text


class LightGBMRuntime:
    """A `lightgbm.Booster` from a native model file."""

    flavor: ClassVar[str] = "lightgbm"

    def __init__(self) -> None:
        self.booster: Any = None
        self.num_threads = 1
        self.task: Task = "other"
        self.classes: list[Any] | None = None

    def load(self, ctx: LoadContext) -> None:
        import lightgbm

        try:
            booster = lightgbm.Booster(model_str=read_model_text(ctx.path))
        except Exception as exc:
            raise artifact_error(ctx.path, exc) from exc
        # The saved objective reads e.g. "multiclass num_class:3"; its first word names it.
        objective = str(booster.params.get("objective", "")).split(" ")[0]
        if objective == "binary":
            self.task, self.classes = "classification", [0, 1]
        elif objective in MULTICLASS_OBJECTIVES:
            self.task = "classification"
            self.classes = list(range(booster.num_model_per_iteration()))
        else:
            self.task, self.classes = "regression", None
        # Threads are a prediction parameter: the Booster ignores params given with a file.
        self.booster, self.num_threads = booster, ctx.num_threads

    def predict(self, columns: Columns) -> Prediction:
        booster = self.booster
        if booster is None:
            raise not_loaded(self.flavor)
        try:
            values = booster.predict(as_matrix(columns, np.float64), num_threads=self.num_threads)
        except Exception as exc:
            raise prediction_failed(exc) from exc
        if self.classes is None:
            return regression(values)
        probs = np.asarray(values, np.float64)
        if probs.ndim == 1:
            probs = np.column_stack([1.0 - probs, probs])
        return classification(probs, self.classes)

    def unload(self) -> None:
        self.booster = None
