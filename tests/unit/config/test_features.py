"""The ``features:`` section and endpoint ``features``: parsed, checked at their lines,
planned, applied once, and joined onto deployments."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelport.client import Client
from modelport.config import apply, load_config, plan_file
from modelport.config.features import FeatureSpec, FeatureViewSpec, check_views
from modelport.config.plan import Plan
from modelport.errors import InvalidConfig
from modelport.features.views import (
    Aggregation,
    BatchSource,
    Feature,
    FeatureView,
    StreamSource,
)
from modelport.registry.features import FeatureViewStore

from .conftest import WriteYaml, at

VIEWS = """
features:
  user_profile:
    entity: user_id
    source: {path: data/profiles.csv, timestamp_column: updated_at}
    features:
      age: double
      country: string
      embedding: {type: vector, dim: 8}
      score: {type: double, default: 0.5}
    ttl: 1d
    on_missing: default
    on_stale: error
    owner: ana@example.com
  user_stats:
    entity: user_id
    source: {stream: transactions, timestamp_field: ts, allowed_lateness: 1m}
    aggregations:
      tx_count_1h: {function: count, window: 1h}
      amount_mean_1h: {function: mean, field: amount, window: 1h}
      merchants_1d: {function: distinct_count, field: merchant, window: 1d}
    ttl: 1h
  clicks:
    entity: session_id
    features: {last_page: string}
"""

ENDPOINT = """
models:
  fraud:
    owner: ana@example.com
    versions:
      - path: artifacts/fraud.skops
        sample: data/sample.csv
environments:
  production:
    endpoints:
      fraud:
        model: models:/fraud/1
        features: [user_profile, user_stats]
