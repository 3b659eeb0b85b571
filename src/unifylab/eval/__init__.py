"""Evaluation: scorers, statistics (bootstrap CIs) and, later, the model protocol and harness."""
