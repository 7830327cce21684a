"""Planning and applying endpoints with splits, shadows, routing, a rollout policy and
an alias to follow."""

from __future__ import annotations

import pytest

from modelport.client import Client
from modelport.config import apply, plan_file
from modelport.config.plan import Change, Plan
from modelport.errors import Conflict, InvalidConfig
from modelport.registry import DeploymentSpec, RolloutPolicy, Routing, Variant
from modelport.registry.entities import SHADOW_STEP

from .conftest import WriteYaml, at

CONFIG = """
models:
  fraud:
    owner: ana@example.com
    versions:
      - path: artifacts/fraud.skops
        sample: data/sample.csv
        aliases: [champion]
      - path: artifacts/fraud2.skops
        sample: data/sample.csv
  fraud_lr:
    owner: ana@example.com
    versions:
      - path: artifacts/fraud2.skops
        sample: data/sample.csv
environments:
  production:
    endpoints:
      fraud_ab:
        variants:
          - {model: models:/fraud/1, weight: 90}
          - {model: models:/fraud/2, weight: 10}
          - {model: models:/fraud_lr/1, shadow: true}
        routing: {sticky_header: X-User-Id}
        rollout:
          steps: [shadow, 5, 25, 50, 100]
          interval: 5m
          max_error_rate: 0.01
      scorer:
        follow: models:/fraud@champion
        rollout: {steps: [10, 100], interval: 1m}
"""


def deployments(p: Plan) -> dict[str, Change]:
    return {c.target: c for c in p.changes if c.kind == "deployment"}


def test_a_split_with_a_shadow_plans_every_part(client: Client, write_yaml: WriteYaml) -> None:
    planned = deployments(plan_file(client, write_yaml(CONFIG)))

    assert planned["production/fraud_ab"] == Change(
        "deployment",
        "create",
        "production/fraud_ab",
        "fraud v(new 1) 90% (models:/fraud/1) + fraud v(new 2) 10% (models:/fraud/2) + "
        "shadow fraud_lr v(new) (models:/fraud_lr/1); routing sticky by header X-User-Id; "
        "rollout.steps shadow,5,25,50,100; rollout.max_error_rate 0.01",
    )
    assert planned["production/scorer"].detail == (
        "fraud v(new 1) (models:/fraud@champion); rollout.steps 10,100; "
        "rollout.interval 1m; follow fraud@champion"
    )


