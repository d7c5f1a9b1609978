"""Market data: canonical frames, sources, stores, quality checks and the loader."""
