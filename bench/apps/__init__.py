"""Baseline servers for bench/fast_bench.py, each an app factory for ``uvicorn --factory``.

Started as ``uvicorn --app-dir bench --factory apps.<module>:create_app --workers 2``.
The model file comes from the ``BENCH_MODEL`` environment variable, read when the
factory runs (once in each worker), not at import.
"""
