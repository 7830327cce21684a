"""Model URIs, as MLflow writes them: ``models:/fraud/3``, ``models:/fraud@champion``.

``models:/fraud/latest`` names the newest version. A bare ``fraud/3`` or
``fraud@champion`` is accepted wherever a URI is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelport.errors import InvalidInput

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}"
_URI = re.compile(
    rf"^(?:models:/)?(?P<name>{_NAME})(?:/(?P<version>\d+|latest)|@(?P<alias>{_NAME}))$"
)
NAME_PATTERN = re.compile(rf"^{_NAME}$")


@dataclass(frozen=True)
class ModelRef:
    """A reference to a version: by number, by alias, or the latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version if self.version is not None else 'latest'}"


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/name/3``, ``models:/name@alias`` or ``models:/name/latest``."""
    match = _URI.match(uri.strip())
    if not match:
        raise InvalidInput(
            f"invalid model URI {uri!r}",
            hint="use models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest",
        )
    version = match["version"]
    return ModelRef(
        name=match["name"],
        version=int(version) if version and version != "latest" else None,
        alias=match["alias"],
    )


def check_name(kind: str, name: str) -> str:
    """Validate a model, alias, endpoint or environment name."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}",
            hint="use letters, digits, '_', '-' and '.', starting with a letter or digit "
            "(at most 128 characters)",
        )
    return name
