"""The demo: three small models trained on generated data, and a modelport.yaml for them.

- ``fraud``: scikit-learn gradient boosting (100 trees, 20 float features), saved with skops.
- ``price``: LightGBM regressor, saved in LightGBM's native text format.
- ``churn``: scikit-learn logistic regression exported to ONNX.

Nothing is downloaded: the data is generated with a fixed seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

FRAUD_FEATURES = ["amount"] + [f"v{i}" for i in range(1, 20)]
PRICE_FEATURES = ["sqft", "bedrooms", "bathrooms", "age_years", "distance_km", "floor"]
CHURN_FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb"]

YAML = """\
# Example deployment: applied by `modelport demo` (and `modelport apply -f` this file).
models:
  fraud:
    owner: fraud-oncall@example.com
    team: risk
    description: Card fraud classifier (gradient boosting, 100 trees)
    versions:
      - path: fraud.skops
        sample: fraud_sample.parquet
        metrics: {{roc_auc: {fraud_auc:.4f}}}
        aliases: [champion]
  price:
    owner: pricing@example.com
    team: pricing
    description: House price regressor (LightGBM)
    versions:
      - path: price.txt
        sample: price_sample.parquet
        metrics: {{mae: {price_mae:.2f}}}
        aliases: [champion]
  churn:
    owner: growth@example.com
    team: growth
    description: Churn classifier (logistic regression, ONNX)
    versions:
      - path: churn.onnx
        sample: churn_sample.parquet
        metrics: {{accuracy: {churn_acc:.4f}}}
        aliases: [champion]
environments:
  staging:
    endpoints:
      fraud: {{model: models:/fraud@champion}}
      price: {{model: models:/price@champion}}
      churn: {{model: models:/churn@champion}}
  production:
    endpoints:
      fraud: {{model: models:/fraud@champion}}
      price: {{model: models:/price@champion}}
      churn: {{model: models:/churn@champion}}
"""


def fraud_data(n: int, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FRAUD_FEATURES)))
    x[:, 0] = rng.lognormal(3.0, 1.0, size=n)
    logit = 0.02 * x[:, 0] + 1.5 * x[:, 1] - x[:, 2] + 0.8 * x[:, 3] * x[:, 4] - 3.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(x, columns=FRAUD_FEATURES), y


def price_data(n: int, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sqft": rng.uniform(300, 4000, n),
            "bedrooms": rng.integers(1, 6, n).astype(float),
            "bathrooms": rng.integers(1, 4, n).astype(float),
            "age_years": rng.uniform(0, 100, n),
            "distance_km": rng.exponential(8, n),
            "floor": rng.integers(0, 20, n).astype(float),
        }
    )
    y = (
        150 * frame["sqft"]
        + 10_000 * frame["bathrooms"]
        - 800 * frame["age_years"]
        - 4_000 * frame["distance_km"]
        + rng.normal(0, 20_000, n)
    )
    return frame, y.to_numpy()


def churn_data(n: int, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.uniform(0, 72, n),
            "monthly_charges": rng.uniform(20, 120, n),
            "support_calls": rng.poisson(1.5, n).astype(float),
            "usage_gb": rng.gamma(2.0, 10.0, n),
        }
    )
    logit = (
        -0.05 * frame["tenure_months"]
        + 0.02 * frame["monthly_charges"]
        + 0.5 * frame["support_calls"]
        - 1
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(int)
    return frame, y


def train_fraud(workdir: Path) -> float:
    import skops.io as sio
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    x, y = fraud_data(4000)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(x, y)
    sio.dump(model, workdir / "fraud.skops")
    x.head(500).to_parquet(workdir / "fraud_sample.parquet", index=False)
    x_test, y_test = fraud_data(1000, seed=8)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


def train_price(workdir: Path) -> float:
    import lightgbm as lgb

    x, y = price_data(4000)
    model = lgb.LGBMRegressor(n_estimators=100, num_leaves=15, verbose=-1, random_state=0).fit(x, y)
    model.booster_.save_model(str(workdir / "price.txt"))
    x.head(500).to_parquet(workdir / "price_sample.parquet", index=False)
    x_test, y_test = price_data(1000, seed=12)
    return float(np.mean(np.abs(model.predict(x_test) - y_test)))


def train_churn(workdir: Path) -> float:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = churn_data(4000)
    model = LogisticRegression(max_iter=1000).fit(x.to_numpy(np.float32), y)
    onx = to_onnx(
        model, x.to_numpy(np.float32)[:1], options={id(model): {"zipmap": False}}, target_opset=17
    )
    (workdir / "churn.onnx").write_bytes(onx.SerializeToString())
    x.head(500).to_parquet(workdir / "churn_sample.parquet", index=False)
    x_test, y_test = churn_data(1000, seed=6)
    return float(np.mean(model.predict(x_test.to_numpy(np.float32)) == y_test))


def prepare(workdir: Path) -> Path:
    """Train the three models into ``workdir`` and write its ``modelport.yaml``."""
    workdir.mkdir(parents=True, exist_ok=True)
    text = YAML.format(
        fraud_auc=train_fraud(workdir),
        price_mae=train_price(workdir),
        churn_acc=train_churn(workdir),
    )
    path = workdir / "modelport.yaml"
    path.write_text(text)
    return path


def curl_examples(port: int) -> str:
    """Working requests against the demo server."""
    base = f"http://127.0.0.1:{port}"
    churn = json.dumps({"dataframe_records": [dict.fromkeys(CHURN_FEATURES, 1.0)]})
    price = json.dumps(
        {"dataframe_split": {"columns": PRICE_FEATURES, "data": [[1200, 3, 2, 20, 5.5, 3]]}}
    )
    v2 = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [12, 80, 3, 25]}
            ]
        }
    )
    header = "-H 'Content-Type: application/json'"
    return "\n".join(
        [
            f"Try it (server on {base}):",
            f"  curl {base}/v2/health/ready",
            f"  curl {base}/v1/endpoints",
            f"  curl -X POST {base}/v1/endpoints/churn/predict {header} -d '{churn}'",
            f"  curl -X POST {base}/v1/endpoints/price/predict {header} -d '{price}'",
            f"  curl -X POST {base}/v2/models/churn/infer {header} -d '{v2}'",
            f"  API docs: {base}/docs",
        ]
    )
