"""Planning and applying modelport.yaml against a registry in tmp_path."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelport.client import Client
from modelport.config import apply, load_config, plan, plan_file
from modelport.config.plan import Change, Plan
from modelport.errors import InvalidConfig

from .conftest import WriteYaml

CONFIG = """
models:
  fraud:
    owner: ana@example.com
    team: risk
    description: Card fraud classifier
    tags: {domain: payments}
    versions:
      - path: artifacts/fraud.skops
        sample: data/sample.csv
        metrics: {roc_auc: 0.93}
        aliases: [champion]
      - path: artifacts/fraud2.skops
        sample: data/sample.csv
    aliases:
      candidate: 2
environments:
  staging:
    endpoints:
      fraud:
        model: models:/fraud@champion
  production:
    endpoints:
      fraud: {model: models:/fraud/1}
"""


def actions(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.kind, c.action, c.target) for c in p.changes]


def registry_state(client: Client) -> tuple[object, ...]:
    """Everything an apply could change: versions, aliases, metadata, deployment revisions."""
    models = [m.to_dict() | {"updated_at": None} for m in client.list_models()]
    versions = [
        (v.name, v.version) for m in client.list_models() for v in client.list_versions(m.name)
    ]
    deployments = [(d.environment, d.endpoint, d.revision) for d in client.deployments()]
    return models, versions, deployments


def test_a_new_file_plans_to_create_everything_and_writes_nothing(
    client: Client, write_yaml: WriteYaml
) -> None:
    p = plan_file(client, write_yaml(CONFIG))

    assert actions(p) == [
        ("model", "create", "fraud"),
        ("version", "create", "fraud v(new 1)"),
        ("version", "create", "fraud v(new 2)"),
        ("alias", "create", "fraud@champion"),
        ("alias", "create", "fraud@candidate"),
        ("deployment", "create", "staging/fraud"),
        ("deployment", "create", "production/fraud"),
    ]
    assert p.has_changes
    details = {c.target: c.detail for c in p.changes}
    assert details["staging/fraud"] == "fraud v(new 1) (models:/fraud@champion)"
    assert details["production/fraud"] == "fraud v(new 1) (models:/fraud/1)"
    assert details["fraud@candidate"] == "-> v(new 2)"
    assert client.list_models() == []
    assert client.deployments() == []


def test_render_is_a_terraform_like_diff(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG)
    text = plan_file(client, path).render()

    lines = text.splitlines()
    assert lines[0] == f"{path}: 7 to create, 0 to update, 0 unchanged"
    assert lines[1].startswith("  + model       fraud ")
    assert "  + deployment  staging/fraud     fraud v(new 1) (models:/fraud@champion)" in lines


def test_apply_registers_aliases_and_deploys(client: Client, write_yaml: WriteYaml) -> None:
    result = apply(client, plan_file(client, write_yaml(CONFIG)))

    assert result.changed == 7
    assert [(v.name, v.version) for v in result.versions] == [("fraud", 1), ("fraud", 2)]
    model = client.get_model("fraud")
    assert (model.owner, model.team, model.tags) == (
        "ana@example.com",
        "risk",
        {"domain": "payments"},
    )
    assert model.aliases == {"champion": 1, "candidate": 2}
    first = client.get_version("models:/fraud/1")
    assert first.signature.column_names == ["amount", "age"]
    assert first.metrics == {"roc_auc": 0.93}
    assert first.profile is not None
    staging = client.get_deployment("fraud", env="staging")
    assert (staging.spec.primary.version, staging.spec.primary.source) == (
        1,
        "models:/fraud@champion",
    )
    assert "fraud v1" in result.render()


def test_applying_twice_changes_nothing(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    before = registry_state(client)

    again = plan_file(client, path)
    assert not again.has_changes
    assert {c.action for c in again.changes} == {"unchanged"}
    assert apply(client, again).changed == 0
    assert registry_state(client) == before
    assert len(client.history("fraud", env="staging")) == 1


def test_changing_the_owner_is_an_update(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    write_yaml(CONFIG.replace("ana@example.com", "bob@example.com"))

    p = plan_file(client, path)
    assert [c for c in p.changes if c.action != "unchanged"] == [
        Change("model", "update", "fraud", "owner: ana@example.com -> bob@example.com")
    ]
    apply(client, p)
    assert client.get_model("fraud").owner == "bob@example.com"
    assert not plan_file(client, path).has_changes


def test_moving_an_alias_redeploys_the_endpoint_that_follows_it(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    moved = CONFIG.replace("        aliases: [champion]\n", "").replace(
        "      - path: artifacts/fraud2.skops\n",
        "      - path: artifacts/fraud2.skops\n        aliases: [champion]\n",
    )
    write_yaml(moved)

    p = plan_file(client, path)
    changed = {(c.kind, c.target): c for c in p.changes if c.action != "unchanged"}
    assert set(changed) == {("alias", "fraud@champion"), ("deployment", "staging/fraud")}
    assert changed["alias", "fraud@champion"].detail == "v1 -> v2"
    assert changed["deployment", "staging/fraud"].detail == (
        "fraud v1 -> fraud v2 (models:/fraud@champion)"
    )
    apply(client, p)
    staging = client.get_deployment("fraud", env="staging")
    assert (staging.spec.primary.version, staging.revision) == (2, 2)
    assert client.get_deployment("fraud", env="production").revision == 1
    assert not plan_file(client, path).has_changes


ONE_VERSION = """
models:
  fraud:
    owner: ana@example.com
    versions:
      - path: artifacts/fraud.skops
        sample: data/sample.csv
        aliases: [champion]
