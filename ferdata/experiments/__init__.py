"""Experiments over many runs: every fold (cv), their summaries, compare, statistics (``docs/training.md``)."""
