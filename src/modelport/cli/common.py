"""What every ``modelport`` command shares: options, output, and error handling.

Every command accepts ``--json`` for scripts and exits with a code that says what went
wrong (`EXIT_CODES`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from modelport import errors
from modelport.settings import Settings

if TYPE_CHECKING:
    from modelport.client import Client

EXIT_CODES: dict[type[errors.ModelportError], int] = {
    errors.InvalidInput: 3,
    errors.UntrustedArtifact: 3,
    errors.UnknownFlavor: 3,
    errors.ArtifactError: 3,
    errors.NotFound: 4,
    errors.Conflict: 5,
    errors.Unavailable: 6,
}

out = Console()
err = Console(stderr=True)


class Ctx:
    """Options every command shares, set by the top-level callback."""

    def __init__(self, settings: Settings, as_json: bool) -> None:
        self.settings = settings
        self.as_json = as_json
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from modelport.client import Client

            self._client = Client(self.settings)
        return self._client


def exit_code(exc: errors.ModelportError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


@contextmanager
def handled() -> Iterator[None]:
    """Print a Modelport error as one clear line and exit with its code."""
    try:
        yield
    except errors.ModelportError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False, markup=True)
        if exc.hint:
            err.print(f"[dim]hint:[/dim] {exc.hint}", highlight=False)
        raise typer.Exit(exit_code(exc)) from exc


def emit(ctx: Ctx, data: Any, render: Callable[[], None]) -> None:
    if ctx.as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        render()


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def kv(pairs: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise errors.InvalidInput(f"{what} {pair!r} is not KEY=VALUE")
        key, value = pair.split("=", 1)
        result[key] = value
    return result


def read_frame(path: Path) -> Any:
    import pandas as pd

    if not path.exists():
        raise errors.InvalidInput(f"sample file {path} does not exist")
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise errors.InvalidInput(f"could not read {path}: {exc}") from exc
