"""Metrics, evaluation of trained runs, the study report and the paper's numbers."""
