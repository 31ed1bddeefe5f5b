"""twotower: train, evaluate and probe dense retrievers."""

__version__ = "0.1.0"
