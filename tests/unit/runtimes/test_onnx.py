from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelport.errors import ArtifactError, PredictionFailed, Unavailable
from modelport.runtimes import detect_flavor, needs_trust, save_model
from modelport.signature import Columns

Load = Callable[..., Any]


def _convert(model: Any, sample: np.ndarray, *, zipmap: bool = True) -> onnx.ModelProto:
    options = None if zipmap else {id(model): {"zipmap": False}}
    return to_onnx(model, sample[:1], options=options, target_opset=17)


@pytest.mark.parametrize("zipmap", [False, True])
def test_logistic_regression_matches_sklearn(
    tmp_path: Path,
    frame: pd.DataFrame,
    columns: Columns,
    y_binary: np.ndarray,
    load: Load,
    zipmap: bool,
) -> None:
    X = frame.to_numpy()
    model = LogisticRegression().fit(X, y_binary)
    artifact = save_model(_convert(model, X.astype(np.float32), zipmap=zipmap), tmp_path)
    assert artifact.path.name == "model.onnx" and detect_flavor(artifact.path) == "onnx"
    assert not needs_trust(artifact.path, "onnx")

    runtime = load("onnx", artifact.path, num_threads=2)
    pred = runtime.predict(columns)

    assert runtime.task == pred.task == "classification"
    assert runtime.classes == pred.classes == [0, 1]
    assert list(pred.outputs) == ["label", "probabilities"]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(X))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("zipmap", [False, True])
def test_gradient_boosting_multiclass_matches_sklearn(
    tmp_path: Path,
    frame: pd.DataFrame,
    columns: Columns,
    y_multi: np.ndarray,
    load: Load,
    zipmap: bool,
) -> None:
    X = frame.to_numpy().astype(np.float32)  # trees split on float32 thresholds in ONNX
    model = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(X, y_multi)
    artifact = save_model(_convert(model, X, zipmap=zipmap), tmp_path)
    pred = load("onnx", artifact.path).predict(columns)

    assert pred.classes == [0, 1, 2]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(X))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("zipmap", [False, True])
def test_string_classes_come_from_the_graph(
    tmp_path: Path,
    frame: pd.DataFrame,
    columns: Columns,
    y_multi: np.ndarray,
    load: Load,
    zipmap: bool,
) -> None:
    X = frame.to_numpy().astype(np.float32)  # ZipMap takes float tensors only
    labels = np.array(["cat", "dog", "eel"])[y_multi]
    model = LogisticRegression().fit(X, labels)
    runtime = load("onnx", save_model(_convert(model, X, zipmap=zipmap), tmp_path).path)
    assert runtime.classes == ["cat", "dog", "eel"]

    pred = runtime.predict(columns)
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(X))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regressor_matches_sklearn(
    tmp_path: Path,
    frame: pd.DataFrame,
    columns: Columns,
    y_reg: np.ndarray,
    load: Load,
    dtype: Any,
) -> None:
    X = frame.to_numpy()
    model = LinearRegression().fit(X, y_reg)
    artifact = save_model(_convert(model, X.astype(dtype)), tmp_path)
    runtime = load("onnx", artifact.path)
    pred = runtime.predict(columns)

    assert runtime.task == pred.task == "regression" and runtime.classes is None
    assert pred.outputs["prediction"].shape == (len(X),)
    assert pred.outputs["prediction"].dtype == np.float64
    np.testing.assert_allclose(pred.outputs["prediction"], model.predict(X), atol=1e-5)


def test_one_input_per_column(tmp_path: Path, columns: Columns, load: Load) -> None:
    names = list(columns)
    graph = helper.make_graph(
        [
            helper.make_node("Concat", names, ["stacked"], axis=1),
            helper.make_node("ReduceSum", ["stacked", "axes"], ["total"], keepdims=1),
        ],
        "sum",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None, 1]) for n in names],
        [helper.make_tensor_value_info("total", TensorProto.DOUBLE, [None, 1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    runtime = load("onnx", save_model(proto, tmp_path).path)

    pred = runtime.predict(columns)

    expected = np.sum([columns[n] for n in names], axis=0)
    np.testing.assert_allclose(pred.outputs["prediction"], expected)
    with pytest.raises(PredictionFailed, match=r"\['d'\] are not columns"):
        runtime.predict({k: v for k, v in columns.items() if k != "d"})


def test_wrong_feature_count_is_prediction_failed(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    X = frame.to_numpy().astype(np.float32)
    model = LinearRegression().fit(X, y_reg)
    runtime = load("onnx", save_model(_convert(model, X), tmp_path).path)
    with pytest.raises(PredictionFailed, match="model raised"):
        runtime.predict({k: v for k, v in columns.items() if k != "d"})


def test_corrupt_file_is_an_artifact_error(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00garbage\xff" * 16)
    with pytest.raises(ArtifactError) as info:
        load("onnx", path)
    assert str(path) in str(info.value)


def test_unload_releases_the_session(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    X = frame.to_numpy().astype(np.float32)
    runtime = load("onnx", save_model(_convert(LinearRegression().fit(X, y_reg), X), tmp_path).path)
    runtime.unload()
    assert runtime.session is None
    with pytest.raises(Unavailable):
        runtime.predict(columns)
