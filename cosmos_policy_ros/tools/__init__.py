"""Console scripts: replay, offline evaluation, checkpoint conversion."""
