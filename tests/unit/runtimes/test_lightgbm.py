from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest

from modelport.errors import ArtifactError, PredictionFailed, Unavailable
from modelport.runtimes import detect_flavor, needs_trust, save_model
from modelport.signature import Columns

Load = Callable[..., Any]
TINY = {"n_estimators": 5, "num_leaves": 4, "verbose": -1}


def test_binary_classifier_matches_lightgbm(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_binary: np.ndarray, load: Load
) -> None:
    model = lightgbm.LGBMClassifier(**TINY).fit(frame, y_binary)
    artifact = save_model(model, tmp_path)
    assert artifact.path.name == "model.txt" and artifact.flavor == "lightgbm"
    assert detect_flavor(artifact.path) == "lightgbm"
    assert not needs_trust(artifact.path, "lightgbm") and artifact.extra == {}

    runtime = load("lightgbm", artifact.path, num_threads=2)
    pred = runtime.predict(columns)

    assert runtime.task == pred.task == "classification"
    assert runtime.classes == pred.classes == [0, 1]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(frame))


def test_multiclass_classifier_matches_lightgbm(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_multi: np.ndarray, load: Load
) -> None:
    model = lightgbm.LGBMClassifier(**TINY).fit(frame.to_numpy(), y_multi)
    pred = load("lightgbm", save_model(model, tmp_path).path).predict(columns)
    assert pred.classes == [0, 1, 2]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame.to_numpy()))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(frame.to_numpy()))


def test_regressor_and_booster_match_lightgbm(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    model = lightgbm.LGBMRegressor(**TINY).fit(frame, y_reg)
    runtime = load("lightgbm", save_model(model, tmp_path / "sk").path)
    pred = runtime.predict(columns)
    assert runtime.task == pred.task == "regression" and runtime.classes is None
    np.testing.assert_allclose(pred.outputs["prediction"], model.predict(frame))

    booster = lightgbm.train(
        {"objective": "regression", "verbose": -1}, lightgbm.Dataset(frame, y_reg), 3
    )
    pred = load("lightgbm", save_model(booster, tmp_path / "native").path).predict(columns)
    np.testing.assert_allclose(pred.outputs["prediction"], booster.predict(frame.to_numpy()))


def test_string_classes_are_recorded_when_saved(
    tmp_path: Path, frame: pd.DataFrame, y_binary: np.ndarray
) -> None:
    labels = np.array(["no", "yes"], dtype=object)[y_binary]
    artifact = save_model(lightgbm.LGBMClassifier(**TINY).fit(frame, labels), tmp_path)
    assert artifact.extra == {"classes": ["no", "yes"]}


def test_wrong_feature_count_is_prediction_failed(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    model = lightgbm.LGBMRegressor(**TINY).fit(frame, y_reg)
    runtime = load("lightgbm", save_model(model, tmp_path).path)
    with pytest.raises(PredictionFailed, match="number of features"):
        runtime.predict({k: v for k, v in columns.items() if k != "d"})


@pytest.mark.parametrize(
    "content",
    [
        b"\x00garbage\xff" * 8,
        b"tree\nversion=v4\n\x00garbage\xff",  # LightGBM itself hangs on this
        b"tree\nversion=v4\nnot a model\n",
    ],
)
def test_corrupt_file_is_an_artifact_error(tmp_path: Path, load: Load, content: bytes) -> None:
    path = tmp_path / "model.txt"
    path.write_bytes(content)
    with pytest.raises(ArtifactError) as info:
        load("lightgbm", path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file_is_an_artifact_error(
    tmp_path: Path, frame: pd.DataFrame, y_reg: np.ndarray, load: Load, keep: float
) -> None:
    # LightGBM itself kills the process (SIGSEGV or abort) on a model file cut short.
    path = save_model(lightgbm.LGBMRegressor(**TINY).fit(frame, y_reg), tmp_path).path
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ArtifactError, match="truncated"):
        load("lightgbm", path)


def test_unfitted_model_cannot_be_saved(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot save"):
        save_model(lightgbm.LGBMRegressor(), tmp_path)


def test_unload_releases_the_booster(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    model = lightgbm.LGBMRegressor(**TINY).fit(frame, y_reg)
    runtime = load("lightgbm", save_model(model, tmp_path).path)
    runtime.unload()
    assert runtime.booster is None
    with pytest.raises(Unavailable):
        runtime.predict(columns)
