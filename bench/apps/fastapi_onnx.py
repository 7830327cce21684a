"""(b) FastAPI + onnxruntime: the same model exported to ONNX, one intra-op thread.

Same body model and JSON shape as bench/baseline_app.py; the rows go straight into a
float32 array (no DataFrame) and through ``InferenceSession.run``. ``BENCH_MODEL``
names the ``.onnx`` file (exported with ``zipmap: False``: outputs label, probabilities).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort
from baseline_app import PredictRequest
from fastapi import FastAPI


def create_app() -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        os.environ["BENCH_MODEL"], options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, list[Any]]:
        x = np.asarray(request.dataframe_split.data, dtype=np.float32)
        label, proba = session.run(None, {input_name: x})
        return {"predictions": label.tolist(), "probabilities": proba.tolist()}

    return app
