"""Loading modelport.yaml: a valid file parses; every error names file:line:col and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from modelport.config.schema import ConfigFile, SourceMap, dotted, load_config
from modelport.errors import InvalidConfig
from modelport.registry import RolloutPolicy, Routing
from modelport.registry.entities import SHADOW_STEP

from .conftest import WriteYaml, at

VALID = """
# paths are relative to this file's folder
models:
  fraud:
    owner: ana@example.com
    team: risk
    description: Card fraud classifier
    tags: {domain: payments, year: 2024}
    versions:
      - path: artifacts/fraud.skops
        flavor: sklearn
        sample: data/sample.csv
        metrics: {roc_auc: 0.93}
        aliases: [champion]
    aliases:
      candidate: 1
environments:
  staging:
    endpoints:
      fraud:
        model: models:/fraud@champion
  production:
    endpoints:
      fraud: {model: models:/fraud/1}
"""


def error_of(path: Path) -> str:
    with pytest.raises(InvalidConfig) as info:
        load_config(path)
    return str(info.value)


def test_a_valid_file_loads_with_defaults(write_yaml: WriteYaml) -> None:
    config, source = load_config(write_yaml(VALID))

    fraud = config.models["fraud"]
    assert fraud.owner == "ana@example.com"
    assert fraud.tags == {"domain": "payments", "year": "2024"}
    version = fraud.versions[0]
    assert version.metrics == {"roc_auc": 0.93}
    assert version.trust is False
    assert version.aliases == ["champion"]
    assert fraud.aliases == {"candidate": 1}
    assert config.environments["production"].endpoints["fraud"].model == "models:/fraud/1"
    assert source.position(("models", "fraud", "versions", 0, "path")) == (9, 9)


def test_unknown_field_names_line_column_path_and_suggestion(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        environments:
          production:
            endpoints:
              fraud:
                modle: models:/fraud/1
        """
    )
    assert error_of(path).startswith(
        f"{path}:5:9: environments.production.endpoints.fraud.modle: "
        "unknown field (did you mean 'model'?)"
    )


def test_wrong_type_names_the_value(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        models:
          fraud:
            owner: ana@example.com
            versions:
              - path: artifacts/fraud.skops
                trust: "yes"
                metrics: {roc_auc: high}
        """
    )
    message = error_of(path)
    assert at(path, "trust", 9) + " models.fraud.versions[0].trust: input should be a valid " in (
        message
    )
    assert at(path, "roc_auc") in message
    assert "models.fraud.versions[0].metrics.roc_auc" in message


def test_bad_model_uri(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        environments:
          production:
            endpoints:
              fraud: {model: "models:/fraud/v3"}
        """
    )
    message = error_of(path)
    assert at(path, "fraud/v3", 15) + " environments.production.endpoints.fraud.model" in message
    assert "invalid model URI 'models:/fraud/v3'" in message


@pytest.mark.parametrize(
    ("text", "where", "field"),
    [
        ("models:\n  'fraud model':\n    owner: a\n", "2:3", "models.fraud model"),
        (
            "environments:\n  prod:\n    endpoints:\n      -fraud: {model: models:/f/1}\n",
            "4:7",
            "environments.prod.endpoints.-fraud",
        ),
        ("environments:\n  pr/od: {}\n", "2:3", "environments.pr/od"),
    ],
)
def test_bad_names(write_yaml: WriteYaml, text: str, where: str, field: str) -> None:
    path = write_yaml(text)
    assert f"{path}:{where}: {field}: invalid " in error_of(path)


def test_an_alias_that_reads_as_a_version_is_refused(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        models:
          fraud:
            owner: ana@example.com
            aliases: {latest: 1}
        """
    )
    assert at(path, "latest", 15) + " models.fraud.aliases.latest: alias 'latest'" in error_of(path)


def test_an_alias_set_twice_is_refused(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        models:
          fraud:
            owner: ana@example.com
            versions:
              - path: a.skops
                aliases: [champion]
            aliases:
              champion: 3
        """
    )
    message = error_of(path)
    assert (
        at(path, "champion: 3", 7) + " models.fraud.aliases.champion: alias 'champion'" in message
    )
    assert "first on line 6" in message


