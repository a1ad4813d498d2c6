"""Evaluation: metrics, result tables, reports and plots."""
