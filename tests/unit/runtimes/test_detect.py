from __future__ import annotations

from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression

from modelport.errors import ArtifactError, UnknownFlavor
from modelport.runtimes import RUNTIMES, detect_flavor, get_runtime, needs_trust, save_model


@pytest.fixture
def linear(frame: pd.DataFrame, y_reg: np.ndarray) -> LinearRegression:
    return LinearRegression().fit(frame.to_numpy(), y_reg)


def test_runtimes_are_keyed_by_their_flavor() -> None:
    assert list(RUNTIMES) == ["sklearn", "xgboost", "lightgbm", "onnx", "custom"]
    for flavor, cls in RUNTIMES.items():
        assert cls.flavor == flavor
        assert type(get_runtime(flavor)) is cls


def test_unknown_flavor_lists_the_known_ones() -> None:
    with pytest.raises(UnknownFlavor) as info:
        get_runtime("tensorflow")
    assert "tensorflow" in str(info.value)
    assert all(flavor in str(info.value) for flavor in RUNTIMES)


def test_sklearn_formats(tmp_path: Path, linear: LinearRegression) -> None:
    skops_path = save_model(linear, tmp_path).path
    assert detect_flavor(skops_path) == "sklearn" and not needs_trust(skops_path, "sklearn")
    for suffix in (".joblib", ".pkl", ".pickle"):
        path = tmp_path / f"model{suffix}"
        joblib.dump(linear, path)
        assert detect_flavor(path) == "sklearn" and needs_trust(path, "sklearn")


def test_xgboost_formats(tmp_path: Path, frame: pd.DataFrame, y_reg: np.ndarray) -> None:
    model = xgboost.XGBRegressor(n_estimators=2).fit(frame, y_reg)
    for suffix in (".ubj", ".json"):
        path = tmp_path / f"model{suffix}"
        model.save_model(path)
        assert detect_flavor(path) == "xgboost"
    other = tmp_path / "other.json"
    other.write_text('{"name": "not a model"}')
    with pytest.raises(UnknownFlavor):
        detect_flavor(other)


def test_lightgbm_formats(tmp_path: Path, frame: pd.DataFrame, y_reg: np.ndarray) -> None:
    booster = lightgbm.LGBMRegressor(n_estimators=2, verbose=-1).fit(frame, y_reg).booster_
    for suffix in (".txt", ".lgb", ".model"):
        path = tmp_path / f"model{suffix}"
        booster.save_model(path)
        assert detect_flavor(path) == "lightgbm"
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    with pytest.raises(UnknownFlavor):
        detect_flavor(notes)


def test_onnx_and_custom(tmp_path: Path, frame: pd.DataFrame, linear: LinearRegression) -> None:
    proto = to_onnx(linear, frame.to_numpy()[:1], target_opset=17)
    assert detect_flavor(save_model(proto, tmp_path / "onnx").path) == "onnx"

    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "model.py").write_text("class Model:\n    pass\n")
    assert detect_flavor(custom) == "custom"
    assert needs_trust(custom, "custom")


def test_unknown_files_say_how_to_pass_the_flavor(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF")
    with pytest.raises(UnknownFlavor) as info:
        detect_flavor(path)
    assert "--flavor" in str(info.value)

    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(UnknownFlavor, match="model.py"):
        detect_flavor(empty_dir)

    with pytest.raises(ArtifactError, match="no artifact"):
        detect_flavor(tmp_path / "missing.skops")


def test_save_model_refuses_other_objects(tmp_path: Path) -> None:
    with pytest.raises(UnknownFlavor) as info:
        save_model({"weights": [1, 2]}, tmp_path)
    assert "builtins.dict" in str(info.value) and "model.py" in str(info.value)
