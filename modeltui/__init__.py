"""modeltui: inspect and edit PyTorch models in the terminal."""

__version__ = "0.1.0"