def test_apply_deploys_the_whole_spec_and_again_changes_nothing(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(CONFIG)
    result = apply(client, plan_file(client, path))

    split = client.get_deployment("fraud_ab").spec
    assert split == DeploymentSpec(
        variants=(
            Variant("fraud", 1, 90.0, "models:/fraud/1"),
            Variant("fraud", 2, 10.0, "models:/fraud/2"),
            Variant("fraud_lr", 1, 0.0, "models:/fraud_lr/1", shadow=True),
        ),
        routing=Routing(sticky_header="X-User-Id"),
        rollout=RolloutPolicy(steps=(SHADOW_STEP, 5, 25, 50, 100), max_error_rate=0.01),
    )
    scorer = client.get_deployment("scorer").spec
    assert scorer.variants == (Variant("fraud", 1, 100.0, "models:/fraud@champion"),)
    assert (scorer.follow, scorer.rollout.steps, scorer.rollout.interval_s) == (
        "fraud@champion",
        (10, 100),
        60,
    )
    applied = {c.target: c.detail for c in result.changes}
    assert applied["production/fraud_ab"] == (
        "fraud v1 90% (models:/fraud/1) + fraud v2 10% (models:/fraud/2) + "
        "shadow fraud_lr v1 (models:/fraud_lr/1), revision 1"
    )

    again = plan_file(client, path)
    assert not again.has_changes
    assert deployments(again)["production/fraud_ab"].detail.startswith(
        "fraud v1 90% (models:/fraud/1) + fraud v2 10% (models:/fraud/2) + shadow fraud_lr v1"
    )
    assert apply(client, again).changed == 0
    assert [d.revision for d in client.deployments()] == [1, 1]


def test_changing_shares_routing_and_policy_is_one_update(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    write_yaml(
        CONFIG.replace("weight: 90", "weight: 50")
        .replace("weight: 10", "weight: 50")
        .replace("{sticky_header: X-User-Id}", "{sticky_field: user_id}")
        .replace("max_error_rate: 0.01", "max_error_rate: 0.05")
    )

    p = plan_file(client, path)
    assert [c for c in p.changes if c.action != "unchanged"] == [
        Change(
            "deployment",
            "update",
            "production/fraud_ab",
            "fraud v1 90% + fraud v2 10% + shadow fraud_lr v1 -> fraud v1 50% (models:/fraud/1) "
            "+ fraud v2 50% (models:/fraud/2) + shadow fraud_lr v1 (models:/fraud_lr/1); "
            "routing sticky by header X-User-Id -> sticky by field user_id; "
            "rollout.max_error_rate 0.01 -> 0.05",
        )
    ]
    apply(client, p)
    spec = client.get_deployment("fraud_ab").spec
    assert [v.weight for v in spec.live] == [50.0, 50.0]
    assert spec.routing == Routing(sticky_field="user_id")
    assert spec.rollout.max_error_rate == 0.05
    assert not plan_file(client, path).has_changes


def test_dropping_a_shadow_shows_what_goes(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    write_yaml(CONFIG.replace("          - {model: models:/fraud_lr/1, shadow: true}\n", ""))

    change = deployments(plan_file(client, path))["production/fraud_ab"]
    assert (change.action, change.detail) == (
        "update",
        "fraud v1 90% + fraud v2 10% + shadow fraud_lr v1 -> "
        "fraud v1 90% (models:/fraud/1) + fraud v2 10% (models:/fraud/2)",
    )


def test_follow_deploys_the_version_the_alias_points_at(
    client: Client, write_yaml: WriteYaml
) -> None:
    text = CONFIG.replace("        aliases: [champion]\n", "").replace(
        "  fraud_lr:\n", "    aliases: {champion: 2}\n  fraud_lr:\n"
    )
    path = write_yaml(text)

    assert deployments(plan_file(client, path))["production/scorer"].detail.startswith(
        "fraud v(new 2) (models:/fraud@champion);"
    )
    apply(client, plan_file(client, path))
    scorer = client.get_deployment("scorer")
    assert (scorer.spec.primary.version, scorer.spec.follow) == (2, "fraud@champion")
    assert not plan_file(client, path).has_changes


def test_a_followed_alias_that_moves_is_left_to_the_server(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    moved = CONFIG.replace("        aliases: [champion]\n", "").replace(
        "  fraud_lr:\n", "    aliases: {champion: 2}\n  fraud_lr:\n"
    )
    write_yaml(moved)

    p = plan_file(client, path)
    assert [(c.kind, c.target) for c in p.changes if c.action != "unchanged"] == [
        ("alias", "fraud@champion")
    ]
    assert deployments(p)["production/scorer"].detail == (
        "fraud v1 (models:/fraud@champion); rollout.steps 10,100; rollout.interval 1m; "
        "follow fraud@champion; fraud@champion -> v2, rolled out by the server"
    )
    apply(client, p)
    scorer = client.get_deployment("scorer")
    assert (scorer.spec.primary.version, scorer.revision) == (1, 1)


def test_a_followed_endpoint_keeps_the_servers_variants_when_its_policy_changes(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    scorer = client.get_deployment("scorer")
    mid_rollout = scorer.spec.with_variants(
        [Variant("fraud", 1, 75.0, "models:/fraud@champion"), Variant("fraud", 2, 25.0)]
    )
    client.registry.set_deployment("production", "scorer", mid_rollout, action="rollout")
    assert not plan_file(client, path).has_changes
    write_yaml(CONFIG.replace("interval: 1m", "interval: 2m"))

    p = plan_file(client, path)
    assert deployments(p)["production/scorer"].detail == "rollout.interval 1m -> 2m"
    apply(client, p)
    after = client.get_deployment("scorer").spec
    assert (after.variants, after.rollout.interval_s) == (mid_rollout.variants, 120)


def test_starting_to_follow_is_an_update(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG.replace("follow: models:/fraud@champion", "model: models:/fraud/1"))
    apply(client, plan_file(client, path))
    write_yaml(CONFIG)

    change = deployments(plan_file(client, path))["production/scorer"]
    assert (change.action, change.detail) == (
        "update",
        "fraud v1, source models:/fraud/1 -> models:/fraud@champion; follow - -> fraud@champion",
    )


def test_two_uris_naming_one_version_are_refused_at_their_line(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(
        CONFIG.replace(
            "{model: models:/fraud/2, weight: 10}", "{model: models:/fraud@champion, weight: 10}"
        )
    )
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    assert (
        f"{at(path, 'fraud@champion, weight', 14)} "
        "environments.production.endpoints.fraud_ab.variants[1].model: models:/fraud@champion "
        "is fraud v(new 1), which variants[0].model names already; list a version once"
    ) == str(info.value)


def test_a_followed_alias_nobody_sets_names_its_line(client: Client, write_yaml: WriteYaml) -> None:
    path = write_yaml(CONFIG.replace("models:/fraud@champion", "models:/fraud@gold"))
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    assert (
        f"{at(path, 'fraud@gold', 9)} environments.production.endpoints.scorer.follow: "
        "model 'fraud' has no alias 'gold'"
    ) in str(info.value)


def test_a_deployment_changed_after_planning_is_not_overwritten(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(CONFIG)
    apply(client, plan_file(client, path))
    write_yaml(CONFIG.replace("weight: 90", "weight: 80"))
    p = plan_file(client, path)
    client.deploy("fraud_ab", "models:/fraud/2")

    with pytest.raises(Conflict, match="deployment production/fraud_ab: .* at revision 2, not 1"):
        apply(client, p)
    assert client.get_deployment("fraud_ab").spec.primary.version == 2


ROLLED = """
models:
  fraud:
    owner: ana@example.com
    versions:
      - path: artifacts/fraud.skops
        sample: data/sample.csv
      - path: artifacts/fraud2.skops
        sample: data/sample.csv
environments:
  production:
    endpoints:
      fraud:
        model: models:/fraud/1
        rollout: {steps: [shadow, 10, 100], interval: 2m}
"""


def test_a_new_version_of_an_endpoint_with_a_rollout_policy_is_rolled_out(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(ROLLED)
    apply(client, plan_file(client, path))
    write_yaml(ROLLED.replace("models:/fraud/1", "models:/fraud/2"))
    p = plan_file(client, path)
    (change,) = [c for c in p.changes if c.action != "unchanged"]
    assert change.detail == (
        "roll out fraud v1 -> fraud v2 (models:/fraud/2) (steps shadow,10,100, judged every 2m)"
    )
    apply(client, p)
    rollout = client.rollouts().status("fraud")
    assert rollout.state == "running" and rollout.candidate.version == 2
    spec = client.get_deployment("fraud").spec
    assert [(v.name, v.shadow) for v in spec.variants] == [("fraud-v1", False), ("fraud-v2", True)]
    with pytest.raises(Conflict, match="changed while this change was prepared"):
        apply(client, p)  # planned before the rollout moved the deployment
