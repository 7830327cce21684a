"""Compiled models: a tree or linear model converted to ONNX, verified, served by onnxruntime.

A scikit-learn, XGBoost or LightGBM model is converted (skl2onnx for scikit-learn,
onnxmltools for the boosting libraries) to a graph with one float32 input named
``input`` of shape ``[None, n_columns]``, columns in signature order. The graph is then
run through the same `OnnxRuntime` that will serve it, on a reference sample, and kept
only if it agrees with the native runtime there:

* the classes are identical (values and types), in the same order;
* the predicted label is identical on every row;
* probabilities (classifiers) differ by at most ``tolerance``; regression predictions by
  at most ``tolerance * max(1, |native|)``, since a float32 graph keeps about seven
  significant digits whatever the scale of the target.

That is the whole guarantee: agreement *on the reference sample*. Elsewhere the graph
differs from the native model by float32 rounding of leaf sums and linear terms, which
the default tolerance clears some 200 times (measured on 5,000 fresh rows for linear
models, pipelines, random forests, gradient boosting of all three libraries: at most
5e-7 on probabilities, 1.2e-6 relative on predictions), *unless* float32 cannot tell
apart inputs that the native model can. scikit-learn's own trees and XGBoost compare in
float32 already and match; HistGradientBoosting, LightGBM and linear models compute in
float64, so for values whose float32 step is large against their spread (epoch seconds:
about 1.7e9, in steps of 128) a row may take the other branch of a split. Verification
rejected 13 of 14 such models in that measurement; the 14th matched its sample and
differed by 0.3 on fresh rows. A sample that spans the serving data is what the check
relies on.

Example::

    result = compile_model("sklearn", Path("model.skops"), signature, sample, Path("out"))
    if result.status == "compiled":
        runtime = get_runtime("onnx")
        runtime.load(LoadContext(path=result.path))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modelport.errors import ModelportError
from modelport.runtimes import get_runtime
from modelport.runtimes.base import LoadContext, Prediction, Runtime, python_scalars
from modelport.runtimes.lightgbm import LightGBMRuntime
from modelport.runtimes.onnx import OnnxRuntime
from modelport.runtimes.sklearn import SklearnRuntime
from modelport.runtimes.xgboost import XGBoostRuntime
from modelport.signature import Columns, Signature

Status = Literal["compiled", "failed", "skipped"]

#: Column types a float32 input carries without loss of meaning.
NUMERIC_TYPES = frozenset({"double", "float", "long", "integer", "boolean"})

#: Flavors with a converter to ONNX.
COMPILABLE_FLAVORS = ("sklearn", "xgboost", "lightgbm")

#: Default largest accepted difference (see the module docstring).
DEFAULT_TOLERANCE = 1e-4

INPUT_NAME = "input"
FILE_NAME = "model.onnx"

#: Longest converter message kept in a reason (some dump every node attribute).
MAX_MESSAGE = 400

#: The highest opset of the ONNX ML domain skl2onnx writes (TreeEnsemble* v3).
SKLEARN_ML_OPSET = 3


@dataclass(frozen=True)
class CompileResult:
    """What `compile_model` did: a verified graph at ``path``, or why there is none."""

    status: Status
    reason: str
    path: Path | None
    max_abs_diff: float | None
    tolerance: float
    rows_checked: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "path": str(self.path) if self.path is not None else None,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "rows_checked": self.rows_checked,
        }


@dataclass(frozen=True)
class Comparison:
    """How a compiled prediction differs from the native one: ``problem`` is "" if it agrees."""

    problem: str
    max_abs_diff: float | None


def compile_model(
    flavor: str,
    artifact: Path,
    signature: Signature,
    sample: Columns,
    out_dir: Path,
    *,
    trusted: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
) -> CompileResult:
    """Convert the model at ``artifact`` to ``out_dir/model.onnx`` and verify it on ``sample``.

    Never raises for a model that cannot be compiled: a converter's refusal or a
    mismatch is a ``failed`` result (and no file), a flavor without a converter or a
    non-numeric column a ``skipped`` one. Errors loading the native model or predicting
    the sample with it (`ModelportError`) propagate: the native model could not serve
    either.

    Example::

        result = compile_model("xgboost", Path("model.ubj"), sig, sig.coerce(rows), out)
        result.status, result.max_abs_diff  # ("compiled", 3.1e-07)
    """

    def result(
        status: Status,
        reason: str,
        *,
        path: Path | None = None,
        comparison: Comparison | None = None,
        rows: int = 0,
    ) -> CompileResult:
        diff = comparison.max_abs_diff if comparison else None
        return CompileResult(status, reason, path, diff, tolerance, rows)

    skip = skip_reason(flavor, signature)
    if skip:
        return result("skipped", skip)
    columns = signature.coerce(sample)
    native, proto_or_error = _native_and_graph(flavor, artifact, signature, columns, trusted)
    if isinstance(proto_or_error, str):
        return result("failed", proto_or_error)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    path.write_bytes(proto_or_error.SerializeToString())
    comparison = _verify(path, columns, native, tolerance)
    if comparison.problem:
        path.unlink(missing_ok=True)
        return result("failed", comparison.problem, comparison=comparison, rows=len(native))
    return result("compiled", "", path=path, comparison=comparison, rows=len(native))


def skip_reason(flavor: str, signature: Signature) -> str:
    """Why a model of this flavor and signature is not compiled at all ("" if it may be)."""
    if flavor not in COMPILABLE_FLAVORS:
        return f"no ONNX converter for the {flavor} flavor; compiling covers " + ", ".join(
            COMPILABLE_FLAVORS
        )
    other = [f"{c.name} ({c.type})" for c in signature.inputs if c.type not in NUMERIC_TYPES]
    if other:
        return (
            f"the columns {other} are not numeric; a compiled graph takes one float32 "
            "matrix, so the native runtime serves this model"
        )
    return ""


def compare(native: Prediction, compiled: Prediction, tolerance: float) -> Comparison:
    """Whether ``compiled`` agrees with ``native`` within ``tolerance`` (module docstring)."""
    if list(native.outputs) != list(compiled.outputs) or native.task != compiled.task:
        return Comparison(
            f"the outputs differ: native {native.task} {list(native.outputs)}, "
            f"compiled {compiled.task} {list(compiled.outputs)}",
            None,
        )
    if repr(native.classes) != repr(compiled.classes):
        return Comparison(
            f"the classes differ: native {native.classes!r}, compiled {compiled.classes!r}", None
        )
    if native.task == "classification":
        labels = _label_problem(native.outputs["label"], compiled.outputs["label"])
        if labels:
            return Comparison(labels, None)
        name = "probabilities"
        return _values_comparison(
            name, native.outputs[name], compiled.outputs[name], tolerance, scale=False
        )
    name = native.primary
    return _values_comparison(
        "predictions", native.outputs[name], compiled.outputs[name], tolerance, scale=True
    )


def _label_problem(native: np.ndarray, compiled: np.ndarray) -> str:
    same = np.asarray(native == compiled.reshape(native.shape))
    if same.all():
        return ""
    rows = np.flatnonzero(~same)
    row = int(rows[0])
    return (
        f"the predicted labels differ on {len(rows)} of {len(same)} rows; first at row {row}: "
        f"native {python_scalars([native[row]])[0]!r}, "
        f"compiled {python_scalars([compiled.reshape(-1)[row]])[0]!r}"
    )


def _values_comparison(
    name: str, native: np.ndarray, compiled: np.ndarray, tolerance: float, *, scale: bool
) -> Comparison:
    expected = np.asarray(native, np.float64)
    got = np.asarray(compiled, np.float64).reshape(expected.shape)
    if got.size == 0:
        return Comparison("", 0.0)
    diff = np.abs(expected - got)
    # NaN where both are NaN is agreement; NaN on one side only is the largest difference.
    diff = np.where(np.isnan(expected) & np.isnan(got), 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    allowed = tolerance * np.maximum(1.0, np.abs(expected)) if scale else tolerance
    largest = float(diff.max())
    over = diff > allowed
    if not over.any():
        return Comparison("", largest)
    row = int(np.argwhere(over)[0][0])
    limit = "tolerance * max(1, |native|)" if scale else "tolerance"
    return Comparison(
        f"the {name} differ by up to {largest:.3g} (over the {limit}, tolerance {tolerance:g}, "
        f"on {int(over.any(axis=tuple(range(1, over.ndim))).sum())} row(s)); first at row {row}: "
        f"native {_fmt(expected[row])}, compiled {_fmt(got[row])}",
        largest,
    )


def _fmt(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values), precision=8, separator=", ")


def _native_and_graph(
    flavor: str, artifact: Path, signature: Signature, columns: Columns, trusted: bool
) -> tuple[Prediction, Any]:
    """The native prediction on the sample, and the converted graph (or why it failed)."""
    runtime = get_runtime(flavor)
    runtime.load(LoadContext(path=artifact, signature=signature, trusted=trusted))
    try:
        native = runtime.predict(columns)
        try:
            proto = to_onnx(runtime, len(signature.inputs))
        except Exception as exc:  # a converter may raise anything for a model it lacks
            return native, f"the converter refused the model: {_message(exc)}"
    finally:
        runtime.unload()
    return native, proto


def _verify(path: Path, columns: Columns, native: Prediction, tolerance: float) -> Comparison:
    """Serve the written graph exactly as it will be served, and compare on the sample."""
    runtime = OnnxRuntime()
    try:
        runtime.load(LoadContext(path=path))
        compiled = runtime.predict(columns)
    except ModelportError as exc:
        return Comparison(f"onnxruntime cannot run the compiled graph: {exc}", None)
    finally:
        runtime.unload()
    return compare(native, compiled, tolerance)


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " ..."


def to_onnx(runtime: Runtime, n_columns: int) -> Any:
    """The loaded native model of ``runtime`` as an ``onnx.ModelProto`` with one input."""
    if isinstance(runtime, SklearnRuntime):
        proto = _from_sklearn(runtime.model, n_columns, classifier=runtime.classes is not None)
    elif isinstance(runtime, XGBoostRuntime):
        proto = _from_xgboost(runtime.booster, n_columns)
    elif isinstance(runtime, LightGBMRuntime):
        proto = _from_lightgbm(runtime.booster, n_columns)
    else:
        raise TypeError(f"no ONNX converter for a {type(runtime).__name__}")
    _batch_outputs(proto)
    return proto


def _from_sklearn(model: Any, n_columns: int, *, classifier: bool) -> Any:
    import skl2onnx
    from skl2onnx.common.data_types import FloatTensorType

    return skl2onnx.convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_columns]))],
        # Tensors, not ZipMap's list of dicts; "nocl" off keeps the class labels in the graph.
        options={"zipmap": False, "nocl": False} if classifier else None,
        target_opset={"": _sklearn_opset(), "ai.onnx.ml": SKLEARN_ML_OPSET},
        custom_conversion_functions=_sklearn_fixes(),
    )


def _sklearn_opset() -> int:
    import onnx
    from skl2onnx import get_latest_tested_opset_version

    return min(get_latest_tested_opset_version(), onnx.defs.onnx_opset_version())


def _from_xgboost(booster: Any, n_columns: int) -> Any:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType
    from onnxmltools.convert.common.onnx_ex import get_maximum_opset_supported

    # onnxmltools reads features as "f<index>"; a copy without names is read by position,
    # which is how the input matrix is laid out.
    unnamed = booster.copy()
    unnamed.feature_names = None
    return onnxmltools.convert_xgboost(
        unnamed,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_columns]))],
        target_opset=get_maximum_opset_supported(),
    )


def _from_lightgbm(booster: Any, n_columns: int) -> Any:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType
    from onnxmltools.convert.common.onnx_ex import get_maximum_opset_supported

    return onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_columns]))],
        target_opset=get_maximum_opset_supported(),
        zipmap=False,
    )


def _batch_outputs(proto: Any) -> None:
    """Declare the first axis of every output as the batch.

    onnxmltools declares LightGBM's label as shape ``[1]``, and onnxruntime then logs a
    shape warning on every batch of more than one row.
    """
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"


Converter = Callable[[Any, Any, Any], None]


def _sklearn_fixes() -> dict[type, Converter]:
    """Converters skl2onnx should use in place of its own, for this conversion only.

    skl2onnx 1.20 marks HistGradientBoosting leaves with a Python ``False`` in
    ``nodes_missing_value_tracks_true``, an INTS attribute, and onnx refuses the node
    ("AttributeProto.ints: Expected an int, got a boolean"). The same converters run
    with a container that hands such flags over as ints.
    """
    from skl2onnx.operator_converters.random_forest import (
        convert_sklearn_random_forest_classifier,
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return {
        HistGradientBoostingClassifier: _hist_gradient_boosting(
            convert_sklearn_random_forest_classifier
        ),
        HistGradientBoostingRegressor: _hist_gradient_boosting(
            convert_sklearn_random_forest_regressor_converter
        ),
    }


def _hist_gradient_boosting(convert: Converter) -> Converter:
    def fixed(scope: Any, operator: Any, container: Any) -> None:
        categorical = getattr(operator.raw_operator, "is_categorical_", None)
        if categorical is not None and np.any(categorical):
            # The converter ignores categorical splits and would compare category codes.
            raise NotImplementedError(
                "skl2onnx does not convert HistGradientBoosting categorical splits"
            )
        convert(scope, operator, IntFlagsContainer(container))

    return fixed


class IntFlagsContainer:
    """A skl2onnx container whose ``add_node`` passes boolean list attributes on as ints."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        return self._container.add_node(*args, **{k: _ints(v) for k, v in attrs.items()})


def _ints(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.int64)
    if isinstance(value, list | tuple) and any(isinstance(v, bool | np.bool_) for v in value):
        return [int(v) for v in value]
    return value