def test_yaml_syntax_error_gives_line_and_column(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        models:
          fraud:
            owner: ana@example.com
           team: risk
        """
    )
    message = error_of(path)
    assert f"{path}:4:4: YAML syntax error: " in message
    assert "started on line 2" in message


def test_duplicate_keys_are_errors(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        models:
          fraud:
            owner: ana@example.com
            owner: bob@example.com
        """
    )
    assert f"{path}:4:5: models.fraud.owner: duplicate key (the first one is on line 3)" in (
        error_of(path)
    )


def test_several_errors_come_together_in_file_order(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        models:
          fraud:
            ownr: ana@example.com
        environments:
          production:
            endpoints:
              fraud: {model: "fraud@"}
        """
    )
    lines = error_of(path).splitlines()
    assert lines[0].startswith(f"{path}:2:3: models.fraud.owner: required field is missing")
    assert lines[1].startswith(f"{path}:3:5: models.fraud.ownr: unknown field")
    assert lines[2].startswith(f"{path}:7:15: environments.production.endpoints.fraud.model")


def test_an_empty_or_non_mapping_file_is_refused(write_yaml: WriteYaml) -> None:
    assert "the file is empty" in error_of(write_yaml(""))
    path = write_yaml("- models\n")
    assert f"{path}:1:1: (top level): expected a mapping of fields, got a list" in error_of(path)


def test_a_missing_file_is_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="no such file"):
        load_config(tmp_path / "nope.yaml")


def test_source_map_falls_back_to_the_nearest_parent() -> None:
    source = SourceMap(file="m.yaml", positions={(): (1, 1), ("models",): (2, 1)})
    assert source.describe(("models", "fraud", "owner")) == "m.yaml:2:1: models.fraud.owner"
    assert SourceMap.empty().describe(("models", "x")) == "models.x"
    assert dotted(("models", "fraud", "versions", 0, "path")) == "models.fraud.versions[0].path"


def test_the_schema_forbids_unknown_fields_everywhere() -> None:
    schema = ConfigFile.model_json_schema()
    for definition in schema["$defs"].values():
        assert definition["additionalProperties"] is False
    assert schema["additionalProperties"] is False


ENDPOINTS = """
environments:
  production:
    endpoints:
      fraud_ab:
        variants:
          - model: models:/fraud/3
            weight: 90
          - model: models:/fraud/4
            weight: 10
          - model: models:/fraud_lr/1
            shadow: true
        routing:
          sticky_header: X-User-Id
        rollout:
          steps: [shadow, 5, 25, 50, 100]
          interval: 5m
          min_requests: 200
          max_error_rate: 0.01
      scorer:
        follow: models:/fraud@champion
        routing: {sticky_field: user_id}
"""


def test_variants_routing_rollout_and_follow_load(write_yaml: WriteYaml) -> None:
    config, _ = load_config(write_yaml(ENDPOINTS))

    endpoints = config.environments["production"].endpoints
    split = endpoints["fraud_ab"]
    assert [(loc, v.model, v.weight, v.shadow) for loc, v in split.listed()] == [
        (("variants", 0, "model"), "models:/fraud/3", 90.0, False),
        (("variants", 1, "model"), "models:/fraud/4", 10.0, False),
        (("variants", 2, "model"), "models:/fraud_lr/1", None, True),
    ]
    assert split.routing.routing() == Routing(sticky_header="X-User-Id")
    assert split.rollout.policy() == RolloutPolicy(
        steps=(SHADOW_STEP, 5, 25, 50, 100), interval_s=300, min_requests=200, max_error_rate=0.01
    )
    assert split.followed() is None
    scorer = endpoints["scorer"]
    assert scorer.followed() == "fraud@champion"
    assert [(loc, v.model) for loc, v in scorer.listed()] == [
        (("follow",), "models:/fraud@champion")
    ]
    assert scorer.rollout.policy() == RolloutPolicy()
    assert scorer.routing.routing() == Routing(sticky_field="user_id")


def endpoint_error(write_yaml: WriteYaml, body: str) -> tuple[Path, str]:
    """The error of a file whose one endpoint, production/fraud, is ``body``."""
    head = "environments:\n  production:\n    endpoints:\n      fraud:\n"
    indented = "".join(f"        {line}\n" for line in textwrap.dedent(body).strip().splitlines())
    path = write_yaml(head + indented)
    return path, error_of(path)


@pytest.mark.parametrize(
    ("body", "needle", "column", "field", "problem"),
    [
        (
            """
            variants:
              - {model: fraud/1, weight: 90}
              - {model: fraud/2}
            """,
            "fraud/2",
            13,
            "variants[1].weight",
            "a live variant needs a weight (or `shadow: true`)",
        ),
        (
            """
            variants:
              - model: fraud/1
                weight: 0
            """,
            "weight",
            13,
            "variants[0].weight",
            "input should be greater than 0, got 0",
        ),
        (
            """
            variants:
              - {model: fraud/1, weight: 100}
              - model: fraud/2
                shadow: true
                weight: 5
            """,
            "weight: 5",
            13,
            "variants[1].weight",
            "a shadow gets a copy of traffic, not a share: drop it",
        ),
        (
            """
            variants:
              - {model: fraud/2, shadow: true}
            """,
            "variants",
            9,
            "variants",
            "needs a live variant (one without `shadow: true`)",
        ),
        (
            """
            variants:
              - {model: models:/fraud/1, weight: 50}
              - {model: fraud/1, weight: 50}
            """,
            "- {model: fraud/1",
            14,
            "variants[1].model",
            "fraud/1 is listed twice; first as variants[0]",
        ),
        (
            """
            model: fraud/1
            follow: fraud@champion
            """,
            "follow",
            9,
            "follow",
            "`model` is set too; write one of `model`, `variants` or `follow`",
        ),
        (
            "serving: {batching: false}",
            "fraud:",
            7,
            "",
            "say what it serves: one of `model`, `variants` or `follow`",
        ),
        (
            "follow: models:/fraud/3",
            "follow",
            9,
            "follow",
            "follow takes an alias URI like models:/NAME@ALIAS, not 'models:/fraud/3'",
        ),
        (
            "model: fraud/1\nrouting: {sticky_header: X-User, sticky_field: user}",
            "routing",
            42,
            "routing.sticky_field",
            "set sticky_header or sticky_field, not both",
        ),
        (
            "model: fraud/1\nrollout:\n  steps: [shadow, 50, 25, 100]",
            "steps",
            11,
            "rollout.steps",
            "rollout steps must increase",
        ),
        (
            "model: fraud/1\nrollout:\n  steps: [5, 50]",
            "steps",
            11,
            "rollout.steps",
            "rollout steps must run from 0..100 and end at 100",
        ),
        (
            "model: fraud/1\nrollout:\n  steps: [0, 100]",
            "steps",
            19,
            "rollout.steps[0]",
            "write step 0 as `shadow`",
        ),
        (
            "model: fraud/1\nrollout:\n  interval: 0s",
            "interval",
            11,
            "rollout.interval",
            "the rollout interval must be above 0",
        ),
        (
            "model: fraud/1\nrollout:\n  interval: soon",
            "interval",
            11,
            "rollout.interval",
            "'soon' is not a duration",
        ),
        (
            "model: fraud/1\nrollout:\n  max_error_rate: 2",
            "max_error_rate",
            11,
            "rollout.max_error_rate",
            "input should be less than or equal to 1, got 2",
        ),
    ],
)
def test_endpoint_errors_name_their_line(
    write_yaml: WriteYaml, body: str, needle: str, column: int, field: str, problem: str
) -> None:
    path, message = endpoint_error(write_yaml, body)
    where = "environments.production.endpoints.fraud" + (f".{field}" if field else "")
    assert f"{at(path, needle, column)} {where}: {problem}" in message