environments:
  staging:
    endpoints:
      fraud: {model: models:/fraud@champion}
"""


def test_an_alias_moved_to_a_version_this_file_adds_redeploys(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(ONE_VERSION)
    apply(client, plan_file(client, path))
    write_yaml(
        ONE_VERSION.replace(
            "        aliases: [champion]\n",
            "      - path: artifacts/fraud2.skops\n"
            "        sample: data/sample.csv\n"
            "    aliases: {champion: 2}\n",
        )
    )

    p = plan_file(client, path)
    changed = [(c.action, c.target, c.detail) for c in p.changes if c.action != "unchanged"]
    assert changed[1:] == [
        ("update", "fraud@champion", "v1 -> v(new)"),
        ("update", "staging/fraud", "fraud v1 -> fraud v(new) (models:/fraud@champion)"),
    ]
    assert changed[0][:2] == ("create", "fraud v(new)")
    apply(client, p)
    assert client.get_deployment("fraud", env="staging").spec.primary.version == 2


def test_a_version_registered_before_is_recognised_by_its_hash(
    client: Client, workspace: Path, write_yaml: WriteYaml
) -> None:
    sample = pd.read_csv(workspace / "data" / "sample.csv")
    client.register_model("fraud", workspace / "artifacts" / "fraud.skops", sample_input=sample)
    p = plan_file(client, write_yaml(CONFIG))

    versions = [(c.action, c.target) for c in p.changes if c.kind == "version"]
    assert versions == [("unchanged", "fraud v1"), ("create", "fraud v(new)")]
    assert next(c for c in p.changes if c.target == "production/fraud").detail == (
        "fraud v1 (models:/fraud/1)"
    )
    apply(client, p)
    assert [v.version for v in client.list_versions("fraud")] == [1, 2]


def test_a_new_source_uri_for_the_same_version_is_an_update(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    write_yaml(CONFIG.replace("fraud: {model: models:/fraud/1}", "fraud: {model: fraud@champion}"))

    p = plan_file(client, path)
    [change] = [c for c in p.changes if c.action != "unchanged"]
    assert change == Change(
        "deployment",
        "update",
        "production/fraud",
        "fraud v1, source models:/fraud/1 -> fraud@champion",
    )


def test_missing_artifact_and_sample_name_their_lines(
    client: Client, workspace: Path, write_yaml: WriteYaml
) -> None:
    path = write_yaml(
        CONFIG.replace("artifacts/fraud2.skops", "artifacts/gone.skops").replace(
            "        sample: data/sample.csv\n        metrics",
            "        sample: data/nope.csv\n        metrics",
        )
    )
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)

    lines = str(info.value).splitlines()
    assert lines[0].startswith(
        f"{path}:9:9: models.fraud.versions[0].sample: sample data/nope.csv does not exist"
    )
    assert lines[1].startswith(
        f"{path}:12:9: models.fraud.versions[1].path: artifact artifacts/gone.skops does not exist"
    )
    assert str(workspace / "artifacts" / "gone.skops") in lines[1]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("models:/fraud@shadow", "model 'fraud' has no alias 'shadow'"),
        ("models:/churn/1", "model 'churn' is neither in the registry nor in this file"),
        (
            "models:/fraud/3",
            "model 'fraud' has no version 3 (it has no versions and this file adds 2)",
        ),
    ],
)
def test_a_uri_that_resolves_to_nothing_names_its_line(
    client: Client, write_yaml: WriteYaml, uri: str, problem: str
) -> None:
    path = write_yaml(CONFIG.replace("models:/fraud/1", uri))
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    assert f"{path}:23:15: environments.production.endpoints.fraud.model: {problem}" in str(
        info.value
    )


def test_a_pickle_needs_trust(client: Client, workspace: Path, write_yaml: WriteYaml) -> None:
    with (workspace / "artifacts" / "old.pkl").open("wb") as f:
        pickle.dump(LogisticRegression(), f)
    text = (
        "models:\n  old:\n    owner: ana\n    versions:\n      - path: artifacts/old.pkl\n"
        "        sample: data/sample.csv\n"
    )
    path = write_yaml(text)
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    assert f"{path}:5:9: models.old.versions[0].trust: artifacts/old.pkl is a sklearn" in str(
        info.value
    )

    write_yaml(text + "        trust: true\n")
    assert [c.action for c in plan_file(client, path).changes] == ["create", "create"]


def test_plan_without_a_source_map_names_the_field(
    client: Client, workspace: Path, write_yaml: WriteYaml
) -> None:
    config, _ = load_config(write_yaml(CONFIG.replace("fraud2.skops", "gone.skops")))
    with pytest.raises(InvalidConfig, match=r"^models\.fraud\.versions\[1\]\.path: artifact"):
        plan(client, config, workspace)


def test_an_unknown_flavor_names_its_line(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(
        CONFIG.replace(
            "        sample: data/sample.csv\n        metrics",
            "        flavor: sklern\n        metrics",
        )
    )
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    assert f"{path}:9:9: models.fraud.versions[0].flavor: unknown flavor 'sklern'" in str(
        info.value
    )


def test_a_new_artifact_needs_a_sample(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(
        CONFIG.replace("        sample: data/sample.csv\n        metrics", "        metrics")
    )
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    assert f"{path}:8:9: models.fraud.versions[0].sample: artifacts/fraud.skops is not" in str(
        info.value
    )
