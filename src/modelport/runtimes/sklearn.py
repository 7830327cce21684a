"""scikit-learn runtime: skops artifacts by default, pickle/joblib only when trusted.

A ``.skops`` file is loaded without running code: types from scikit-learn, numpy,
scipy, the standard containers and the boosting libraries are accepted; any other type
needs the version to be trusted. A pickle (``.joblib``, ``.pkl``, ``.pickle``) runs
arbitrary code when loaded, so it is refused unless trusted.

Example::

    runtime = SklearnRuntime()
    runtime.load(LoadContext(path=Path("model.skops")))
    runtime.predict({"a": np.array([0.1]), "b": np.array([2.0])})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from modelport.errors import ArtifactError, UntrustedArtifact
from modelport.runtimes.base import (
    LoadContext,
    Prediction,
    Task,
    artifact_error,
    as_frame,
    as_matrix,
    classification,
    not_loaded,
    prediction_failed,
    python_scalars,
    regression,
)
from modelport.signature import Columns

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")

#: Modules whose types a skops file may hold without the version being trusted.
SAFE_PREFIXES = (
    "sklearn.",
    "numpy.",
    "scipy.",
    "builtins.",
    "collections.",
    "xgboost.",
    "lightgbm.",
)

#: Builtins that would hand code execution or file access to a crafted file.
UNSAFE_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in (
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
    )
)


def untrusted_types(path: Path) -> list[str]:
    """Types in a skops file that are outside the libraries Modelport accepts on its own."""
    return [t for t in _skops_types(path) if not _is_safe(t)]


def _is_safe(type_name: str) -> bool:
    return type_name.startswith(SAFE_PREFIXES) and type_name not in UNSAFE_BUILTINS


def _skops_types(path: Path) -> list[str]:
    """Every type skops would not load by default (its own allowlist is smaller than ours)."""
    import skops.io

    try:
        return list(skops.io.get_untrusted_types(file=path))
    except Exception as exc:
        raise artifact_error(path, exc) from exc


class SklearnRuntime:
    """Any fitted scikit-learn estimator or pipeline (or one with the same API)."""

    flavor: ClassVar[str] = "sklearn"

    def __init__(self) -> None:
        self.model: Any = None
        self.wants_frame = False
        self.task: Task = "other"
        self.classes: list[Any] | None = None

    def load(self, ctx: LoadContext) -> None:
        from sklearn.base import is_classifier

        if ctx.path.suffix.lower() in PICKLE_SUFFIXES:
            model = _load_pickle(ctx)
        else:
            model = _load_skops(ctx)
        if not callable(getattr(model, "predict", None)):
            raise ArtifactError(
                f"{ctx.path} holds a {type(model).__name__}, which has no predict method",
                hint="save the fitted estimator or pipeline itself",
            )
        if is_classifier(model):
            self.task = "classification"
            self.classes = python_scalars(model.classes_)
        else:
            self.task, self.classes = "regression", None
        self.model, self.wants_frame = model, bool(_fitted_on_frame(model))

    def predict(self, columns: Columns) -> Prediction:
        model = self.model
        if model is None:
            raise not_loaded(self.flavor)
        # A model fitted on a DataFrame warns when given a bare matrix, and vice versa.
        features = as_frame(columns) if self.wants_frame else as_matrix(columns, dtype=None)
        try:
            if self.classes is None:
                return regression(model.predict(features))
            if not hasattr(model, "predict_proba"):
                return Prediction(
                    outputs={"label": model.predict(features)},
                    classes=self.classes,
                    task="classification",
                )
            # One pass through the model: the label is the most probable class, as for
            # every other flavor (scikit-learn's own predict takes a second pass).
            return classification(model.predict_proba(features), self.classes)
        except Exception as exc:
            raise prediction_failed(exc) from exc

    def unload(self) -> None:
        self.model = None


def _fitted_on_frame(model: Any) -> bool | None:
    """Whether the first step that recorded its input was fitted on named columns.

    None when no step says (e.g. a pipeline of custom transformers that keep no record).
    """
    if getattr(model, "feature_names_in_", None) is not None:
        return True
    if hasattr(model, "n_features_in_"):
        return False
    for _, step in getattr(model, "steps", ()):
        found = _fitted_on_frame(step)
        if found is not None:
            return found
    return None


def _load_skops(ctx: LoadContext) -> Any:
    import skops.io

    found = _skops_types(ctx.path)
    unknown = [t for t in found if not _is_safe(t)]
    if unknown and not ctx.trusted:
        raise UntrustedArtifact(
            f"the skops file {ctx.path} holds types outside scikit-learn, numpy and scipy: "
            f"{unknown}; loading them may run their code",
            hint="check the types, then trust the version: modelport models trust NAME "
            "VERSION (or register it with --trust)",
        )
    try:
        return skops.io.load(ctx.path, trusted=found)
    except Exception as exc:
        raise artifact_error(ctx.path, exc) from exc


def _load_pickle(ctx: LoadContext) -> Any:
    if not ctx.trusted:
        raise UntrustedArtifact(
            f"{ctx.path} is a pickle: loading a pickle runs arbitrary code, so Modelport "
            "loads it only for a trusted version",
            hint="check where the file comes from, then trust the version: modelport "
            "models trust NAME VERSION (or register it with --trust); or save it with "
            "skops (modelport.runtimes.save_model)",
        )
    import joblib

    try:
        return joblib.load(ctx.path)
    except Exception as exc:
        raise artifact_error(ctx.path, exc) from exc
