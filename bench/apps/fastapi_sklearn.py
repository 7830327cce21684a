"""(a) The naive baseline: FastAPI + scikit-learn ``predict_proba`` on a DataFrame.

The app is bench/baseline_app.py's, unchanged (pydantic body, ``pd.DataFrame``,
``predict_proba``, JSON lists); this module only loads the skops model that
``BENCH_MODEL`` names, so that each uvicorn worker can build it from an import string.
"""

from __future__ import annotations

import os

import skops.io as sio
from baseline_app import create_app as baseline_app
from fastapi import FastAPI


def create_app() -> FastAPI:
    path = os.environ["BENCH_MODEL"]
    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    return baseline_app(model)
