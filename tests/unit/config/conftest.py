"""A workspace with two tiny skops models, a sample CSV and a way to write the YAML.

The `client` fixture (a registry in tmp_path) comes from tests/conftest.py.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

WriteYaml = Callable[[str], Path]


def at(path: Path, needle: str, column: int | None = None) -> str:
    """``file:line:`` (or ``file:line:col:``) of the one line of ``path`` holding ``needle``."""
    lines = [n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text]
    assert len(lines) == 1, f"{needle!r} is on lines {lines}"
    return f"{path}:{lines[0]}:" + (f"{column}:" if column is not None else "")


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(size=40), "age": rng.normal(size=40)})
    frame["label"] = (frame["amount"] + frame["age"] > 0).astype(int)
    return frame


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """``project/`` holding artifacts/fraud.skops, artifacts/fraud2.skops, data/sample.csv."""
    root = tmp_path / "project"
    (root / "artifacts").mkdir(parents=True)
    (root / "data").mkdir()
    frame = _frame()
    features = frame[["amount", "age"]]
    for name, c in (("fraud.skops", 1.0), ("fraud2.skops", 0.1)):
        model = LogisticRegression(C=c).fit(features, frame["label"])
        skops.io.dump(model, root / "artifacts" / name)
    features.to_csv(root / "data" / "sample.csv", index=False)
    return root


@pytest.fixture
def write_yaml(workspace: Path) -> WriteYaml:
    """Write (dedented) text to project/modelport.yaml and return its path."""

    def write(text: str) -> Path:
        path = workspace / "modelport.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
