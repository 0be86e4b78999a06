"""Benchmark building blocks: timers, the bare PyTorch training loop, and the report (see ctx_inpaint/bench.py)."""
