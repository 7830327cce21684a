"""The CLI as a user drives it: register, alias, deploy, promote, history, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"MODELPORT_HOME": str(home), "MODELPORT_USER": "ana", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def test_register_alias_deploy_promote_history(
    tmp_path: Path, sklearn_classifier: tuple[Path, pd.DataFrame]
) -> None:
    home = tmp_path / "home"
    path, frame = sklearn_classifier
    sample = tmp_path / "sample.csv"
    frame.to_csv(sample, index=False)

    out = cli(
        home,
        "--json",
        "models",
        "register",
        "fraud",
        str(path),
        "--owner",
        "ana@example.com",
        "--sample",
        str(sample),
        "--metric",
        "auc=0.91",
        "--tag",
        "team=risk",
        "--alias",
        "champion",
    )
    version = json.loads(out.stdout)
    assert version["version"] == 1 and version["flavor"] == "sklearn"
    assert version["aliases"] == ["champion"] and version["metrics"] == {"auc": 0.91}
    cli(home, "models", "register", "fraud", str(path), "--sample", str(sample))

    listing = cli(home, "models", "list").stdout
    assert "fraud" in listing and "ana@example.com" in listing
    versions = json.loads(cli(home, "--json", "models", "versions", "fraud").stdout)
    assert [v["version"] for v in versions] == [1, 2]
    shown = json.loads(cli(home, "--json", "models", "show", "models:/fraud@champion").stdout)
    assert shown["version"] == 1 and "profile" in shown

    cli(home, "models", "alias", "set", "fraud", "champion", "2")
    cli(home, "deploy", "fraud", "models:/fraud@champion", "--env", "staging")
    cli(home, "deploy", "fraud", "models:/fraud/1", "--env", "production", "--reason", "first")
    # production already serves fraud: a plain promote would start a rollout; --now copies
    cli(home, "promote", "fraud", "--from", "staging", "--to", "production", "--now")
    deployments = json.loads(cli(home, "--json", "deployments").stdout)
    assert {(d["environment"], d["version"]) for d in deployments} == {
        ("staging", 2),
        ("production", 2),
    }
    events = json.loads(cli(home, "--json", "history", "fraud", "--env", "production").stdout)
    assert [(e["action"], e["actor"]) for e in events] == [("deploy", "ana"), ("promote", "ana")]
    table = cli(home, "history", "fraud").stdout
    assert "promote" in table and "first" in table

    predicted = json.loads(
        cli(home, "--json", "predict", "models:/fraud/1", "-i", str(sample)).stdout
    )
    assert len(predicted["label"]) == len(frame)


def test_errors_have_clear_messages_and_exit_codes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = cli(home, "models", "show", "nope", check=False)
    assert missing.returncode == 4 and "model 'nope' does not exist" in missing.stderr

    pickle_file = tmp_path / "model.pkl"
    pickle_file.write_bytes(b"\x80\x04K\x01.")
    untrusted = cli(home, "models", "register", "m", str(pickle_file), check=False)
    assert untrusted.returncode == 3 and "runs arbitrary Python code" in untrusted.stderr
    assert "--trust" in untrusted.stderr

    unknown = tmp_path / "model.bin"
    unknown.write_bytes(b"\x00\x01")
    flavor = cli(home, "models", "register", "m", str(unknown), check=False)
    assert flavor.returncode == 3 and "--flavor" in flavor.stderr

    bad_uri = cli(home, "deploy", "x", "fraud:3", check=False)
    assert bad_uri.returncode == 3 and "invalid model URI" in bad_uri.stderr

    corrupt = tmp_path / "model.skops"
    corrupt.write_bytes(b"garbage")
    broken = cli(
        home, "models", "register", "m", str(corrupt), "--sample", str(corrupt), check=False
    )
    assert broken.returncode == 3
    assert cli(home, "--json", "models", "list").stdout.strip() == "[]"


def test_help_everywhere(tmp_path: Path) -> None:
    for args in (
        ["--help"],
        ["models", "--help"],
        ["models", "register", "--help"],
        ["deploy", "--help"],
        ["serve", "--help"],
        ["apply", "--help"],
    ):
        assert "Usage" in cli(tmp_path, *args).stdout
