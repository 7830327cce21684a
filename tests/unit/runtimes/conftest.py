"""Tiny training data shared by the runtime tests: 200 rows, four float columns a-d."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelport.runtimes import get_runtime
from modelport.runtimes.base import LoadContext
from modelport.signature import Columns


@pytest.fixture
def frame() -> pd.DataFrame:
    rs = np.random.RandomState(0)
    return pd.DataFrame(rs.rand(200, 4), columns=["a", "b", "c", "d"])


@pytest.fixture
def columns(frame: pd.DataFrame) -> Columns:
    return {name: frame[name].to_numpy() for name in frame.columns}


@pytest.fixture
def y_binary(frame: pd.DataFrame) -> np.ndarray:
    return (frame["a"] + frame["b"] > 1.0).to_numpy().astype(np.int64)


@pytest.fixture
def y_multi(frame: pd.DataFrame) -> np.ndarray:
    return np.minimum((frame["a"] * 3).to_numpy().astype(np.int64), 2)


@pytest.fixture
def y_reg(frame: pd.DataFrame) -> np.ndarray:
    return (2.0 * frame["a"] - frame["c"] + 0.1 * frame["d"]).to_numpy()


@pytest.fixture
def load() -> Callable[..., Any]:
    """Load an artifact with the runtime for its flavor: ``load("sklearn", path, trusted=...)``."""

    def _load(flavor: str, path: Path, *, trusted: bool = False, num_threads: int = 1) -> Any:
        runtime = get_runtime(flavor)
        runtime.load(LoadContext(path=path, trusted=trusted, num_threads=num_threads))
        return runtime

    return _load
