"""ctx-inpaint: Context Encoders (Pathak et al., CVPR 2016) on PyTorch Lightning + Hydra."""

__version__ = "0.1.0"
