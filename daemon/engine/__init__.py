"""The style-transfer engine: Gatys et al.'s optimisation, coarse to fine, on any device."""

from .engine import CancelToken, Engine, Progress, StyleResult

__all__ = ["CancelToken", "Engine", "Progress", "StyleResult"]
