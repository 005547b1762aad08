"""Evaluation: lm-eval tasks and backends, scoring, evaluation jobs, stop reasons, the second scorer."""
