"""The runtime interface: how a model version is loaded and called.

A runtime is one small class per flavor: ``load`` an artifact, ``predict`` on a batch
of columns, ``unload``. Heavy libraries (scikit-learn, xgboost, onnxruntime, ...) are
imported inside ``load``/``save`` so that importing Modelport stays cheap and a flavor
costs nothing until it is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

from modelport.errors import ArtifactError, PredictionFailed, Unavailable
from modelport.signature import Columns, Signature, Table

if TYPE_CHECKING:
    import pandas as pd

Task = Literal["classification", "regression", "other"]


@dataclass(frozen=True)
class LoadContext:
    """What a runtime needs to load one version.

    ``trusted`` is True only when the version's registrant explicitly accepted that
    loading it runs code (pickle/joblib artifacts, custom Python classes).
    """

    path: Path
    signature: Signature | None = None
    trusted: bool = False
    num_threads: int = 1


@dataclass
class Prediction:
    """What a runtime returns for a batch.

    ``outputs`` maps output name -> array whose first axis is the batch; the first
    entry is the primary output (``label`` for classifiers, ``prediction`` for
    regressors). Classifiers also give ``probabilities`` (n_rows x n_classes) and
    ``classes`` in column order of the probabilities.
    """

    outputs: dict[str, np.ndarray]
    classes: list[Any] | None = None
    task: Task = "other"

    @property
    def primary(self) -> str:
        return next(iter(self.outputs))

    def __len__(self) -> int:
        return len(self.outputs[self.primary])


@dataclass
class SavedArtifact:
    """An artifact written by a flavor's ``save``: where it is and what trust it needs."""

    path: Path
    flavor: str
    needs_trust: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Runtime(Protocol):
    """Load, predict on a batch, unload. One implementation per flavor."""

    flavor: ClassVar[str]

    def load(self, ctx: LoadContext) -> None: ...

    def predict(self, columns: Columns) -> Prediction: ...

    def unload(self) -> None: ...


def as_frame(columns: Columns) -> pd.DataFrame:
    """Columns -> DataFrame, for libraries that want column names (sklearn pipelines).

    Columns of one numeric dtype become a single 2-D block, which pandas builds several
    times faster than a frame of separate columns.
    """
    import pandas as pd

    if isinstance(columns, Table):
        return pd.DataFrame(columns.matrix, columns=list(columns), copy=False)
    arrays = list(columns.values())
    dtype = arrays[0].dtype
    if dtype.kind in "fiub" and all(a.dtype == dtype for a in arrays):
        return pd.DataFrame(np.column_stack(arrays), columns=list(columns), copy=False)
    return pd.DataFrame(columns, copy=False)


def as_matrix(columns: Columns, dtype: Any = np.float32) -> np.ndarray:
    """Columns -> 2-D array (rows x columns) in signature order."""
    if isinstance(columns, Table):
        return columns.matrix.astype(dtype, copy=False)
    return np.column_stack([np.asarray(v, dtype=dtype) for v in columns.values()])


def classification(
    probabilities: Any, classes: Sequence[Any], labels: Any | None = None
) -> Prediction:
    """A classifier's `Prediction`; labels default to the most probable class of each row."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise PredictionFailed(
            f"model returned probabilities of shape {list(probs.shape)} "
            f"for {len(classes)} classes {list(classes)}"
        )
    if labels is None:
        labels = np.asarray(classes)[probs.argmax(axis=1)]
    return Prediction(
        outputs={"label": np.asarray(labels), "probabilities": probs},
        classes=python_scalars(classes),
        task="classification",
    )


def regression(values: Any) -> Prediction:
    """A regressor's `Prediction`: one float64 value per row (a ``(n, 1)`` result is flattened)."""
    out = np.asarray(values, dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    return Prediction(outputs={"prediction": out}, task="regression")


def python_scalars(values: Iterable[Any]) -> list[Any]:
    """numpy scalars -> plain Python values, so classes serialize to JSON as they are."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def artifact_error(path: Path, exc: BaseException) -> ArtifactError:
    """An unreadable artifact: name the file and the library's own complaint."""
    return ArtifactError(
        f"cannot load the artifact {path}: {type(exc).__name__}: {exc}",
        hint="check that the file is complete and was saved by a supported library version",
    )


def prediction_failed(exc: BaseException) -> PredictionFailed:
    """A model that raised while predicting: keep the library's message."""
    return PredictionFailed(f"model raised {type(exc).__name__}: {exc}")


def not_loaded(flavor: str) -> Unavailable:
    """`predict` before `load` (or after `unload`)."""
    return Unavailable(f"the {flavor} model is not loaded", hint="load the version first")
