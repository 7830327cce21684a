"""``modelport keys create|list|revoke``: the API keys a server asks for when auth is on.

Each command calls `modelport.registry.keys.KeyStore` (``Client.keys``), as the HTTP
routes do. ``create`` prints the new key once; only its SHA-256 is kept, so a lost key
cannot be shown again: revoke it and create another.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from modelport.cli.common import Ctx, emit, err, handled, out, table
from modelport.registry.keys import SCOPES, KeyRecord

keys_app = typer.Typer(
    help="API keys: create (shown once), list, revoke. Servers reload them every "
    "poll_interval_seconds.",
    no_args_is_help=True,
)

COLUMNS = ["id", "name", "scopes", "endpoints", "rate", "created", "by", "revoked"]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _when(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if ts is not None else "-"


def _row(record: KeyRecord) -> list[str]:
    key = record.key
    return [
        key.id,
        key.name,
        ",".join(sorted(key.scopes, key=SCOPES.index)),
        ",".join(key.endpoints) if key.endpoints is not None else "all",
        f"{key.rate_limit:g}/s" if key.rate_limit is not None else "-",
        _when(record.created_at),
        record.created_by or "-",
        _when(record.revoked_at),
    ]


@keys_app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for: prometheus, checkout, ...")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="predict, read or admin (admin implies the others); repeat for several.",
        ),
    ],
    endpoint: Annotated[
        list[str] | None,
        typer.Option("--endpoint", help="Limit predict to this endpoint; repeat for several."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="The key's allowance in requests per second.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it, this once."""
    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    with handled():
        created = c.client.keys.create(
            name, scopes=scope, endpoints=endpoint or None, rate_limit=rate, actor=c.client.user
        )

    def render() -> None:
        out.print(table("API key created", COLUMNS, [_row(created.record)]))
        out.print(created.token, highlight=False, markup=False, soft_wrap=True)
        err.print(
            "[yellow]This key is shown once and not again[/yellow]: only its hash is kept. "
            "Store it now (a secret manager); if it is lost, revoke it and create another.",
            highlight=False,
        )

    emit(c, created.to_dict(), render)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="Only keys not revoked.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Every key: id, name, scopes, endpoints, rate, created, revoked. Never a secret."""
    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    with handled():
        records = c.client.keys.list(include_revoked=not active)
    emit(
        c,
        [r.to_dict() for r in records],
        lambda: out.print(table("API keys", COLUMNS, [_row(r) for r in records])),
    )


@keys_app.command()
def revoke(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's id, or the name of an active key.")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: servers refuse it from their next reload (poll_interval_seconds)."""
    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    with handled():
        before = c.client.keys.get(key)
        record = c.client.keys.revoke(before.key.id, actor=c.client.user)
    name = f"{record.key.name} ({record.key.id})"
    message = (
        f"key {name} was already revoked at {_when(record.revoked_at)}"
        if not before.active
        else f"revoked key {name}; servers refuse it within "
        f"{c.settings.poll_interval_seconds:g} s (poll_interval_seconds)"
    )
    emit(c, record.to_dict(), lambda: out.print(message, highlight=False, markup=False))
