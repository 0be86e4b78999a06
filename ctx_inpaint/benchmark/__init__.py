"""The benchmark: interleaved timing of the training step against a plain PyTorch loop, and what it measures."""
