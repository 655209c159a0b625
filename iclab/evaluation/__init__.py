"""Evaluation helpers and reference baselines."""
