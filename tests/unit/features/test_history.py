"""Point-in-time history: each entity row gets the values as they were at its time,
never later ones, from the batch source and the rows pushed offline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.client import Client
from modelport.errors import InvalidInput
from modelport.features.api import Features
from modelport.features.online import MemoryStore
from modelport.features.views import BatchSource, Feature, FeatureView

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@pytest.fixture
def features(client: Client) -> Iterator[Features]:
    api = Features(client, store=MemoryStore())
    yield api
    api.close()


@pytest.fixture
def profile(features: Features, tmp_path: Path) -> FeatureView:
    """u1 changes at 0h, 2h and 4h; u2 once at 1h."""
    table = pa.table(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "ts": [hours(0), hours(2), hours(4), hours(1)],
            "age": [30, 32, 34, 40],
            "emb": [[0.0, 0.0], [2.0, 2.0], [4.0, 4.0], [1.0, 1.0]],
        }
    )
    pq.write_table(table, tmp_path / "profile.parquet")
    view = FeatureView(
        name="profile",
        entity="user_id",
        features=(Feature("age", "long"), Feature("emb", "vector", dim=2)),
        source=BatchSource("ts", path=str(tmp_path / "profile.parquet")),
    )
    features.apply(view)
    return view


def test_each_row_gets_the_values_at_its_time(features: Features, profile: FeatureView) -> None:
    entities = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2", "u3", "u1"],
            "ts": [hours(1), hours(2), hours(3.99), hours(-1), hours(5), hours(1), hours(9)],
            "label": [1, 0, 1, 0, 1, 1, 0],
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    out = features.history("profile", entities, at_column="ts", event_ts_column="as_of")
    assert list(out.columns) == ["user_id", "ts", "label", "age", "emb", "as_of"]
    assert list(out.index) == list(entities.index)
    ages = [None if pd.isna(a) else int(a) for a in out["age"]]
    # at 2h exactly, the 2h row counts (at or before); before 0h and u3: nothing
    assert ages == [30, 32, 32, None, 40, None, 34]
    assert list(out["emb"].iloc[1]) == [2.0, 2.0]
    matched = out.dropna(subset=["as_of"])
    assert (matched["as_of"] <= matched["ts"]).all()


def test_naive_timestamps_are_utc_and_keys_any_type(
    features: Features, client: Client, tmp_path: Path
) -> None:
    table = pa.table({"store": [7, 7], "day": [1_714_521_600, 1_714_608_000], "sales": [1.0, 2.0]})
    pq.write_table(table, tmp_path / "sales.parquet")  # day: epoch seconds of 1 and 2 May
    features.apply(
        FeatureView(
            name="sales",
            entity="store",
            features=(Feature("sales"),),
            source=BatchSource("day", path=str(tmp_path / "sales.parquet")),
        )
    )
    entities = pd.DataFrame(
        {
            "store": [7, 7, 7],
            "ts": pd.to_datetime(["2024-05-01 00:00", "2024-05-01 23:59", "2024-05-02 00:00"]),
        }
    )
    assert list(features.history("sales", entities)["sales"]) == [1.0, 1.0, 2.0]


def test_rows_pushed_offline_are_part_of_history(features: Features, profile: FeatureView) -> None:
    features.push(
        "profile",
        [{"user_id": "u1", "ts": hours(3), "age": 99, "emb": [9, 9]},
         {"user_id": "u4", "ts": hours(0), "age": 7, "emb": [7, 7]}],
        to="offline",
    )  # fmt: skip
    entities = pd.DataFrame(
        {"user_id": ["u1", "u1", "u1", "u4"], "ts": [hours(2.5), hours(3.5), hours(4), hours(1)]}
    )
    out = features.history("profile", entities)
    assert list(out["age"]) == [32, 99, 34, 7]
    # and online nothing was written
    assert features.online("profile", ["u1", "u4"]) == {"u1": None, "u4": None}


def test_a_push_view_has_history_from_its_pushes(features: Features) -> None:
    features.apply(FeatureView(name="clicks", entity="page", features=(Feature("n", "long"),)))
    features.push("clicks", [{"page": "p", "event_ts": hours(1), "n": 1}], to="both")
    features.push("clicks", pd.DataFrame({"page": ["p"], "event_ts": [hours(2)], "n": [2]}), "both")
    entities = pd.DataFrame({"page": ["p", "p", "p"], "ts": [hours(0), hours(1.5), hours(3)]})
    out = features.history("clicks", entities)
    assert [None if pd.isna(v) else int(v) for v in out["n"]] == [None, 1, 2]


def test_no_leakage_against_a_brute_force_and_a_naive_join(
    features: Features, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    n = 2_000
    rows = pd.DataFrame(
        {
            "k": rng.integers(0, 40, n).astype(str),
            "ts": T0 + pd.to_timedelta(rng.integers(0, 10_000, n), unit="s"),
            "x": rng.normal(size=n),
        }
    )
    rows.to_parquet(tmp_path / "x.parquet")
    features.apply(
        FeatureView(
            name="xs",
            entity="k",
            features=(Feature("x"),),
            source=BatchSource("ts", path=str(tmp_path / "x.parquet")),
        )
    )
    entities = pd.DataFrame(
        {
            "k": rng.integers(0, 45, 500).astype(str),
            "at": T0 + pd.to_timedelta(rng.integers(-500, 10_500, 500), unit="s"),
        }
    )
    out = features.history("xs", entities, at_column="at", event_ts_column="as_of")

    matched = out.dropna(subset=["as_of"])
    assert (matched["as_of"] <= matched["at"]).all()  # never a value from the future
    expected = []
    for k, at in zip(entities["k"], entities["at"], strict=True):
        past = rows[(rows["k"] == k) & (rows["ts"] <= at)]
        expected.append(past.loc[past["ts"].idxmax(), "x"] if len(past) else np.nan)
    np.testing.assert_array_equal(out["x"].to_numpy(), np.array(expected))

    # A join on the latest row per entity, ignoring time, leaks the future into most rows.
    latest = rows.sort_values("ts").groupby("k").tail(1).rename(columns={"ts": "naive_ts"})
    naive = entities.merge(latest, on="k", how="left")
    assert (naive["naive_ts"] > naive["at"]).mean() > 0.5
    assert not np.array_equal(naive["x"].to_numpy(), out["x"].to_numpy(), equal_nan=True)


def test_bad_entity_rows_are_named(features: Features, profile: FeatureView) -> None:
    entities = pd.DataFrame({"user_id": ["u1"], "when": [hours(1)]})
    with pytest.raises(InvalidInput, match="no column 'ts' \\(the time column\\)"):
        features.history("profile", entities)
    with pytest.raises(InvalidInput, match="no column 'user_id'"):
        features.history("profile", entities.rename(columns={"user_id": "uid"}), "when")
    with pytest.raises(InvalidInput, match=r"already have the column\(s\) \['age'\]"):
        features.history("profile", entities.assign(age=1), "when")
