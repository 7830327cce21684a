"""The ``batch:`` section: parsed into job specs, checked at their lines, planned
(create, update, delete, unchanged) and applied to the registry once."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.batch.spec import JobSpec
from modelport.client import Client
from modelport.config import apply, load_config, plan_file
from modelport.config.plan import Plan
from modelport.errors import InvalidConfig
from modelport.registry.batch import BatchStore

from .conftest import WriteYaml, at

MODELS = """
models:
  fraud:
    owner: ana@example.com
    versions:
      - path: artifacts/fraud.skops
        sample: data/sample.csv
        aliases: [champion]
"""

JOBS = """
batch:
  nightly_scores:
    model: models:/fraud@champion
    input: data/transactions/*.parquet
    output: out/scores
    id_columns: [tx_id]
    chunk_rows: 50000
    workers: 2
    on_bad_rows: skip
    publish: fraud_scores
    schedule: "0 2 * * *"
  backfill:
    env: staging
    model: models:/fraud/1
    input: s3://bucket/history/
    output: /abs/out
"""


def actions(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.kind, c.action, c.target) for c in p.changes if c.kind == "batch"]


def load_error(path: Path) -> str:
    with pytest.raises(InvalidConfig) as info:
        load_config(path)
    return str(info.value)


def plan_error(client: Client, path: Path) -> str:
    with pytest.raises(InvalidConfig) as info:
        plan_file(client, path)
    return str(info.value)


# -- parsing ----------------------------------------------------------------------


def test_each_entry_becomes_a_job_spec(write_yaml: WriteYaml) -> None:
    config, _ = load_config(write_yaml(MODELS + JOBS))
    assert config.batch is not None
    jobs = {name: spec.job(name) for name, spec in config.batch.items()}
    assert jobs["nightly_scores"] == JobSpec(
        name="nightly_scores",
        env="production",
        model="models:/fraud@champion",
        input="data/transactions/*.parquet",
        output="out/scores",
        id_columns=("tx_id",),
        chunk_rows=50000,
        workers=2,
        on_bad_rows="skip",
        publish="fraud_scores",
        schedule="0 2 * * *",
    )
    assert jobs["backfill"].env == "staging" and jobs["backfill"].schedule is None


def test_no_batch_section_is_none(write_yaml: WriteYaml) -> None:
    config, _ = load_config(write_yaml(MODELS))
    assert config.batch is None


@pytest.mark.parametrize(
    ("lines", "needle", "message"),
    [
        (
            'schedule: "61 2 * * *"',
            "schedule",
            "batch.j.schedule: invalid schedule '61 2 * * *': [61 2 * * *] is not acceptable, "
            "out of range",
        ),
        (
            'schedule: "0 0 2 * * *"',
            "schedule",
            "batch.j.schedule: a schedule has five fields (minute hour day-of-month month "
            "day-of-week), '0 0 2 * * *' has 6",
        ),
        (
            "schedule: '@reboot'",
            "schedule",
            "batch.j.schedule: unknown schedule '@reboot'",
        ),
        (
            "shedule: '0 2 * * *'",
            "shedule",
            "batch.j.shedule: unknown field (did you mean 'schedule'?)",
        ),
        ("chunk_rows: 0", "chunk_rows", "batch.j.chunk_rows: input should be greater than"),
        (
            "on_bad_rows: ignore",
            "on_bad_rows",
            "batch.j.on_bad_rows: input should be 'fail' or 'skip', got 'ignore'",
        ),
        (
            "ray_address: ray://head:10001",
            "ray_address",
            "batch.j.ray_address: ray_address goes with `engine: ray`; drop it",
        ),
        (
            "at_column: ts",
            "at_column",
            "batch.j.at_column: at_column times the feature join; list `features` or drop it",
        ),
        ("env: 'prod uction'", "env:", "batch.j.env: invalid environment name 'prod uction'"),
    ],
)
def test_job_errors_name_their_line(
    write_yaml: WriteYaml, lines: str, needle: str, message: str
) -> None:
    path = write_yaml(
        f"batch:\n  j:\n    model: models:/fraud/1\n    input: in/\n    output: out/\n    {lines}\n"
    )
    error = load_error(path)
    assert error.startswith(at(path, needle)), error
    assert message in error


def test_a_bad_model_uri_and_missing_fields_name_their_line(write_yaml: WriteYaml) -> None:
    path = write_yaml("batch:\n  j:\n    model: fraud\n    input: in/\n")
    error = load_error(path)
    assert f"{at(path, 'model: fraud')}5: batch.j.model: " in error
    assert "batch.j.output: required field is missing" in error


def test_an_unquoted_star_schedule_is_a_yaml_error(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        "batch:\n  j:\n    model: models:/fraud/1\n    input: in/\n    output: out/\n"
        "    schedule: * * * * *\n"
    )
    assert "YAML syntax error" in load_error(path)


# -- planning and applying ---------------------------------------------------------


def test_jobs_are_created_then_unchanged(
    client: Client, write_yaml: WriteYaml, workspace: Path
) -> None:
    path = write_yaml(MODELS + JOBS)
    store = BatchStore(client.registry.engine)

    first = plan_file(client, path)

    assert actions(first) == [
        ("batch", "create", "production/nightly_scores"),
        ("batch", "create", "staging/backfill"),
    ]
    details = {c.target: c.detail for c in first.changes}
    assert details["production/nightly_scores"] == (
        "models:/fraud@champion on data/transactions/*.parquet -> out/scores; "
        "schedule 0 2 * * *; id_columns [tx_id]; chunk_rows 50000; workers 2; "
        "on_bad_rows skip; publish fraud_scores"
    )
    assert (
        details["staging/backfill"]
        == "models:/fraud/1 on s3://bucket/history/ -> /abs/out; on demand"
    )
    assert store.list_jobs() == []  # planning writes nothing

    apply(client, first)

    nightly = store.get_job("production", "nightly_scores")
    assert nightly.schedule == "0 2 * * *" and nightly.updated_by == "tester"
    # local paths are resolved from the file's folder; URLs and absolute paths are kept
    assert nightly.spec.input == str(workspace.resolve() / "data/transactions/*.parquet")
    assert nightly.spec.output == str(workspace.resolve() / "out/scores")
    backfill = store.get_job("staging", "backfill").spec
    assert (backfill.input, backfill.output) == ("s3://bucket/history/", "/abs/out")

    again = plan_file(client, path)
    assert {c.action for c in again.changes} == {"unchanged"}
    assert apply(client, again).changes == []


def test_changes_show_the_difference_and_dropped_jobs_are_removed(
    client: Client, write_yaml: WriteYaml
) -> None:
    apply(client, plan_file(client, write_yaml(MODELS + JOBS)))
    changed = JOBS.replace('"0 2 * * *"', '"30 3 * * 1-5"').split("  backfill:")[0]
    path = write_yaml(MODELS + changed)

    p = plan_file(client, path)

    assert actions(p) == [
        ("batch", "update", "production/nightly_scores"),
        ("batch", "delete", "staging/backfill"),
    ]
    details = {c.target: c.detail for c in p.changes}
    assert details["production/nightly_scores"] == "schedule 0 2 * * * -> 30 3 * * 1-5"
    assert details["staging/backfill"] == "models:/fraud/1; not in the file"
    assert p.render().splitlines()[0].endswith("0 to create, 1 to update, 1 to delete, 3 unchanged")
    assert "  - batch       staging/backfill" in p.render()

    apply(client, p)

    store = BatchStore(client.registry.engine)
    assert [(j.environment, j.name, j.schedule) for j in store.list_jobs()] == [
        ("production", "nightly_scores", "30 3 * * 1-5")
    ]


def test_without_a_batch_section_the_jobs_stay(client: Client, write_yaml: WriteYaml) -> None:
    apply(client, plan_file(client, write_yaml(MODELS + JOBS)))
    p = plan_file(client, write_yaml(MODELS))
    assert actions(p) == []
    assert len(BatchStore(client.registry.engine).list_jobs()) == 2
    emptied = plan_file(client, write_yaml(MODELS + "batch: {}\n"))
    assert [a for _, a, _ in actions(emptied)] == ["delete", "delete"]


def test_unknown_models_and_views_are_errors_at_their_line(
    client: Client, write_yaml: WriteYaml
) -> None:
    path = write_yaml(
        """
        batch:
          j:
            model: models:/ghost/1
            input: in/
            output: out/
            features: [user_profile]
        """
    )
    error = plan_error(client, path)
    assert f"{at(path, 'ghost')}5: batch.j.model: model 'ghost' is neither in the registry" in error
    assert f"{at(path, 'features')}" in error
    assert "feature view 'user_profile' is neither in the registry nor in this file" in error