"""


@pytest.fixture
def profiles(workspace: Path) -> Path:
    path = workspace / "data" / "profiles.csv"
    path.write_text("user_id,updated_at,age\nu1,2024-01-01T00:00:00Z,41\n", encoding="utf-8")
    return path


def actions(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.kind, c.action, c.target) for c in p.changes]


def error_of(client: Client, path: Path) -> str:
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    return str(info.value)


def load_error(path: Path) -> str:
    with pytest.raises(InvalidConfig) as info:
        load_config(path)
    return str(info.value)


# -- parsing ----------------------------------------------------------------------


def test_each_entry_becomes_a_feature_view(write_yaml: WriteYaml) -> None:
    config, _ = load_config(write_yaml(VIEWS))
    views = {name: spec.view(name) for name, spec in config.features.items()}

    assert views["user_profile"] == FeatureView(
        name="user_profile",
        entity="user_id",
        features=(
            Feature("age", "double"),
            Feature("country", "string"),
            Feature("embedding", "vector", dim=8),
            Feature("score", "double", default=0.5),
        ),
        source=BatchSource(timestamp_column="updated_at", path="data/profiles.csv"),
        ttl_s=86400.0,
        on_missing="default",
        on_stale="error",
        owner="ana@example.com",
    )
    assert views["user_stats"] == FeatureView(
        name="user_stats",
        entity="user_id",
        aggregations=(
            Aggregation("tx_count_1h", "count", None, 3600.0),
            Aggregation("amount_mean_1h", "mean", "amount", 3600.0),
            Aggregation("merchants_1d", "distinct_count", "merchant", 86400.0),
        ),
        source=StreamSource(stream="transactions", timestamp_field="ts", allowed_lateness_s=60.0),
        ttl_s=3600.0,
    )
    assert views["clicks"].kind == "push"
    assert views["clicks"].on_missing == "null"


def test_a_query_source_and_stream_defaults(write_yaml: WriteYaml) -> None:
    config, _ = load_config(
        write_yaml(
            """
            features:
              orders:
                entity: user_id
                source:
                  query: SELECT * FROM orders
                  url: postgresql://db/x
                  timestamp_column: ts
                features: {total: double, paid: boolean, n: long}
              events:
                entity: user_id
                source: {stream: events}
                aggregations: {last_page: {function: last, field: page, window: 30m}}
            """
        )
    )
    orders = config.features["orders"].view("orders")
    events = config.features["events"].view("events")

    assert orders.source == BatchSource("ts", query="SELECT * FROM orders", url="postgresql://db/x")
    assert events.source == StreamSource(stream="events")


@pytest.mark.parametrize(
    ("lines", "needle", "message"),
    [
        (
            "aggregations: {m: {function: median, field: amount, window: 1h}}",
            "median",
            "features.v.aggregations.m.function: input should be 'count', 'sum', 'mean', "
            "'min', 'max', 'distinct_count' or 'last', got 'median'",
        ),
        (
            "aggregations:\n  n:\n    function: count\n    field: amount\n    window: 1h",
            "field: amount",
            "features.v.aggregations.n.field: count counts events and takes no field; drop it",
        ),
        (
            "aggregations:\n  s:\n    function: sum\n    window: 1h",
            " s:",
            "features.v.aggregations.s.field: sum needs the event `field` it reads",
        ),
        (
            "aggregations:\n  n: {function: count, window: 0s}",
            "n: {",
            "features.v.aggregations.n.window: input should be greater than 0, got '0s'",
        ),
        (
            "aggregations:\n  n: {function: count, window: soon}",
            "n: {",
            "features.v.aggregations.n.window: 'soon' is not a duration",
        ),
        (
            "features: {x: double}\naggregations: {n: {function: count, window: 1h}}",
            "aggregations:",
            "features.v.aggregations: a view has `features` (batch or push) or "
            "`aggregations` (stream), not both",
        ),
        (
            "features: {x: double}",
            "features: {x",
            "features.v.features: a stream view has `aggregations`, not `features`",
        ),
        (
            "ttl: 1h",
            " v:",  # a missing field is reported at its parent
            "features.v.aggregations: a stream view needs `aggregations`",
        ),
    ],
)
def test_stream_view_errors_name_their_line(
    write_yaml: WriteYaml, lines: str, needle: str, message: str
) -> None:
    view = textwrap.indent(lines, "    ")
    path = write_yaml(f"features:\n  v:\n    entity: user_id\n    source: {{stream: tx}}\n{view}\n")

    error = load_error(path)

    assert error.startswith(at(path, needle)), error
    assert message in error


@pytest.mark.parametrize(
    ("features", "needle", "message"),
    [
        (
            "embedding: vector",
            "embedding",
            "features.v.features.embedding.dim: a vector needs `dim`, its length",
        ),
        (
            "age: {type: long, dim: 3}",
            "age",
            "features.v.features.age.dim: only a vector has a dim, not a long",
        ),
        (
            "age: {type: long, default: 1.5}",
            "age",
            "features.v.features.age.default: 1.5 is not a long",
        ),
        (
            "age: float",
            "age",
            "features.v.features.age.type: input should be 'double', 'long', 'string', "
            "'boolean' or 'vector', got 'float'",
        ),
        (
            "user_id: double",
            "user_id: double",
            "features.v.features.user_id: user_id is the entity key, not a feature",
        ),
        (
            "2fast: double",
            "2fast",
            "features.v.features.2fast: feature '2fast' must start with a letter or _",
        ),
        (
            "age: {type: double, defualt: 1}",
            "age",
            "features.v.features.age.defualt: unknown field (did you mean 'default'?)",
        ),
    ],
)
def test_feature_errors_name_their_line(
    write_yaml: WriteYaml, features: str, needle: str, message: str
) -> None:
    path = write_yaml(f"features:\n  v:\n    entity: user_id\n    features:\n      {features}\n")

    error = load_error(path)

    assert error.startswith(at(path, needle)), error
    assert message in error


@pytest.mark.parametrize(
    ("source", "needle", "message"),
    [
        (
            "{query: 'SELECT 1', timestamp_column: ts}",
            "source",
            "features.v.source.url: a query needs the `url` of the PostgreSQL it runs on",
        ),
        (
            "{path: a.csv, query: 'SELECT 1', url: 'postgresql://db', timestamp_column: ts}",
            "source",
            "features.v.source.query: set path or query, not both",
        ),
        (
            "{path: a.csv}",
            "source",
            "features.v.source.timestamp_column: a batch source needs `timestamp_column`",
        ),
        (
            "{path: a.csv, timestamp_column: ts, allowed_lateness: 1m}",
            "source",
            "features.v.source.allowed_lateness: only a stream source takes this",
        ),
        (
            "{timestamp_column: ts}",
            "source",
            "features.v.source: say where the data is: `path`, `query` with `url`, or `stream`",
        ),
    ],
)
def test_source_errors_name_their_line(
    write_yaml: WriteYaml, source: str, needle: str, message: str
) -> None:
    path = write_yaml(
        f"features:\n  v:\n    entity: user_id\n    source: {source}\n    features: {{x: double}}\n"
    )

    error = load_error(path)

    assert error.startswith(at(path, needle)), error
    assert message in error


def test_view_level_errors_name_their_line(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        features:
          profile:
            entity: user id
            features: {x: double}
            ttl: later
            on_stale: ignore
          bad-name:
            entity: user_id
            features: {x: double}
          empty:
            entity: user_id
        """
    )

    error = load_error(path)

    assert f"{at(path, 'user id', 5)} features.profile.entity: entity key 'user id'" in error
    assert f"{at(path, 'later', 5)} features.profile.ttl: 'later' is not a duration" in error
    assert f"{at(path, 'ignore')}" in error
    assert f"{at(path, 'bad-name', 3)} features.bad-name: feature view 'bad-name'" in error
    assert f"{at(path, 'empty', 3)} features.empty.features: a batch or push view needs" in error


