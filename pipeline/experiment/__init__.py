"""Experiment-level glue that may read both training settings and evaluation results."""
