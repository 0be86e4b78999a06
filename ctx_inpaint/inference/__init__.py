"""Inference: loading a model (shipped name, .safetensors or .ckpt), filling holes in photos of any size, export, and the web demo."""
