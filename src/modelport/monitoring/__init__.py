"""Monitoring: the prediction log, delayed labels, drift, data quality and performance.

`records` defines what a logged prediction is; `logwriter` writes them off the hot path
into Parquet segments; `logstore` reads them back with DuckDB; `labels` attaches ground
truth; `drift` and `performance` compute the signals; `monitor` runs them per endpoint.
"""
