"""Evaluation: image metrics, scoring a model and the classical fills on held-out photos, and the statistics behind the tables."""
