"""Turning a sweep directory (Hydra multirun) into a Markdown report: runs, tables, plots, image grid."""
