"""Durations as people write them in YAML and on the command line: ``90s``, ``5m``, ``1h``."""

from __future__ import annotations

import re

from modelport.errors import InvalidInput

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: a number of seconds, or parts like ``1h30m``, ``500ms``, ``7d``.

    >>> parse_duration("1h30m")
    5400.0
    """
    if isinstance(text, int | float):
        if text < 0:
            raise InvalidInput(f"duration {text!r} is negative")
        return float(text)
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise InvalidInput(
            f"{text!r} is not a duration",
            hint="write a number with a unit: 500ms, 30s, 5m, 1h, 7d (or 1h30m)",
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest ``parse_duration`` text for whole units: 300 -> ``5m``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
