"""Batch sources: Parquet, CSV and PostgreSQL rows, checked against the view; the
latest row per entity in a window; vectors from list columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from modelport.errors import InvalidInput
from modelport.features import batch
from modelport.features.api import check_rows
from modelport.features.views import BatchSource, Feature, FeatureView

T0 = datetime(2024, 5, 1, tzinfo=UTC)
FEATURES = (
    Feature("age", "long"),
    Feature("score", "double"),
    Feature("city", "string"),
    Feature("active", "boolean"),
    Feature("emb", "vector", dim=3),
)


def view_of(source: BatchSource) -> FeatureView:
    return FeatureView(name="profile", entity="user_id", features=FEATURES, source=source)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


ROWS = {
    "user_id": ["u1", "u1", "u1", "u2", "u3"],
    "ts": [hours(0), hours(1), hours(2), hours(1), hours(5)],
    "age": [30, 31, 32, 40, 50],
    "score": [0.1, 0.2, 0.3, 0.4, 0.5],
    "city": ["a", "b", "c", "d", "e"],
    "active": [True, False, True, True, False],
    "emb": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], None],
}


def write_parquet(path: Path, rows: dict[str, list[object]] | None = None) -> Path:
    pq.write_table(pa.table(rows or ROWS), path)
    return path


@pytest.fixture
def parquet_view(tmp_path: Path) -> FeatureView:
    path = write_parquet(tmp_path / "profile.parquet")
    return view_of(BatchSource("ts", path=str(path)))


def by_key(table: pa.Table) -> dict[str, dict[str, object]]:
    return {row["user_id"]: row for row in table.to_pylist()}


def test_parquet_rows_are_read_in_the_view_types(parquet_view: FeatureView) -> None:
    table = batch.read_rows(parquet_view)
    assert table.schema == batch.arrow_schema(parquet_view)
    assert table.num_rows == 5
    first = table.to_pylist()[0]
    assert first == {
        "user_id": "u1",
        "ts": hours(0),
        "age": 30,
        "score": 0.1,
        "city": "a",
        "active": True,
        "emb": [1.0, 0.0, 0.0],
    }


def test_latest_per_entity_in_a_half_open_window(parquet_view: FeatureView) -> None:
    latest = by_key(batch.latest_per_entity(parquet_view, hours(1), hours(2)))
    # u1 at 2h is at the (exclusive) end; u3 at 5h is after it; u1 at 0h is before.
    assert set(latest) == {"u1", "u2"}
    assert latest["u1"]["age"] == 31 and latest["u1"]["ts"] == hours(1)
    assert latest["u2"]["emb"] == [1.0, 1.0, 1.0]

    everything = by_key(batch.latest_per_entity(parquet_view))
    assert {k: r["age"] for k, r in everything.items()} == {"u1": 32, "u2": 40, "u3": 50}
    assert everything["u3"]["emb"] is None


def test_csv_source_with_vectors_as_text_and_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "profile.csv"
    path.write_text(
        "user_id,ts,age,score,city,active,emb\n"
        f'7,{hours(0).timestamp()},30,1,a,true,"[1, 2, 3]"\n'
        f'7,{hours(3).timestamp()},31,2.5,b,false,"[4, 5, 6]"\n'
        f'8,{hours(1).timestamp()},40,0.5,c,true,"[0, 0, 0]"\n'
    )
    view = view_of(BatchSource("ts", path=str(path)))
    latest = by_key(batch.latest_per_entity(view, end=hours(2)))
    assert latest["7"]["age"] == 30 and latest["7"]["score"] == 1.0
    assert latest["7"]["emb"] == [1.0, 2.0, 3.0]
    assert latest["8"]["ts"] == hours(1)


def test_text_that_is_no_vector_is_named(tmp_path: Path) -> None:
    path = tmp_path / "profile.csv"
    path.write_text("user_id,ts,age,score,city,active,emb\nu1,2024-05-01,1,1,a,true,oops\n")
    with pytest.raises(InvalidInput, match=r"profile\.csv: .*'oops'.*emb"):
        batch.read_rows(view_of(BatchSource("ts", path=str(path))))


def test_a_missing_column_is_named_with_the_file(tmp_path: Path) -> None:
    rows = {k: v for k, v in ROWS.items() if k != "city"}
    path = write_parquet(tmp_path / "no_city.parquet", rows)
    with pytest.raises(InvalidInput, match=r"no_city\.parquet has no column 'city'"):
        batch.latest_per_entity(view_of(BatchSource("ts", path=str(path))))
    with pytest.raises(InvalidInput, match="has no column 'when'"):
        batch.read_rows(view_of(BatchSource("when", path=str(path))))


@pytest.mark.parametrize(
    ("column", "values", "declared"),
    [
        ("score", ["high"] * 5, "double"),
        ("age", [1.5] * 5, "long"),
        ("city", [1, 2, 3, 4, 5], "string"),
        ("active", [1, 0, 1, 0, 1], "boolean"),
        ("emb", [1, 2, 3, 4, 5], "vector of 3"),
    ],
)
def test_a_wrong_type_is_named_with_the_file(
    tmp_path: Path, column: str, values: list[object], declared: str
) -> None:
    path = write_parquet(tmp_path / "bad.parquet", {**ROWS, column: values})
    with pytest.raises(InvalidInput, match=rf"bad\.parquet: column '{column}' is .* {declared}"):
        batch.read_rows(view_of(BatchSource("ts", path=str(path))))


def test_a_vector_of_the_wrong_dim_names_the_row(tmp_path: Path) -> None:
    emb = [[1.0, 0.0, 0.0], [0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], None]
    path = write_parquet(tmp_path / "dims.parquet", {**ROWS, "emb": emb})
    view = view_of(BatchSource("ts", path=str(path)))
    with pytest.raises(
        InvalidInput, match=r"dims\.parquet: column 'emb' holds a vector of 2 .*'u1'"
    ):
        batch.latest_per_entity(view, end=hours(1.5))
    # A fixed-size list of the wrong size too.
    fixed = pa.table({**ROWS, "emb": pa.array([[1.0, 2.0]] * 5, pa.list_(pa.float32(), 2))})
    pq.write_table(fixed, tmp_path / "fixed.parquet")
    with pytest.raises(InvalidInput, match=r"fixed\.parquet: column 'emb' holds a vector of 2"):
        batch.read_rows(view_of(BatchSource("ts", path=str(tmp_path / "fixed.parquet"))))


def test_pushed_offline_rows_join_the_source_and_win_a_tie(
    parquet_view: FeatureView, tmp_path: Path
) -> None:
    offline = tmp_path / "offline"
    checked = check_rows(
        parquet_view,
        [
            {"user_id": "u2", "ts": hours(1), "age": 41, "score": 1.0, "city": "x",
             "active": False, "emb": [2, 2, 2]},
            {"user_id": "u9", "ts": hours(0), "age": 9, "score": None, "city": None,
             "active": None, "emb": None},
        ],
        now=0.0,
    )  # fmt: skip
    batch.write_offline(batch.offline_table(parquet_view, checked), offline)
    latest = by_key(batch.latest_per_entity(parquet_view, offline_dir=offline))
    assert latest["u2"]["age"] == 41 and latest["u2"]["emb"] == [2.0, 2.0, 2.0]
    assert latest["u9"]["age"] == 9
    assert latest["u1"]["age"] == 32


@pytest.mark.postgres
def test_postgres_query_source(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE profiles (user_id INT, updated TIMESTAMPTZ, age INT, "
            "score NUMERIC(6, 2), city TEXT, active BOOLEAN, emb DOUBLE PRECISION[])"
        )
        conn.execute(
            sa.text(
                "INSERT INTO profiles VALUES (:k, :t, :age, :score, :city, :active, :emb)"
            ),
            [
                {"k": 1, "t": hours(0), "age": 30, "score": 0.5, "city": "a%b",
                 "active": True, "emb": [1.0, 2.0, 3.0]},
                {"k": 1, "t": hours(2), "age": 31, "score": 1.5, "city": "b",
                 "active": False, "emb": [4.0, 5.0, 6.0]},
                {"k": 2, "t": hours(1), "age": 40, "score": 2.0, "city": "c",
                 "active": True, "emb": None},
            ],
        )  # fmt: skip
    engine.dispose()
    query = "SELECT user_id, updated, age, score, city, active, emb FROM profiles "
    view = view_of(
        BatchSource("updated", query=query + "WHERE city NOT LIKE 'z%'", url=postgres_url)
    )
    latest = by_key(batch.latest_per_entity(view, end=hours(1.5)))
    assert latest["1"]["city"] == "a%b" and latest["1"]["emb"] == [1.0, 2.0, 3.0]
    assert latest["1"]["score"] == 0.5 and latest["2"]["age"] == 40
    assert by_key(batch.latest_per_entity(view))["1"]["age"] == 31
    assert batch.read_rows(view, start=hours(1)).num_rows == 2

    missing = view_of(
        BatchSource("updated", query="SELECT user_id, updated FROM profiles", url=postgres_url)
    )
    with pytest.raises(InvalidInput, match="the query of view profile has no column 'age'"):
        batch.latest_per_entity(missing)
    wrong = view_of(
        BatchSource("updated", query=query.replace("city,", "age AS city,"), url=postgres_url)
    )
    with pytest.raises(InvalidInput, match="column 'city' is BIGINT.*string"):
        batch.latest_per_entity(wrong)


def test_pushed_rows_are_checked_against_the_view(parquet_view: FeatureView) -> None:
    good = {"user_id": "u1", "age": 1, "score": 2, "city": "a", "active": True, "emb": [1, 2, 3]}
    (key, _, values), = check_rows(parquet_view, [good], now=123.0)  # fmt: skip
    assert key == "u1" and values["score"] == 2.0 and values["emb"] == [1.0, 2.0, 3.0]
    cases = [
        ({**good, "age": "old"}, r"rows\[0\]\.age is 'old' \(str\), but the feature is long"),
        ({**good, "active": 1}, r"rows\[0\]\.active is 1 .* boolean"),
        ({**good, "emb": [1, 2]}, r"rows\[0\]\.emb holds 2 values; .* dim 3"),
        ({**good, "emb": "nope"}, r"rows\[0\]\.emb must be a list of 3 numbers"),
        ({**good, "colour": "red"}, r"column\(s\) \['colour'\] that view profile does not have"),
        ({k: v for k, v in good.items() if k != "city"}, r"lacks the column\(s\) \['city'\]"),
        ({**good, "user_id": None}, r"user_id \(the entity key\) is null"),
        ({**good, "ts": "yesterday"}, r"rows\[0\]\.ts is not a time: 'yesterday'"),
    ]
    for row, message in cases:
        with pytest.raises(InvalidInput, match=message):
            check_rows(parquet_view, [row], now=0.0)
