"""Runtimes: one class per flavor, chosen from an explicit dict.

Also the three things the registry needs before any runtime is loaded: which flavor a
file is (`detect_flavor`), whether loading it runs code (`needs_trust`), and how to
write an in-memory model in its safe format (`save_model`).

Example::

    artifact = save_model(fitted_pipeline, Path("artifacts/churn/1"))
    runtime = get_runtime(artifact.flavor)
    runtime.load(LoadContext(path=artifact.path))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.errors import ArtifactError, UnknownFlavor
from modelport.runtimes.base import Runtime, SavedArtifact, python_scalars
from modelport.runtimes.custom import MODULE_FILE, CustomRuntime
from modelport.runtimes.lightgbm import LightGBMRuntime
from modelport.runtimes.onnx import OnnxRuntime
from modelport.runtimes.sklearn import PICKLE_SUFFIXES, SklearnRuntime, untrusted_types
from modelport.runtimes.xgboost import XGBoostRuntime

RUNTIMES: dict[str, type[Runtime]] = {
    "sklearn": SklearnRuntime,
    "xgboost": XGBoostRuntime,
    "lightgbm": LightGBMRuntime,
    "onnx": OnnxRuntime,
    "custom": CustomRuntime,
}

#: How many leading bytes of a file are read to tell its format.
SNIFF_BYTES = 4096

__all__ = ["RUNTIMES", "detect_flavor", "get_runtime", "needs_trust", "save_model"]


def get_runtime(flavor: str) -> Runtime:
    """A fresh, unloaded runtime for ``flavor``."""
    try:
        return RUNTIMES[flavor]()
    except KeyError:
        raise UnknownFlavor(
            f"unknown flavor {flavor!r}", hint=f"known flavors: {', '.join(RUNTIMES)}"
        ) from None


def detect_flavor(path: Path) -> str:
    """The flavor of an artifact, from its extension and, where that is ambiguous, its head."""
    if path.is_dir():
        if (path / MODULE_FILE).is_file():
            return "custom"
        raise _undetected(path, f"a directory without {MODULE_FILE}")
    if not path.is_file():
        raise ArtifactError(f"no artifact at {path}", hint="check the path")
    suffix = path.suffix.lower()
    if suffix == ".skops" or suffix in PICKLE_SUFFIXES:
        return "sklearn"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".ubj":
        return "xgboost"
    head = _head(path)
    # XGBoost writes the "learner" key first; LightGBM text models open with "tree".
    if suffix == ".json" and b'"learner"' in head:
        return "xgboost"
    if suffix in (".txt", ".lgb", ".model") and (head.startswith(b"tree") or b"version=v" in head):
        return "lightgbm"
    raise _undetected(path, f"a {suffix or 'extensionless'} file of unknown content")


def needs_trust(path: Path, flavor: str) -> bool:
    """Whether loading the artifact runs code its registrant must accept first.

    True for custom models, pickles and skops files holding types outside the libraries
    Modelport accepts on its own.
    """
    if flavor == "custom":
        return True
    if flavor != "sklearn":
        return False
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    return bool(untrusted_types(path))


def save_model(obj: Any, directory: Path) -> SavedArtifact:
    """Write a live model to ``directory`` in its flavor's safe format.

    scikit-learn estimators and pipelines -> ``model.skops``; xgboost models and boosters
    -> ``model.ubj``; lightgbm models and boosters -> ``model.txt``; an ``onnx.ModelProto``
    -> ``model.onnx``. A custom model is registered from its directory instead.
    """
    modules = [cls.__module__ for cls in type(obj).__mro__]
    directory.mkdir(parents=True, exist_ok=True)
    # Boosting libraries' sklearn wrappers also derive from sklearn: check them first.
    try:
        if modules[0].startswith("xgboost"):
            return _save_xgboost(obj, directory)
        if modules[0].startswith("lightgbm"):
            return _save_lightgbm(obj, directory)
        if modules[0].startswith("onnx") and type(obj).__name__ == "ModelProto":
            return _save_onnx(obj, directory)
        if any(m.startswith("sklearn") for m in modules):
            return _save_sklearn(obj, directory)
    except (AttributeError, ValueError, TypeError) as exc:
        raise ArtifactError(
            f"cannot save the {type(obj).__name__}: {type(exc).__name__}: {exc}",
            hint="save a fitted model",
        ) from exc
    raise UnknownFlavor(
        f"cannot save a {modules[0]}.{type(obj).__qualname__}",
        hint="save_model takes a scikit-learn estimator or pipeline, an xgboost or lightgbm "
        "model or Booster, or an onnx.ModelProto; register a custom model from a directory "
        f"with a {MODULE_FILE}",
    )


def _save_sklearn(obj: Any, directory: Path) -> SavedArtifact:
    import skops.io

    path = directory / "model.skops"
    skops.io.dump(obj, path)
    unknown = untrusted_types(path)
    return SavedArtifact(
        path=path,
        flavor="sklearn",
        needs_trust=bool(unknown),
        extra={"untrusted_types": unknown} if unknown else {},
    )


def _save_xgboost(obj: Any, directory: Path) -> SavedArtifact:
    path = directory / "model.ubj"
    obj.save_model(path)
    return SavedArtifact(path=path, flavor="xgboost")


def _save_lightgbm(obj: Any, directory: Path) -> SavedArtifact:
    path = directory / "model.txt"
    booster = obj if type(obj).__name__ == "Booster" else obj.booster_
    booster.save_model(path)
    extra: dict[str, Any] = {}
    # The native file keeps class indices only; record labels a classifier was fitted on.
    classes = getattr(obj, "classes_", None)
    if classes is not None and list(classes) != list(range(len(classes))):
        extra["classes"] = python_scalars(classes)
    return SavedArtifact(path=path, flavor="lightgbm", extra=extra)


def _save_onnx(obj: Any, directory: Path) -> SavedArtifact:
    import onnx

    path = directory / "model.onnx"
    onnx.save_model(obj, str(path))
    return SavedArtifact(path=path, flavor="onnx")


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SNIFF_BYTES)


def _undetected(path: Path, what: str) -> UnknownFlavor:
    return UnknownFlavor(
        f"cannot tell the flavor of {path}: {what}",
        hint=f"pass --flavor with one of {', '.join(RUNTIMES)}",
    )
