from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from modelport.errors import ArtifactError, PredictionFailed, Unavailable, UntrustedArtifact
from modelport.runtimes import needs_trust, save_model
from modelport.runtimes.sklearn import SklearnRuntime
from modelport.signature import Columns

Load = Callable[..., Any]


class Doubler(TransformerMixin, BaseEstimator):
    """A transformer from outside scikit-learn: skops does not trust it by default."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return X * 2


class Marker:
    """Unpickling this creates a file: proof that loading ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def test_pipeline_classifier_matches_sklearn(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_multi: np.ndarray, load: Load
) -> None:
    labels = np.array(["low", "mid", "high"], dtype=object)[y_multi]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, labels)
    artifact = save_model(model, tmp_path)
    assert artifact.path.name == "model.skops" and not artifact.needs_trust

    runtime = load("sklearn", artifact.path)
    pred = runtime.predict(columns)

    assert runtime.task == pred.task == "classification"
    assert runtime.classes == pred.classes == ["high", "low", "mid"]
    assert all(type(c) is str for c in pred.classes)
    assert list(pred.outputs) == ["label", "probabilities"]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame))
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(frame), rtol=1e-9)
    assert pred.outputs["probabilities"].dtype == np.float64


def test_model_fitted_on_a_matrix_gets_a_matrix(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_binary: np.ndarray, load: Load
) -> None:
    model = LogisticRegression().fit(frame.to_numpy(), y_binary)
    runtime = load("sklearn", save_model(model, tmp_path).path)
    pred = runtime.predict(columns)  # warnings are errors: no "feature names" warning
    assert pred.classes == [0, 1] and type(pred.classes[0]) is int
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame.to_numpy()))


def test_regressor_with_trees_loads_without_trust(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_reg: np.ndarray, load: Load
) -> None:
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(frame, y_reg)
    artifact = save_model(model, tmp_path)
    assert not needs_trust(artifact.path, "sklearn")

    runtime = load("sklearn", artifact.path)
    pred = runtime.predict(columns)

    assert runtime.task == pred.task == "regression" and runtime.classes is None
    assert list(pred.outputs) == ["prediction"]
    assert pred.outputs["prediction"].dtype == np.float64
    np.testing.assert_array_equal(pred.outputs["prediction"], model.predict(frame))


def test_classifier_without_probabilities_gives_labels(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_binary: np.ndarray, load: Load
) -> None:
    model = LinearSVC().fit(frame, y_binary)
    pred = load("sklearn", save_model(model, tmp_path).path).predict(columns)
    assert list(pred.outputs) == ["label"] and pred.classes == [0, 1]
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame))


def test_skops_with_foreign_types_needs_trust(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_binary: np.ndarray, load: Load
) -> None:
    model = make_pipeline(Doubler(), LogisticRegression()).fit(frame, y_binary)
    artifact = save_model(model, tmp_path)
    assert artifact.needs_trust and needs_trust(artifact.path, "sklearn")
    assert artifact.extra["untrusted_types"] == [f"{__name__}.Doubler"]

    with pytest.raises(UntrustedArtifact) as info:
        load("sklearn", artifact.path)
    assert "Doubler" in str(info.value) and "--trust" in str(info.value)

    pred = load("sklearn", artifact.path, trusted=True).predict(columns)
    np.testing.assert_allclose(pred.outputs["probabilities"], model.predict_proba(frame), rtol=1e-9)


def test_pickle_is_refused_without_trust_and_not_run(tmp_path: Path, load: Load) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Marker(marker)))
    assert needs_trust(path, "sklearn")

    with pytest.raises(UntrustedArtifact) as info:
        load("sklearn", path)

    assert not marker.exists()
    assert "loading a pickle runs arbitrary code" in str(info.value)
    assert "--trust" in str(info.value) and "skops" in str(info.value)


@pytest.mark.parametrize("suffix", [".joblib", ".pkl", ".pickle"])
def test_pickle_loads_when_trusted(
    tmp_path: Path,
    frame: pd.DataFrame,
    columns: Columns,
    y_binary: np.ndarray,
    load: Load,
    suffix: str,
) -> None:
    model = LogisticRegression().fit(frame, y_binary)
    path = tmp_path / f"model{suffix}"
    joblib.dump(model, path)
    pred = load("sklearn", path, trusted=True).predict(columns)
    np.testing.assert_array_equal(pred.outputs["label"], model.predict(frame))


@pytest.mark.parametrize("suffix", [".skops", ".joblib"])
def test_corrupt_file_is_an_artifact_error(tmp_path: Path, load: Load, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x00not a model at all\xff" * 8)
    with pytest.raises(ArtifactError) as info:
        load("sklearn", path, trusted=True)
    assert str(path) in str(info.value)


def test_pickle_of_something_else_is_an_artifact_error(tmp_path: Path, load: Load) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump({"not": "a model"}, path)
    with pytest.raises(ArtifactError, match="no predict method"):
        load("sklearn", path, trusted=True)


def test_library_errors_become_prediction_failed(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_binary: np.ndarray, load: Load
) -> None:
    model = LogisticRegression().fit(frame.to_numpy(), y_binary)
    runtime = load("sklearn", save_model(model, tmp_path).path)
    with pytest.raises(PredictionFailed, match="model raised ValueError: .*3 features"):
        runtime.predict({k: v for k, v in columns.items() if k != "d"})


def test_unload_releases_the_model(
    tmp_path: Path, frame: pd.DataFrame, columns: Columns, y_binary: np.ndarray, load: Load
) -> None:
    model = LogisticRegression().fit(frame, y_binary)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    runtime: SklearnRuntime = load("sklearn", path)
    runtime.unload()
    assert runtime.model is None
    with pytest.raises(Unavailable):
        runtime.predict(columns)
