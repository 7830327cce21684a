"""Loading modelport.yaml: a valid file parses; every error names file:line:col and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.config.schema import ConfigFile, SourceMap, dotted, load_config
from modelport.errors import InvalidConfig

from .conftest import WriteYaml

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


def at(path: Path, needle: str, column: int | None = None) -> str:
    """``file:line:`` (or ``file:line:col:``) of the one line of ``path`` holding ``needle``."""
    lines = [n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text]
    assert len(lines) == 1, f"{needle!r} is on lines {lines}"
    return f"{path}:{lines[0]}:" + (f"{column}:" if column is not None else "")


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
    message = error_of(path)
    assert (
        f"{path}:5:9: environments.production.endpoints.fraud.modle: "
        "unknown field (did you mean 'model'?)"
    ) in message
    assert f"{path}:4:7: environments.production.endpoints.fraud.model: required field" in message


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
