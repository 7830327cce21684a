"""The Python API: log_model for every library, signatures, profiles, trust."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.client import Client
from modelport.errors import InvalidInput, UntrustedArtifact
from tests.conftest import classification_data, regression_data


def test_log_model_for_every_library(client: Client) -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.ensemble import RandomForestClassifier

    frame, y = classification_data()
    models = {
        "rf": RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, y),
        "xgb": xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(frame.to_numpy(), y),
        "lgb": lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(frame.to_numpy(), y),
    }
    for name, model in models.items():
        mv = client.log_model(model, name, sample_input=frame, owner="ana@example.com")
        assert mv.task == "classification" and mv.classes == [0, 1], name
        assert [o.name for o in mv.signature.outputs] == ["label", "probabilities"]
        prediction = client.predict(mv.uri, frame.head(5))
        assert prediction.outputs["probabilities"].shape == (5, 2)
    assert {v.flavor for n in models for v in client.list_versions(n)} == {
        "sklearn",
        "xgboost",
        "lightgbm",
    }


def test_signature_from_array_uses_the_models_feature_names(client: Client) -> None:
    from sklearn.linear_model import Ridge

    frame, y = regression_data()
    model = Ridge().fit(frame, y)
    mv = client.log_model(model, "ridge", sample_input=frame.to_numpy())
    assert mv.signature.column_names == ["a", "b", "c", "d"]
    assert mv.task == "regression"
    assert mv.profile is not None
    assert set(mv.profile["columns"]) == {"a", "b", "c", "d"}
    assert mv.profile["outputs"]["prediction"]["kind"] == "numeric"
    sample = client.reference_sample(mv)
    assert sample is not None and list(sample.columns) == ["a", "b", "c", "d"]


def test_lightgbm_string_labels_are_refused_with_a_fix(client: Client) -> None:
    import lightgbm as lgb

    frame, y = classification_data()
    labels = np.where(y == 1, "fraud", "ok")
    model = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(frame, labels)
    with pytest.raises(InvalidInput, match="encode the labels as 0..k-1"):
        client.log_model(model, "lgb", sample_input=frame)


def test_register_needs_a_sample_or_signature(
    client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    path, _ = sklearn_classifier
    with pytest.raises(InvalidInput, match="no signature and no sample input"):
        client.register_model("clf", path)
    signature = {"inputs": [{"name": c, "type": "double"} for c in "abcd"]}
    mv = client.register_model("clf", path, signature=signature)
    assert mv.signature.column_names == ["a", "b", "c", "d"]
    assert mv.profile is None and mv.classes == [0, 1]


def test_pickle_needs_trust_and_trust_is_recorded(client: Client, tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    frame, y = classification_data()
    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression().fit(frame, y), path)
    with pytest.raises(UntrustedArtifact, match="runs arbitrary Python code"):
        client.register_model("clf", path, sample_input=frame)
    mv = client.register_model("clf", path, sample_input=frame, trust=True)
    assert mv.trusted and mv.trusted_by == "tester"


def test_sample_missing_a_signature_column_is_a_clear_error(
    client: Client, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    path, frame = sklearn_classifier
    signature = {"inputs": [{"name": c, "type": "double"} for c in "abcde"]}
    with pytest.raises(InvalidInput, match=r"lacks the signature's column\(s\) \['e'\]"):
        client.register_model("clf", path, signature=signature, sample_input=frame)
