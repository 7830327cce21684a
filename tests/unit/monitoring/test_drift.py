"""Drift: shifted traffic crosses the thresholds, fresh training-like traffic stays quiet."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelport.errors import InvalidInput
from modelport.monitoring.drift import ColumnThreshold, drift_report
from modelport.monitoring.stattests import default_method, ks_test, psi
from modelport.profile import compute_profile

CITIES = [f"city{i:02d}" for i in range(40)]


def training(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inputs of every kind, and a classifier's outputs on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 1.0, n),
            "x": rng.normal(0.0, 1.0, n),
            "visits": rng.poisson(6, n),
            "tier": rng.choice([0, 1, 2], n, p=[0.5, 0.3, 0.2]),
            "member": rng.random(n) < 0.3,
            "color": rng.choice(["red", "green", "blue", "black"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "city": rng.choice(CITIES, n),
        }
    )
    outputs = pd.DataFrame(
        {
            "label": (rng.random(n) < 0.1).astype(np.int64),
            "kind": rng.choice(["ok", "review"], n, p=[0.8, 0.2]),
        }
    )
    return frame, outputs


def live_frame(inputs: pd.DataFrame, outputs: pd.DataFrame) -> pd.DataFrame:
    return inputs.assign(out_label=outputs["label"], out_kind=outputs["kind"])


OUTPUTS = {"label": "out_label", "kind": "out_kind"}


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, object], pd.DataFrame, pd.DataFrame]:
    frame, outputs = training(1000, seed=0)
    profile = compute_profile(frame, {k: outputs[k].to_numpy() for k in outputs})
    return profile, frame, outputs


@pytest.mark.parametrize("with_sample", [True, False], ids=["sample", "profile"])
def test_no_false_alarm_on_fresh_samples_of_the_training_distribution(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame], with_sample: bool
) -> None:
    profile, frame, outputs = reference
    crossed = 0
    for seed in range(1, 7):
        inputs, outs = training(20_000, seed=seed)
        report = drift_report(
            profile,
            frame if with_sample else None,
            live_frame(inputs, outs),
            output_columns=OUTPUTS,
            reference_outputs=outputs if with_sample else None,
        )
        assert not report.dataset_drift
        assert [c.column for c in report.columns + report.outputs if c.psi_drifted] == []
        assert all(
            c.out_of_range_rate in (None, 0.0) for c in report.columns if c.kind != "numeric"
        )
        crossed += sum(c.drifted for c in report.columns + report.outputs)
    # Each column's test runs at the 5% level, so about one in twenty crosses on unshifted
    # data by design (6 seeds x 9 columns: ~3 expected); the alarms are PSI and the share.
    assert crossed <= 6


def test_shifted_numeric_and_categorical_inputs_cross_their_thresholds(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    inputs, outs = training(20_000, seed=9)
    inputs["amount"] = inputs["amount"] * 2.0
    inputs["x"] = inputs["x"] + 0.5
    rng = np.random.default_rng(3)
    inputs["color"] = rng.choice(["red", "green", "blue", "black"], len(inputs))
    inputs["city"] = rng.choice(CITIES[:5], len(inputs))
    report = drift_report(profile, frame, live_frame(inputs, outs))
    by = {c.column: c for c in report.columns}
    for name, method in [
        ("amount", "ks"),
        ("x", "ks"),
        ("color", "chisquare"),
        ("city", "chisquare"),
    ]:
        column = by[name]
        assert column.method == method
        assert column.drifted and column.score is not None and column.score < 0.05
        assert column.psi_drifted and column.psi is not None and column.psi >= 0.2
    assert not by["visits"].psi_drifted and not by["tier"].psi_drifted
    assert {c.column for c in report.top(4)} == {"amount", "x", "color", "city"}
    assert report.drifted_share >= 4 / 7 and report.dataset_drift


def test_profile_alone_detects_the_same_shift(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, _, _ = reference
    inputs, outs = training(20_000, seed=9)
    inputs["x"] = inputs["x"] + 0.5
    inputs["color"] = "red"
    by = {c.column: c for c in drift_report(profile, None, live_frame(inputs, outs)).columns}
    assert by["x"].reference == "profile" and by["x"].method == "ks" and by["x"].drifted
    assert by["color"].drifted and by["color"].psi_drifted
    assert not by["amount"].drifted


def test_output_drift_on_the_label_share_and_a_categorical_output(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    inputs, outs = training(20_000, seed=4)
    rng = np.random.default_rng(5)
    outs["label"] = (rng.random(len(outs)) < 0.3).astype(np.int64)
    outs["kind"] = rng.choice(["ok", "review"], len(outs), p=[0.5, 0.5])
    report = drift_report(profile, frame, live_frame(inputs, outs), output_columns=OUTPUTS)
    by = {c.column: c for c in report.outputs}
    # A 0/1 label: two values, so the Z-test; its profile (no stored outputs) gives the split.
    assert by["label"].method == "z" and by["label"].reference == "profile"
    assert by["label"].drifted and by["label"].psi is not None and by["label"].psi > 0.2
    assert by["kind"].method == "z" and by["kind"].drifted and by["kind"].psi_drifted
    assert report.drifted_columns == ["label", "kind"]


def test_label_profile_split_matches_the_training_share(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    inputs, outs = training(20_000, seed=6)
    report = drift_report(profile, frame, live_frame(inputs, outs), output_columns=OUTPUTS)
    label = report.outputs[0]
    assert label.psi is not None and label.psi < 0.01 and not label.drifted


def test_psi_known_values() -> None:
    assert psi([50, 50], [25, 75]) == pytest.approx(
        (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    )
    assert psi([50, 50], [25, 75]) == pytest.approx(0.2747, abs=1e-4)
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    # An empty bin is floored at 1e-4: large but finite.
    assert psi([100, 0], [50, 50]) == pytest.approx(
        (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    )


def test_psi_counts_live_values_outside_the_range_in_the_outer_bins() -> None:
    profile = {
        "columns": {
            "v": {
                "kind": "numeric",
                "count": 100,
                "missing": 0,
                "min": 0.0,
                "max": 2.0,
                "mean": 1.0,
                "quantiles": {"0.5": 1.0},
                "histogram": {"edges": [0.0, 1.0, 2.0], "counts": [50, 50]},
            }
        }
    }
    live = pd.DataFrame({"v": [-5.0] * 25 + [10.0] * 75})
    column = drift_report(profile, None, live).columns[0]
    assert column.psi == pytest.approx(psi([50, 50], [25, 75]))
    assert column.out_of_range_rate == 1.0 and column.reference == "profile"


def test_missing_and_out_of_range_rates(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    inputs, _ = training(1000, seed=2)
    inputs["x"] = inputs["x"].clip(frame["x"].min(), frame["x"].max())
    inputs.loc[:99, "x"] = np.nan
    inputs.loc[100:149, "x"] = 1e6
    inputs.loc[150:151, "x"] = np.inf
    inputs["color"] = inputs["color"].astype(object)
    inputs.loc[:199, "color"] = None
    inputs.loc[200:299, "color"] = "purple"
    by = {c.column: c for c in drift_report(profile, frame, inputs).columns}
    assert by["x"].missing_rate == pytest.approx(0.102)
    assert by["x"].reference_missing_rate == 0.0
    assert by["x"].out_of_range_rate == pytest.approx(50 / 898)
    assert by["color"].missing_rate == pytest.approx(0.2)
    assert by["color"].out_of_range_rate == pytest.approx(100 / 800)
    # 40 cities are more than the profile lists, so an unseen one cannot be told apart.
    assert by["city"].out_of_range_rate is None


def test_evidently_defaults_by_type_and_size() -> None:
    assert default_method(1000, 100, numeric=True) == "ks"
    assert default_method(1000, 5, numeric=True) == "chisquare"
    assert default_method(1000, 2, numeric=True) == "z"
    assert default_method(1000, 10, numeric=False) == "chisquare"
    assert default_method(1000, 2, numeric=False) == "z"
    assert default_method(1001, 100, numeric=True) == "wasserstein"
    assert default_method(1001, 5, numeric=True) == "jensenshannon"
    assert default_method(1001, 2, numeric=False) == "jensenshannon"


def test_reports_pick_the_default_test_from_the_reference_size() -> None:
    small, _ = training(1000, seed=0)
    large, _ = training(3000, seed=0)
    live, _ = training(5000, seed=1)
    for frame, expected in [
        (small, {"x": "ks", "tier": "chisquare", "member": "z", "color": "chisquare"}),
        (large, {"x": "wasserstein", "tier": "jensenshannon", "color": "jensenshannon"}),
    ]:
        by = {c.column: c for c in drift_report(compute_profile(frame), frame, live).columns}
        assert {k: by[k].method for k in expected} == expected
        assert {k: by[k].threshold for k in expected} == {
            k: 0.05 if m in ("ks", "chisquare", "z") else 0.1 for k, m in expected.items()
        }
    shifted = live.assign(x=live["x"] + 0.5)
    x = next(
        c for c in drift_report(compute_profile(large), large, shifted).columns if c.column == "x"
    )
    assert x.method == "wasserstein" and x.p_value is None
    assert x.score is not None and x.score >= 0.1 and x.drifted


def test_ks_matches_scipy_above_the_exact_size() -> None:
    rng = np.random.default_rng(0)
    reference = np.round(rng.normal(size=1000), 1)
    live = np.round(rng.normal(0.05, 1.0, size=50_000), 1)
    d, p = ks_test(reference, live)
    expected = stats.ks_2samp(reference, live, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_thresholds_and_method_per_column(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    inputs, _ = training(5000, seed=3)
    inputs["x"] = inputs["x"] + 0.15
    thresholds = {
        "x": ColumnThreshold(method="wasserstein", threshold=0.5, psi_threshold=0.01),
        "color": ColumnThreshold(method="jensenshannon", threshold=0.0),
    }
    by = {c.column: c for c in drift_report(profile, frame, inputs, thresholds=thresholds).columns}
    assert by["x"].method == "wasserstein" and by["x"].threshold == 0.5 and not by["x"].drifted
    assert by["x"].psi_threshold == 0.01 and by["x"].psi_drifted
    assert by["color"].method == "jensenshannon" and by["color"].drifted
    with pytest.raises(InvalidInput, match="unknown drift method"):
        ColumnThreshold(method="magic")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="categorical"):
        drift_report(profile, frame, inputs, thresholds={"color": ColumnThreshold(method="ks")})


def test_empty_live_data_reports_nothing(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    report = drift_report(profile, frame, frame.head(0), output_columns=OUTPUTS)
    assert report.rows == 0 and not report.dataset_drift and report.drifted_columns == []
    assert all(c.score is None and c.psi is None and c.missing_rate is None for c in report.columns)
    assert json.dumps(report.to_dict(), allow_nan=False)


def test_all_missing_and_absent_columns(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    inputs, _ = training(500, seed=3)
    inputs["x"] = np.nan
    inputs["color"] = None
    report = drift_report(profile, frame, inputs.drop(columns=["city"]))
    by = {c.column: c for c in report.columns}
    for name in ("x", "color", "city"):
        assert by[name].missing_rate == 1.0 and by[name].score is None and not by[name].alarm
    assert by["visits"].missing_rate == 0.0
    assert json.dumps(report.to_dict(), allow_nan=False)


def test_reference_columns_all_missing_give_no_score() -> None:
    frame = pd.DataFrame({"x": [np.nan] * 50, "s": [None] * 50})
    live = pd.DataFrame({"x": np.arange(50.0), "s": ["a"] * 50})
    report = drift_report(compute_profile(frame), frame, live)
    assert [(c.score, c.psi, c.reference_missing_rate) for c in report.columns] == [
        (None, None, 1.0),
        (None, None, 1.0),
    ]


def test_to_dict_is_json_and_top_ranks_by_psi(
    reference: tuple[dict[str, object], pd.DataFrame, pd.DataFrame],
) -> None:
    profile, frame, _ = reference
    inputs, outs = training(2000, seed=8)
    inputs["color"] = "never-seen"
    report = drift_report(profile, frame, live_frame(inputs, outs), output_columns=OUTPUTS)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    color = next(c for c in data["columns"] if c["column"] == "color")
    assert color["p_value"] < 1e-12 and color["drifted"]
    assert color["out_of_range_rate"] == 1.0
    assert report.top(1)[0].column == "color"
    assert set(data) >= {"rows", "drifted_share", "dataset_drift", "columns", "outputs"}
