"""Scoring: metrics, reference rows (mixture, oracle masks), the evaluation workers and the
aggregation of per-clip rows into per-bucket statistics."""
