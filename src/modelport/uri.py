"""Model URIs, as MLflow writes them: ``models:/fraud/3``, ``models:/fraud@champion``.

``models:/fraud/latest`` names the newest version. A bare ``fraud/3`` or
``fraud@champion`` is accepted wherever a URI is. Names are letters, digits, ``_``,
``-`` and ``.`` (never ``..``, NUL or another control character), so a name is also
safe as one path component.
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


def _odd(text: str) -> str | None:
    """Why ``text`` can never be a name or URI, whatever its shape: None if it can."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "it contains a NUL or control character"
    if ".." in text:
        return "it contains '..'"
    return None


def parse_model_uri(uri: str) -> ModelRef:
    """Parse ``models:/name/3``, ``models:/name@alias`` or ``models:/name/latest``."""
    hint = "use models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest"
    if not isinstance(uri, str):
        raise InvalidInput(f"a model URI must be a string, not {type(uri).__name__}", hint=hint)
    text = uri.strip(" ")
    odd = _odd(text)
    if odd:
        raise InvalidInput(f"invalid model URI {uri!r}: {odd}", hint=hint)
    match = _URI.fullmatch(text)
    if not match:
        raise InvalidInput(f"invalid model URI {uri!r}", hint=hint)
    version = match["version"]
    return ModelRef(
        name=match["name"],
        version=int(version) if version and version != "latest" else None,
        alias=match["alias"],
    )


def check_name(kind: str, name: str) -> str:
    """Validate a model, alias, endpoint or environment name."""
    odd = _odd(name) if isinstance(name, str) else "it is not a string"
    if odd or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}" + (f": {odd}" if odd else ""),
            hint="use letters, digits, '_', '-' and '.', starting with a letter or digit "
            "(at most 128 characters)",
        )
    return name
