"""Modelport: deploy trained models, serve predictions, watch them, roll back."""

__version__ = "0.1.0"
