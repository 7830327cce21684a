"""Custom runtime: a directory whose ``model.py`` defines a class named ``Model``.

``Model()`` is built with no arguments, then ``load(path)`` gets the directory and
``predict(frame)`` a DataFrame in signature order. ``predict`` may return an array or
Series (one output, ``prediction``), a DataFrame (one output per column) or a dict of
arrays (outputs as named). Loading runs the user's code, so it needs a trusted version.

Example ``model.py``::

    class Model:
        def load(self, path):
            self.scale = float((path / "scale.txt").read_text())

        def predict(self, frame):
            return frame["a"] * self.scale
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import ArtifactError, ModelportError, PredictionFailed, UntrustedArtifact
from modelport.runtimes.base import (
    LoadContext,
    Prediction,
    Task,
    as_frame,
    not_loaded,
    prediction_failed,
)
from modelport.signature import Columns

MODULE_FILE = "model.py"
CLASS_NAME = "Model"


class CustomRuntime:
    """A user's Python class, loaded from ``model.py`` in the artifact directory."""

    flavor: ClassVar[str] = "custom"

    def __init__(self) -> None:
        self.model: Any = None
        self.module_name: str | None = None
        self.task: Task = "other"
        self.classes: list[Any] | None = None

    def load(self, ctx: LoadContext) -> None:
        directory = ctx.path.parent if ctx.path.name == MODULE_FILE else ctx.path
        source = directory / MODULE_FILE
        if not ctx.trusted:
            raise UntrustedArtifact(
                f"{directory} is a custom model: it is Python code, and loading it runs "
                f"{MODULE_FILE}",
                hint="read the code, then trust the version: modelport models trust NAME "
                "VERSION (or register it with --trust); who trusted it is recorded",
            )
        if not source.is_file():
            raise ArtifactError(
                f"the custom model directory {directory} has no {MODULE_FILE}",
                hint=f"put a {MODULE_FILE} defining class {CLASS_NAME} in it",
            )
        import pandas  # noqa: F401 - predict hands the model a DataFrame: pay the import here,
        # while loading, not on the first request (a canary's p99 would carry it)

        name = f"modelport_custom_{uuid.uuid4().hex}"
        try:
            model = _instantiate(name, source)
            model.load(directory)
        except Exception as exc:
            sys.modules.pop(name, None)
            if isinstance(exc, ModelportError):
                raise
            raise ArtifactError(
                f"the custom model in {directory} failed to load: {type(exc).__name__}: {exc}",
                hint=f"fix {MODULE_FILE} or the files its load() reads",
            ) from exc
        self.model, self.module_name = model, name

    def predict(self, columns: Columns) -> Prediction:
        model = self.model
        if model is None:
            raise not_loaded(self.flavor)
        frame = as_frame(columns)
        try:
            result = model.predict(frame)
        except Exception as exc:
            raise prediction_failed(exc) from exc
        return Prediction(outputs=_outputs(result, len(frame)))

    def unload(self) -> None:
        self.model = None
        if self.module_name is not None:
            sys.modules.pop(self.module_name, None)
            self.module_name = None


def _instantiate(name: str, source: Path) -> Any:
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(source))
    if spec is None:
        raise ArtifactError(f"cannot import {source} as a Python module")
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(source)
    # Compiled from the hashed source itself: an import would also read (and write) a
    # bytecode cache in __pycache__, which the artifact's digest does not cover.
    code = compile(source.read_bytes(), str(source), "exec", dont_inherit=True)
    # Registered under a unique name so dataclasses and pickling inside model.py work;
    # sys.path is left alone.
    sys.modules[name] = module
    exec(code, module.__dict__)
    cls = getattr(module, CLASS_NAME, None)
    if not isinstance(cls, type):
        raise ArtifactError(
            f"{source} defines no class {CLASS_NAME}",
            hint=f"define class {CLASS_NAME} with load(self, path) and predict(self, frame)",
        )
    return cls()


def _outputs(result: Any, n_rows: int) -> dict[str, np.ndarray]:
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        outputs = {str(c): result[c].to_numpy() for c in result.columns}
    elif isinstance(result, dict):
        outputs = {str(k): np.asarray(v) for k, v in result.items()}
    elif isinstance(result, pd.Series):
        outputs = {"prediction": result.to_numpy()}
    else:
        outputs = {"prediction": np.asarray(result)}
    if not outputs:
        raise PredictionFailed("the custom model's predict returned no outputs")
    for name, values in outputs.items():
        if values.ndim == 0 or len(values) != n_rows:
            raise PredictionFailed(
                f"the custom model's output '{name}' has shape {list(values.shape)} "
                f"for {n_rows} rows",
                hint="return one value (or row) per input row",
            )
    return outputs
