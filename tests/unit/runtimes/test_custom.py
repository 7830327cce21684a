from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.errors import ArtifactError, PredictionFailed, Unavailable, UntrustedArtifact
from modelport.runtimes import detect_flavor, needs_trust
from modelport.signature import Columns

Load = Callable[..., Any]


def _model_dir(tmp_path: Path, predict_body: str, load_body: str = "self.scale = 2.0") -> Path:
    directory = tmp_path / "custom"
    directory.mkdir(parents=True)
    source = f"""
        from __future__ import annotations

        from dataclasses import dataclass

        import numpy as np
        import pandas as pd


        @dataclass
        class Settings:
            offset: float = 0.0


        class Model:
            def load(self, path):
                self.path = path
                self.settings = Settings()
                {load_body}

            def predict(self, frame):
                {predict_body}
    """
    (directory / "model.py").write_text(textwrap.dedent(source))
    return directory


def test_needs_trust_and_does_not_run_without_it(tmp_path: Path, load: Load) -> None:
    directory = _model_dir(tmp_path, "return frame['a']", load_body="(path / 'ran').touch()")
    assert detect_flavor(directory) == "custom" and needs_trust(directory, "custom")

    with pytest.raises(UntrustedArtifact) as info:
        load("custom", directory)

    assert "Python code" in str(info.value) and "--trust" in str(info.value)
    assert not (directory / "ran").exists()


def test_series_return_is_the_prediction(tmp_path: Path, columns: Columns, load: Load) -> None:
    directory = _model_dir(tmp_path, "return frame['a'] * self.scale")
    runtime = load("custom", directory, trusted=True)
    pred = runtime.predict(columns)
    assert runtime.task == "other" and runtime.classes is None
    assert list(pred.outputs) == ["prediction"]
    np.testing.assert_allclose(pred.outputs["prediction"], columns["a"] * 2.0)


def test_array_return_is_the_prediction(tmp_path: Path, columns: Columns, load: Load) -> None:
    runtime = load(
        "custom", _model_dir(tmp_path, "return frame.to_numpy().sum(axis=1)"), trusted=True
    )
    expected = np.sum(list(columns.values()), axis=0)
    np.testing.assert_allclose(runtime.predict(columns).outputs["prediction"], expected)


def test_frame_and_dict_returns_name_the_outputs(
    tmp_path: Path, columns: Columns, load: Load
) -> None:
    body = "return pd.DataFrame({'low': frame['a'] - 1, 'high': frame['a'] + 1})"
    pred = load("custom", _model_dir(tmp_path / "frame", body), trusted=True).predict(columns)
    assert list(pred.outputs) == ["low", "high"]
    np.testing.assert_allclose(pred.outputs["high"], columns["a"] + 1)

    body = "return {'score': frame['b'].to_numpy(), 'flag': [True] * len(frame)}"
    pred = load("custom", _model_dir(tmp_path / "dict", body), trusted=True).predict(columns)
    assert list(pred.outputs) == ["score", "flag"] and pred.outputs["flag"].all()


def test_error_in_load_is_an_artifact_error(tmp_path: Path, load: Load) -> None:
    directory = _model_dir(tmp_path, "return frame['a']", load_body="raise OSError('no weights')")
    before = set(sys.modules)
    with pytest.raises(ArtifactError, match="OSError: no weights"):
        load("custom", directory, trusted=True)
    assert set(sys.modules) - before == set()


def test_error_in_predict_is_prediction_failed(
    tmp_path: Path, columns: Columns, load: Load
) -> None:
    runtime = load("custom", _model_dir(tmp_path, "raise ValueError('bad row')"), trusted=True)
    with pytest.raises(PredictionFailed, match="model raised ValueError: bad row"):
        runtime.predict(columns)


def test_wrong_number_of_values_is_prediction_failed(
    tmp_path: Path, columns: Columns, load: Load
) -> None:
    runtime = load("custom", _model_dir(tmp_path, "return [1.0, 2.0]"), trusted=True)
    with pytest.raises(PredictionFailed, match="shape \\[2\\] for 200 rows"):
        runtime.predict(columns)


def test_missing_file_or_class_is_an_artifact_error(tmp_path: Path, load: Load) -> None:
    with pytest.raises(ArtifactError, match="no model.py"):
        load("custom", tmp_path, trusted=True)
    (tmp_path / "model.py").write_text("class NotModel:\n    pass\n")
    with pytest.raises(ArtifactError, match="no class Model"):
        load("custom", tmp_path, trusted=True)
    (tmp_path / "model.py").write_text("def broken(:\n")
    with pytest.raises(ArtifactError, match="SyntaxError"):
        load("custom", tmp_path, trusted=True)


def test_unload_forgets_the_module(tmp_path: Path, columns: Columns, load: Load) -> None:
    runtime = load("custom", _model_dir(tmp_path, "return frame['a']"), trusted=True)
    name = runtime.module_name
    assert name in sys.modules
    runtime.unload()
    assert name not in sys.modules and runtime.model is None
    with pytest.raises(Unavailable):
        runtime.predict(columns)
