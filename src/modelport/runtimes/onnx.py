"""ONNX runtime: any ``.onnx`` graph, run by onnxruntime on the CPU.

Inputs are fed in one of two shapes: a single rank-2 input gets the columns stacked
in signature order; a graph with one input per column gets each as ``(n, 1)``.
A graph whose outputs are a label and class probabilities (what skl2onnx and
onnxmltools write for classifiers, with or without ZipMap) is a classifier; a graph
with one output is a regressor; anything else returns its outputs by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import PredictionFailed
from modelport.runtimes.base import (
    LoadContext,
    Prediction,
    Task,
    artifact_error,
    as_matrix,
    classification,
    not_loaded,
    prediction_failed,
    python_scalars,
    regression,
)
from modelport.signature import Columns

#: ONNX tensor element types -> numpy dtypes.
ELEMENT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


class OnnxRuntime:
    """An `onnxruntime.InferenceSession` over one ``.onnx`` file."""

    flavor: ClassVar[str] = "onnx"

    def __init__(self) -> None:
        self.session: Any = None
        self.task: Task = "other"
        self.classes: list[Any] | None = None

    def load(self, ctx: LoadContext) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = ctx.num_threads
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(
                str(ctx.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise artifact_error(ctx.path, exc) from exc
        outputs = session.get_outputs()
        if _is_classifier(outputs):
            self.task = "classification"
            self.classes = _graph_classes(ctx.path)
            if self.classes is None and isinstance(outputs[1].shape[-1], int):
                self.classes = list(range(outputs[1].shape[-1]))
        elif len(outputs) == 1:
            self.task, self.classes = "regression", None
        else:
            self.task, self.classes = "other", None
        self.session = session

    def predict(self, columns: Columns) -> Prediction:
        session = self.session
        if session is None:
            raise not_loaded(self.flavor)
        feeds = _feeds(session.get_inputs(), columns)
        try:
            results = session.run(None, feeds)
        except Exception as exc:
            raise prediction_failed(exc) from exc
        if self.task == "regression":
            return regression(results[0])
        if self.task == "classification":
            return self._classification(results[0], results[1])
        names = [o.name for o in session.get_outputs()]
        return Prediction(outputs={n: np.asarray(r) for n, r in zip(names, results, strict=True)})

    def _classification(self, labels: Any, probabilities: Any) -> Prediction:
        labels = np.asarray(labels).reshape(-1)
        if isinstance(probabilities, list):  # ZipMap: one {class: probability} dict per row
            if self.classes is None:
                self.classes = python_scalars(probabilities[0]) if probabilities else []
            rows = [[row[c] for c in self.classes] for row in probabilities]
            probs = np.asarray(rows, np.float64).reshape(len(labels), len(self.classes))
        else:
            probs = np.asarray(probabilities, np.float64)
            if self.classes is None:
                self.classes = list(range(probs.shape[1]))
        return classification(probs, self.classes, labels=labels)

    def unload(self) -> None:
        self.session = None


def _is_classifier(outputs: list[Any]) -> bool:
    if len(outputs) != 2:
        return False
    label, probs = outputs
    if len(label.shape) not in (1, 2) or (len(label.shape) == 2 and label.shape[1] != 1):
        return False
    return str(probs.type).startswith("seq(map(") or (
        probs.type in ("tensor(float)", "tensor(double)") and len(probs.shape) == 2
    )


def _feeds(inputs: list[Any], columns: Columns) -> dict[str, np.ndarray]:
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        only = inputs[0]
        return {only.name: as_matrix(columns, ELEMENT_DTYPES.get(only.type, np.float32))}
    missing = [i.name for i in inputs if i.name not in columns]
    if missing:
        raise PredictionFailed(
            f"the graph's inputs {[i.name for i in inputs]} are neither one matrix nor one "
            f"per column: {missing} are not columns of the signature {list(columns)}",
            hint="export the model with one rank-2 input, or one input named for each column",
        )
    return {i.name: _column_feed(i, columns[i.name]) for i in inputs}


def _column_feed(node: Any, values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, ELEMENT_DTYPES.get(node.type, np.float32))
    return arr.reshape(-1, 1) if len(node.shape) == 2 else arr


def _graph_classes(path: Path) -> list[Any] | None:
    """Class labels stored in the graph by skl2onnx/onnxmltools (ZipMap first, then the model)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    nodes = sorted(graph.node, key=lambda n: n.op_type != "ZipMap")
    for node in nodes:
        for attr in node.attribute:
            if attr.name.startswith("classlabels_"):
                values = onnx.helper.get_attribute_value(attr)
                return python_scalars(v.decode() if isinstance(v, bytes) else v for v in values)
    return None
