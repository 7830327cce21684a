from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost

from modelport.errors import ArtifactError, PredictionFailed, Unavailable
from modelport.runtimes import detect_flavor, needs_trust, save_model
from modelport.signature import Columns

Load = Callable[..., Any]


def _train(params: dict[str, Any], data: Any, label: np.ndarray) -> xgboost.Booster:
    return xgboost.train(params, xgboost.DMatrix(data, label=label), num_boost_round=5)


@pytest.mark.parametrize("suffix", [".ubj", ".json"])
def test_binary_classifier_matches_xgboost(
    tmp_path: Path,
    frame: pd.DataFrame,
    columns: Columns,
    y_binary: np.ndarray,
    load: Load,
    suffix: str,
) -> None:
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(frame, y_binary)
    path = tmp_path / f"model{suffix}"
    model.save_model(path)
    assert detect_flavor(path) == "xgboost" and not needs_trust(path, "xgboost")

    runtime = load("xgboost", path, num_threads=2)
    pred = runtime.predict(columns)

    assert runtime.task == pred.task == "classification"
    assert runtime.classes == pred.classes == [0, 1]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(frame))


def test_multiclass_classifier_matches_xgboost(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_multi: np.ndarray, load: Load
) -> None:
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(frame.to_numpy(), y_multi)
    artifact = save_model(model, tmp_path)
    assert artifact.path.name == "model.ubj" and artifact.flavor == "xgboost"

    pred = load("xgboost", artifact.path).predict(columns)

    assert pred.classes == [0, 1, 2]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame.to_numpy()))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(frame.to_numpy()))


def test_regressor_matches_xgboost(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    model = xgboost.XGBRegressor(n_estimators=5, max_depth=2).fit(frame, y_reg)
    runtime = load("xgboost", save_model(model, tmp_path).path)
    pred = runtime.predict(columns)

    assert runtime.task == pred.task == "regression" and runtime.classes is None
    assert pred.outputs["prediction"].dtype == np.float64
    np.testing.assert_allclose(pred.outputs["prediction"], model.predict(frame), rtol=1e-6)


def test_softmax_and_logitraw_boosters_give_probabilities(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_multi: np.ndarray, load: Load
) -> None:
    softmax = _train({"objective": "multi:softmax", "num_class": 3}, frame, y_multi)
    artifact = save_model(softmax, tmp_path / "softmax")
    pred = load("xgboost", artifact.path).predict(columns)
    expected = softmax.predict(xgboost.DMatrix(frame))
    np.testing.assert_array_equal(pred.outputs["label"], expected)
    np.testing.assert_allclose(pred.outputs["probabilities"].sum(axis=1), 1.0)

    y = (y_multi > 0).astype(np.int64)
    raw = _train({"objective": "binary:logitraw"}, frame.to_numpy(), y)
    artifact = save_model(raw, tmp_path / "raw")
    pred = load("xgboost", artifact.path).predict(columns)
    margin = raw.predict(xgboost.DMatrix(frame.to_numpy()))
    np.testing.assert_allclose(pred.outputs["probabilities"][:, 1], 1 / (1 + np.exp(-margin)))
    np.testing.assert_array_equal(pred.outputs["label"], (margin > 0).astype(np.int64))


def test_booster_with_other_feature_names_predicts_by_position(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    renamed = frame.set_axis(["w", "x", "y", "z"], axis=1)
    booster = _train({"objective": "reg:squarederror"}, renamed, y_reg)
    pred = load("xgboost", save_model(booster, tmp_path).path).predict(columns)
    expected = booster.predict(xgboost.DMatrix(renamed))
    np.testing.assert_allclose(pred.outputs["prediction"], expected, rtol=1e-6)


def test_wrong_feature_count_is_prediction_failed(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    model = xgboost.XGBRegressor(n_estimators=2).fit(frame.to_numpy(), y_reg)
    runtime = load("xgboost", save_model(model, tmp_path).path)
    with pytest.raises(PredictionFailed, match="trained on 4 features, got 3"):
        runtime.predict({k: v for k, v in columns.items() if k != "d"})
    with pytest.raises(PredictionFailed, match="model raised ValueError"):
        runtime.predict({**columns, "a": np.array(["x"] * len(columns["a"]), dtype=object)})


@pytest.mark.parametrize("suffix", [".ubj", ".json"])
def test_corrupt_file_is_an_artifact_error(tmp_path: Path, load: Load, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x00garbage\xff" * 16)
    with pytest.raises(ArtifactError) as info:
        load("xgboost", path)
    assert str(path) in str(info.value)


def test_unfitted_model_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot save"):
        save_model(xgboost.XGBRegressor(), tmp_path)


def test_unload_releases_the_booster(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    model = xgboost.XGBRegressor(n_estimators=2).fit(frame, y_reg)
    runtime = load("xgboost", save_model(model, tmp_path).path)
    runtime.unload()
    assert runtime.booster is None
    with pytest.raises(Unavailable):
        runtime.predict(columns)
