"""compile_model: convert, verify on the sample, and serve like the native model on fresh rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelport.compile import (
    DEFAULT_TOLERANCE,
    FILE_NAME,
    CompileResult,
    IntFlagsContainer,
    compare,
    compile_model,
)
from modelport.errors import SignatureMismatch, UntrustedArtifact
from modelport.runtimes import get_runtime, save_model
from modelport.runtimes.base import LoadContext, Prediction, classification, regression
from modelport.runtimes.onnx import OnnxRuntime
from modelport.signature import Columns, Signature

N_COLUMNS = 6


def _frame(n: int, seed: int, *, missing: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, N_COLUMNS))
    if missing:
        values[rng.random(values.shape) < 0.1] = np.nan
    return pd.DataFrame(values, columns=[f"x{i}" for i in range(N_COLUMNS)])


def _score(frame: pd.DataFrame) -> np.ndarray:
    x = frame.fillna(0.0).to_numpy()
    noise = np.random.default_rng(len(frame)).normal(scale=0.3, size=len(frame))
    return x[:, 0] - 0.5 * x[:, 1] + 0.4 * x[:, 2] * x[:, 3] + noise


def y_binary(frame: pd.DataFrame) -> np.ndarray:
    return (_score(frame) > 0).astype(np.int64)


def y_three(frame: pd.DataFrame) -> np.ndarray:
    return np.digitize(_score(frame), [-0.5, 0.5])


def y_real(frame: pd.DataFrame) -> np.ndarray:
    return 10.0 * _score(frame)


def _columns(signature: Signature, frame: pd.DataFrame) -> Columns:
    return signature.coerce({name: frame[name].to_numpy() for name in frame.columns})


def _fit_and_compile(
    model: Any,
    target: Callable[[pd.DataFrame], np.ndarray],
    tmp_path: Path,
    *,
    missing: bool = False,
    **kwargs: Any,
) -> tuple[CompileResult, Path, str, Signature]:
    train = _frame(300, seed=0, missing=missing)
    model.fit(train, target(train))
    artifact = save_model(model, tmp_path / "native")
    signature = Signature.infer(train)
    result = compile_model(
        artifact.flavor,
        artifact.path,
        signature,
        _columns(signature, train),
        tmp_path / "compiled",
        **kwargs,
    )
    return result, artifact.path, artifact.flavor, signature


def _predict_both(
    flavor: str, artifact: Path, compiled: Path, columns: Columns
) -> tuple[Prediction, Prediction]:
    native = get_runtime(flavor)
    native.load(LoadContext(path=artifact))
    onnx = OnnxRuntime()
    onnx.load(LoadContext(path=compiled))
    return native.predict(columns), onnx.predict(columns)


def _sklearn(name: str) -> Any:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic": lambda: LogisticRegression(),
        "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
        "random_forest": lambda: RandomForestRegressor(n_estimators=20, random_state=0),
        "hist_classifier": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
        "hist_regressor": lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0),
        "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    }[name]()


def _xgboost(name: str) -> Any:
    import xgboost

    if name == "regressor":
        return xgboost.XGBRegressor(n_estimators=30, max_depth=3)
    return xgboost.XGBClassifier(n_estimators=30, max_depth=3)


def _lightgbm(name: str) -> Any:
    import lightgbm

    if name == "regressor":
        return lightgbm.LGBMRegressor(n_estimators=30, num_leaves=8, verbose=-1)
    return lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1)


CASES = [
    ("sklearn", _sklearn, "logistic", y_binary),
    ("sklearn", _sklearn, "logistic", y_three),
    ("sklearn", _sklearn, "gradient_boosting", y_binary),
    ("sklearn", _sklearn, "gradient_boosting", y_three),
    ("sklearn", _sklearn, "random_forest", y_real),
    ("sklearn", _sklearn, "hist_classifier", y_binary),
    ("sklearn", _sklearn, "hist_classifier", y_three),
    ("sklearn", _sklearn, "hist_regressor", y_real),
    ("sklearn", _sklearn, "pipeline", y_binary),
    ("xgboost", _xgboost, "classifier", y_binary),
    ("xgboost", _xgboost, "classifier", y_three),
    ("xgboost", _xgboost, "regressor", y_real),
    ("lightgbm", _lightgbm, "classifier", y_binary),
    ("lightgbm", _lightgbm, "classifier", y_three),
    ("lightgbm", _lightgbm, "regressor", y_real),
]


@pytest.mark.parametrize(
    ("flavor", "make", "name", "target"),
    CASES,
    ids=[f"{c[0]}-{c[2]}-{c[3].__name__}" for c in CASES],
)
def test_compiles_verifies_and_serves_like_the_native_model(
    tmp_path: Path,
    flavor: str,
    make: Callable[[str], Any],
    name: str,
    target: Callable[[pd.DataFrame], np.ndarray],
) -> None:
    result, artifact, saved_flavor, signature = _fit_and_compile(make(name), target, tmp_path)

    assert saved_flavor == flavor
    assert result.status == "compiled", result.reason
    assert result.reason == ""
    assert result.path is not None and result.path.is_file()
    assert result.path == tmp_path / "compiled" / FILE_NAME
    assert result.max_abs_diff is not None and result.max_abs_diff <= DEFAULT_TOLERANCE
    assert result.rows_checked == 300 and result.tolerance == DEFAULT_TOLERANCE
    assert result.to_dict()["path"] == str(result.path)

    fresh = _columns(signature, _frame(1000, seed=1))
    native, compiled = _predict_both(flavor, artifact, result.path, fresh)
    assert compare(native, compiled, DEFAULT_TOLERANCE).problem == ""
    assert compiled.task == native.task and compiled.classes == native.classes
    primary = native.primary
    if native.task == "classification":
        np.testing.assert_array_equal(compiled.outputs["label"], native.outputs["label"])
        np.testing.assert_allclose(
            compiled.outputs["probabilities"], native.outputs["probabilities"], atol=1e-5
        )
    else:
        np.testing.assert_allclose(
            compiled.outputs[primary], native.outputs[primary], rtol=1e-5, atol=1e-5
        )


def test_hist_gradient_boosting_keeps_missing_value_branches(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(max_iter=30, random_state=0)
    result, artifact, flavor, signature = _fit_and_compile(model, y_real, tmp_path, missing=True)
    assert result.status == "compiled", result.reason
    assert result.path is not None

    fresh = _columns(signature, _frame(1000, seed=1, missing=True))
    native, compiled = _predict_both(flavor, artifact, result.path, fresh)
    assert compare(native, compiled, DEFAULT_TOLERANCE).problem == ""


def test_hist_gradient_boosting_with_categorical_splits_fails(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = _frame(300, seed=0)
    train["x5"] = np.random.default_rng(0).integers(0, 4, len(train)).astype(float)
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[5])
    artifact = save_model(model.fit(train, y_binary(train)), tmp_path / "native")
    signature = Signature.infer(train)

    result = compile_model(
        "sklearn",
        artifact.path,
        signature,
        _columns(signature, train),
        tmp_path / "compiled",
        trusted=True,  # the fitted categorical model holds a functools.partial
    )

    assert result.status == "failed" and "categorical" in result.reason
    assert result.path is None and not (tmp_path / "compiled" / FILE_NAME).exists()


def test_int_flags_container_passes_booleans_on_as_ints() -> None:
    seen: dict[str, Any] = {}

    class Container:
        target_opset = 21

        def add_node(self, *args: Any, **attrs: Any) -> None:
            seen.update(attrs)

    wrapped = IntFlagsContainer(Container())
    wrapped.add_node(
        "TreeEnsembleRegressor",
        "input",
        "output",
        flags=[np.uint8(1), False, True],
        mask=np.array([True, False]),
        modes=["LEAF", "BRANCH_LEQ"],
        values=[0.5, 1.0],
    )

    assert wrapped.target_opset == 21
    assert seen["flags"] == [1, 0, 1] and all(type(v) is int for v in seen["flags"])
    assert seen["mask"].dtype == np.int64 and seen["mask"].tolist() == [1, 0]
    assert seen["modes"] == ["LEAF", "BRANCH_LEQ"] and seen["values"] == [0.5, 1.0]


def test_string_column_is_skipped(tmp_path: Path) -> None:
    signature = Signature.from_dict(
        {"inputs": [{"name": "amount", "type": "double"}, {"name": "country", "type": "string"}]}
    )
    sample = signature.coerce({"amount": [1.0, 2.0], "country": ["FR", "DE"]})

    result = compile_model(
        "sklearn", tmp_path / "model.skops", signature, sample, tmp_path / "compiled"
    )

    assert result.status == "skipped" and "country (string)" in result.reason
    assert result.path is None and result.rows_checked == 0
    assert not (tmp_path / "compiled").exists()


@pytest.mark.parametrize("flavor", ["custom", "onnx"])
def test_flavors_without_a_converter_are_skipped(tmp_path: Path, flavor: str) -> None:
    signature = Signature.from_dict({"inputs": [{"name": "a", "type": "double"}]})
    sample = signature.coerce({"a": [1.0]})

    result = compile_model(flavor, tmp_path / "model", signature, sample, tmp_path / "out")

    assert result.status == "skipped" and f"the {flavor} flavor" in result.reason


def test_model_without_a_converter_fails_with_the_converters_reason(tmp_path: Path) -> None:
    from sklearn.kernel_ridge import KernelRidge

    result, *_ = _fit_and_compile(KernelRidge(), y_real, tmp_path)

    assert result.status == "failed"
    assert result.reason.startswith("the converter refused the model:")
    assert "KernelRidge" in result.reason
    assert result.path is None and result.max_abs_diff is None


# skl2onnx reads SVC.probA_, which scikit-learn 1.9 deprecates.
@pytest.mark.filterwarnings("ignore:Attribute `prob:FutureWarning")
def test_classifier_without_probabilities_fails(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    # probability=False is the default; scikit-learn 1.9 warns when it is passed at all.
    result, *_ = _fit_and_compile(SVC(), y_binary, tmp_path)

    # The graph would serve decision scores where the native model serves none.
    assert result.status == "failed"
    assert "the outputs differ" in result.reason and "'probabilities'" in result.reason
    assert result.path is None and not (tmp_path / "compiled" / FILE_NAME).exists()


def test_difference_over_the_tolerance_fails_and_removes_the_file(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=20, random_state=0)
    result, *_ = _fit_and_compile(model, y_binary, tmp_path, tolerance=0.0)

    # float32 leaf sums never match float64 ones exactly on 300 rows.
    assert result.status == "failed"
    assert result.max_abs_diff is not None and 0.0 < result.max_abs_diff < DEFAULT_TOLERANCE
    assert "the probabilities differ by up to" in result.reason and "first at row" in result.reason
    assert result.path is None and not (tmp_path / "compiled" / FILE_NAME).exists()
    assert result.to_dict() == {
        "status": "failed",
        "reason": result.reason,
        "path": None,
        "max_abs_diff": result.max_abs_diff,
        "tolerance": 0.0,
        "rows_checked": 300,
    }


def test_untrusted_pickle_raises_as_the_native_runtime_does(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    train = _frame(50, seed=0)
    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit(train, y_binary(train)), path)
    signature = Signature.infer(train)
    sample = _columns(signature, train)

    with pytest.raises(UntrustedArtifact):
        compile_model("sklearn", path, signature, sample, tmp_path / "out")
    result = compile_model("sklearn", path, signature, sample, tmp_path / "out", trusted=True)
    assert result.status == "compiled", result.reason


def test_sample_must_hold_the_signature_columns(tmp_path: Path) -> None:
    signature = Signature.from_dict(
        {"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]}
    )
    with pytest.raises(SignatureMismatch, match="missing input column"):
        compile_model(
            "sklearn",
            tmp_path / "model.skops",
            signature,
            {"a": np.array([1.0])},
            tmp_path / "out",
        )


def test_compare_names_the_first_differing_label() -> None:
    native = classification([[0.9, 0.1], [0.4, 0.6]], ["no", "yes"])
    compiled = classification([[0.9, 0.1], [0.6, 0.4]], ["no", "yes"])

    found = compare(native, compiled, 1.0)

    assert found.problem.startswith("the predicted labels differ on 1 of 2 rows")
    assert "row 1: native 'yes', compiled 'no'" in found.problem


def test_compare_checks_class_types() -> None:
    native = classification([[0.9, 0.1]], [False, True])
    compiled = classification([[0.9, 0.1]], [0, 1])

    assert "the classes differ" in compare(native, compiled, 1.0).problem


def test_compare_scales_the_tolerance_with_large_predictions() -> None:
    native = regression([2.0e5, 0.5])

    assert compare(native, regression([2.0e5 + 1.0, 0.5]), 1e-4).problem == ""
    found = compare(native, regression([2.0e5, 0.6]), 1e-4)
    assert "predictions differ by up to 0.1" in found.problem and "row 1" in found.problem
    assert found.max_abs_diff == pytest.approx(0.1)
    nan = compare(regression([np.nan, 1.0]), regression([np.nan, np.nan]), 1e-4)
    assert nan.max_abs_diff == np.inf and "row 1" in nan.problem
