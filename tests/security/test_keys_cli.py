"""``modelport keys create|list|revoke`` as a user runs them: the key shown once, never
listed, revoked by name or id, errors with their exit codes; and ``serve --auth``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelport.cli.main import app as cli
from modelport.client import Client
from modelport.registry.keys import token_hash
from modelport.settings import Settings


def run(home: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(
        cli, ["--home", str(home), *args], env={"MODELPORT_USER": "ana", "COLUMNS": "200"}
    )
    assert result.exit_code == code, result.output
    return result.output


def test_create_prints_the_key_once_with_a_warning(tmp_path: Path) -> None:
    home = tmp_path / "home"
    shown = run(home, "keys", "create", "grafana", "--scope", "read")
    assert "shown once and not again" in shown
    token = next(word for word in shown.split() if word.startswith("mp_"))
    client = Client(Settings(home=home))
    record = client.keys.get("grafana")
    assert record.created_by == "ana" and record.key.scopes == {"read"}
    assert client.keys.active()[record.key.id][0].hex() == token_hash(token)
    client.close()

    created = json.loads(
        run(home, "keys", "create", "app", "--scope", "predict", "--endpoint", "clf",
            "--endpoint", "reg", "--rate", "20", "--json")
    )  # fmt: skip
    assert created["key"].startswith(f"mp_{created['id']}_")
    assert created["endpoints"] == ["clf", "reg"] and created["rate_limit"] == 20.0
    assert created["scopes"] == ["predict"] and created["revoked_at"] is None

    listing = run(home, "keys", "list")
    assert "grafana" in listing and "clf,reg" in listing and "20/s" in listing
    assert token not in listing and created["key"] not in listing
    assert token[12:20] not in listing and created["key"][12:20] not in listing
    listed = json.loads(run(home, "--json", "keys", "list"))
    assert [k["name"] for k in listed] == ["grafana", "app"]
    assert all("key" not in k for k in listed)


def test_revoke_by_name_or_id(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = json.loads(run(home, "keys", "create", "ops", "--scope", "admin", "--json"))
    said = run(home, "keys", "revoke", "ops")
    assert f"revoked key ops ({first['id']})" in said and "poll_interval_seconds" in said
    again = run(home, "keys", "revoke", first["id"])
    assert "was already revoked" in again
    json.loads(run(home, "keys", "create", "ops", "--scope", "admin", "--json"))
    revoked = json.loads(run(home, "keys", "revoke", "ops", "--json"))
    assert revoked["revoked_by"] == "ana" and revoked["id"] != first["id"]
    assert json.loads(run(home, "--json", "keys", "list", "--active")) == []
    assert len(json.loads(run(home, "--json", "keys", "list"))) == 2


def test_errors_say_what_to_fix_with_their_exit_codes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    said = run(home, "keys", "create", "x", "--scope", "write", code=3)
    assert "unknown scope 'write'" in said and "predict, read, admin" in said
    said = run(home, "keys", "create", "x", "--scope", "read", "--endpoint", "clf", code=3)
    assert "endpoints limit the predict scope" in said
    said = run(home, "keys", "revoke", "nobody", code=4)
    assert "no key has the id 'nobody'" in said and "modelport keys list" in said
    run(home, "keys", "create", "x", "--scope", "read")
    said = run(home, "keys", "create", "x", "--scope", "read", code=5)
    assert "an active key is already named 'x'" in said
    assert "Missing option '--scope'" in run(home, "keys", "create", "y", code=2)


def test_serve_refuses_an_unknown_auth_mode(tmp_path: Path) -> None:
    said = run(tmp_path / "home", "serve", "--auth", "maybe", code=3)
    assert "--auth must be on, off or auto, not 'maybe'" in said