def test_what_the_view_itself_refuses_is_reported_at_that_field() -> None:
    # The file's checks come first; the domain's own, run last, still name the field.
    vector = FeatureSpec.model_construct(type="vector", dim=None, default=None)
    spec = FeatureViewSpec.model_construct(entity="user_id", features={"e": vector})

    with pytest.raises(ValidationError) as info:
        check_views({"v": spec})

    assert [(e["loc"], e["msg"]) for e in info.value.errors()] == [
        (("v", "features", "e"), "feature e: a vector has a dim, other types none")
    ]


# -- planning and applying ---------------------------------------------------------


def test_views_are_created_before_deployments_then_unchanged(
    client: Client, write_yaml: WriteYaml, profiles: Path
) -> None:
    path = write_yaml(VIEWS + ENDPOINT)
    store = FeatureViewStore(client.registry.engine)

    first = plan_file(client, path)

    assert actions(first) == [
        ("model", "create", "fraud"),
        ("version", "create", "fraud v(new)"),
        ("features", "create", "user_profile"),
        ("features", "create", "user_stats"),
        ("features", "create", "clicks"),
        ("deployment", "create", "production/fraud"),
    ]
    details = {c.target: c.detail for c in first.changes}
    assert details["user_profile"] == (
        "entity user_id; batch data/profiles.csv (time updated_at); "
        "features age, country, embedding, score; ttl 1d; on_missing default; on_stale error"
    )
    assert details["user_stats"] == (
        "entity user_id; stream transactions (time ts, lateness 1m); "
        "aggregations tx_count_1h, amount_mean_1h, merchants_1d; ttl 1h"
    )
    assert details["clicks"] == "entity session_id; push; features last_page"
    assert details["production/fraud"] == (
        "fraud v(new) (models:/fraud/1); features [user_profile, user_stats]"
    )
    assert store.list() == []  # planning writes nothing

    result = apply(client, first)

    assert [c.target for c in result.changes][2:5] == ["user_profile", "user_stats", "clicks"]
    assert result.changes[2].detail.endswith(", revision 1")
    stored = store.get("user_profile")
    assert isinstance(stored.source, BatchSource)
    assert stored.source.path == str(profiles.resolve())  # resolved from the file's folder
    deployment = client.registry.get_deployment("production", "fraud")
    assert deployment.spec.features == ("user_profile", "user_stats")

    again = plan_file(client, path)

    assert not again.has_changes
    assert {c.action for c in again.changes} == {"unchanged"}
    assert apply(client, again).changes == []
    assert store.get("user_profile") == stored
    assert client.registry.get_deployment("production", "fraud").revision == deployment.revision


def test_a_changed_ttl_is_an_update_showing_the_difference(
    client: Client, write_yaml: WriteYaml, profiles: Path
) -> None:
    apply(client, plan_file(client, write_yaml(VIEWS)))
    changed = VIEWS.replace("ttl: 1d", "ttl: 2h").replace("country: string", "country: long")
    changed = changed.replace("    owner: ana@example.com\n", "")

    p = plan_file(client, write_yaml(changed))

    assert actions(p) == [
        ("features", "update", "user_profile"),
        ("features", "unchanged", "user_stats"),
        ("features", "unchanged", "clicks"),
    ]
    assert p.changes[0].detail == (
        "features.country string -> long; ttl 1d -> 2h; owner ana@example.com -> -"
    )
    assert "~ features    user_profile  features.country string -> long" in p.render()

    result = apply(client, p)

    assert result.changes[0].detail.endswith(", revision 2")
    view = FeatureViewStore(client.registry.engine).get("user_profile")
    assert view.ttl_s == 7200.0
    assert view.owner is None
    assert not plan_file(client, write_yaml(changed)).has_changes


