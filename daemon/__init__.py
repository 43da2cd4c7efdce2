"""The Impasto daemon side: engine, job queue, server. Importing it does not import torch."""

from __future__ import annotations

__all__ = ["NeuralStyleTransfer"]


def __getattr__(name: str):
    if name == "NeuralStyleTransfer":  # lazily, so `import impasto.daemon` stays light
        from .api import NeuralStyleTransfer

        return NeuralStyleTransfer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
