"""The style-transfer engine: Gatys et al.'s optimisation, coarse to fine, on any device.

``types`` (CancelToken, Progress, StyleResult) imports no torch; ``Engine`` is loaded on
first use, so importing this package stays light.
"""

from __future__ import annotations

from .types import CancelToken, Progress, StyleResult

__all__ = ["CancelToken", "Engine", "Progress", "StyleResult"]


def __getattr__(name: str):
    if name == "Engine":  # lazily: the engine module imports torch
        from .engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