def test_source_and_feature_changes_are_named(
    client: Client, write_yaml: WriteYaml, profiles: Path
) -> None:
    apply(client, plan_file(client, write_yaml(VIEWS)))
    changed = VIEWS.replace("allowed_lateness: 1m", "allowed_lateness: 5m")
    changed = changed.replace("features: {last_page: string}", "features: {referrer: string}")

    details = {c.target: c.detail for c in plan_file(client, write_yaml(changed)).changes}

    assert details["user_stats"] == (
        "source stream transactions (time ts, lateness 1m) -> "
        "stream transactions (time ts, lateness 5m)"
    )
    assert details["clicks"] == "features -last_page; features +referrer string"


def test_adding_views_to_a_deployed_endpoint_shows_them(
    client: Client, write_yaml: WriteYaml, profiles: Path
) -> None:
    without = ENDPOINT.replace("        features: [user_profile, user_stats]\n", "")
    apply(client, plan_file(client, write_yaml(VIEWS + without)))

    p = plan_file(client, write_yaml(VIEWS + ENDPOINT.replace(", user_stats", "")))

    assert ("deployment", "update", "production/fraud") in actions(p)
    assert p.changes[-1].detail == "features [] -> [user_profile]"
    apply(client, p)
    spec = client.registry.get_deployment("production", "fraud").spec
    assert spec.features == ("user_profile",)


def test_an_endpoint_may_join_a_view_only_the_registry_has(
    client: Client, write_yaml: WriteYaml, profiles: Path
) -> None:
    apply(client, plan_file(client, write_yaml(VIEWS)))

    p = plan_file(client, write_yaml(ENDPOINT))

    assert actions(p)[-1] == ("deployment", "create", "production/fraud")
    apply(client, p)
    spec = client.registry.get_deployment("production", "fraud").spec
    assert spec.features == ("user_profile", "user_stats")


def test_an_unknown_view_is_an_error_at_its_line(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(
        ENDPOINT.replace(
            "[user_profile, user_stats]", "\n          - user_profile\n          - usr_stats"
        )
    )

    error = error_of(client, path)

    assert error.splitlines() == [
        f"{at(path, 'user_profile', 13)} environments.production.endpoints.fraud.features[0]: "
        "feature view 'user_profile' is neither in the registry nor in this file's `features:`",
        f"{at(path, 'usr_stats', 13)} environments.production.endpoints.fraud.features[1]: "
        "feature view 'usr_stats' is neither in the registry nor in this file's `features:`",
    ]
    assert client.deployments() == []


def test_a_view_listed_twice_is_an_error(write_yaml: WriteYaml) -> None:
    path = write_yaml(VIEWS + ENDPOINT.replace("user_stats]", "user_stats, user_profile]"))

    error = load_error(path)

    assert (
        "environments.production.endpoints.fraud.features[2]: user_profile is listed twice" in error
    )
    assert error.startswith(at(path, "[user_profile, user_stats, user_profile]"))


def test_a_missing_source_file_is_an_error_at_its_line(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(VIEWS)

    error = error_of(client, path)

    assert error.startswith(
        f"{at(path, 'profiles.csv', 14)} features.user_profile.source.path: "
        "source data/profiles.csv does not exist"
    )


def test_remote_and_absolute_sources_are_kept_as_written(
    client: Client, write_yaml: WriteYaml, tmp_path: Path
) -> None:
    absolute = tmp_path / "elsewhere.parquet"
    absolute.touch()
    path = write_yaml(
        f"""
        features:
          remote:
            entity: user_id
            source: {{path: "s3://bucket/profiles/*.parquet", timestamp_column: ts}}
            features: {{age: double}}
          local:
            entity: user_id
            source: {{path: "{absolute}", timestamp_column: ts}}
            features: {{age: double}}
        """
    )

    apply(client, plan_file(client, path))

    store = FeatureViewStore(client.registry.engine)
    remote, local = store.get("remote").source, store.get("local").source
    assert isinstance(remote, BatchSource) and isinstance(local, BatchSource)
    assert remote.path == "s3://bucket/profiles/*.parquet"
    assert local.path == str(absolute.resolve())


def test_a_query_url_password_is_kept_out_of_the_plan(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(
        """
        features:
          orders:
            entity: user_id
            source:
              query: SELECT * FROM orders
              url: postgresql://ml:s3cret@db:5432/shop
              timestamp_column: ts
            features: {total: double}
        """
    )

    detail = plan_file(client, path).changes[0].detail

    assert "s3cret" not in detail
    assert "query on postgresql://ml:***@db:5432/shop" in detail
