"""The naive baseline Modelport is measured against: plain FastAPI + uvicorn, one model.

Loads a skops model (trusting exactly the types skops reports), then serves
``POST /predict`` with MLflow's ``dataframe_split`` body and ``GET /ready``.

Run: ``python bench/baseline_app.py --model fraud.skops --port 8001``
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
import skops.io as sio
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Split(BaseModel):
    columns: list[str]
    data: list[list[float]]


class PredictRequest(BaseModel):
    dataframe_split: Split


def create_app(model: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, list[Any]]:
        frame = pd.DataFrame(request.dataframe_split.data, columns=request.dataframe_split.columns)
        proba = model.predict_proba(frame)
        return {
            "predictions": model.classes_[proba.argmax(axis=1)].tolist(),
            "probabilities": proba.tolist(),
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    model = sio.load(args.model, trusted=sio.get_untrusted_types(file=args.model))
    uvicorn.run(
        create_app(model), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
