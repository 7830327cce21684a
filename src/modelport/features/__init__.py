"""Features: views, online stores, streams and enrichment at prediction time (see
docs/features.md)."""
