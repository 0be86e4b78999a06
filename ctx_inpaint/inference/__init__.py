"""Inference: loading a model (``loading.load_model``: shipped name, .safetensors or .ckpt), filling holes in photos of
any size (``inpainter``), inpainting files (``batch``), export to ONNX or safetensors (``export``; the formats in
``onnx`` and ``weights``), and the web demo (``demo``)."""
