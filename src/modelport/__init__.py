"""Modelport: deploy trained models, serve predictions, watch them, roll back.

Example::

    import modelport
    client = modelport.Client()
    modelport.log_model(model, name="fraud", sample_input=X_train.head(500))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelport.client import Client, log_model

__all__ = ["Client", "__version__", "log_model"]


def __getattr__(name: str) -> Any:
    # The Python API pulls in pandas and SQLAlchemy: import it when first asked for, so
    # `modelport --help` and the error module stay instant.
    if name in ("Client", "log_model"):
        from modelport import client

        return getattr(client, name)
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")
