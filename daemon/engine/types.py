"""What the engine hands across its boundary: cancel token, progress, result.

Torch-free (numpy only), so the daemon's job records and the CLI can hold a job's one
CancelToken and read its Progress without importing the engine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np


class CancelToken:
    """Set from any thread; the engine checks it every iteration."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Progress:
    iteration: int  # 1-based over all scales
    total: int
    scale: int  # 1-based
    n_scales: int
    width: int
    height: int
    losses: dict[str, float]
    elapsed: float
    eta: float | None
    image: np.ndarray | None = None  # float32 (H, W, C) 0..1 on frame iterations


@dataclass
class StyleResult:
    image: np.ndarray  # float32 (H, W, C) at the output size, alpha re-applied
    iterations: int
    losses: dict[str, float]
    cancelled: bool
    elapsed: float
    device: str
    precision: str = "float32"  # the network's arithmetic (bfloat16 on suitable CPUs)
    stop_reason: str = "done"  # done, cancelled, time_limit or diverged
    timings: dict[str, float] = field(default_factory=dict)
    # The finest scale's memory plan: budget and estimated peak (bytes), tile core edge
    # (0 = untiled), tiles, L-BFGS history (see engine/memory.py)
    memory: dict[str, int] = field(default_factory=dict)

    @property
    def device_label(self) -> str:
        """``cpu, bfloat16``: where the job ran and in what arithmetic, for people to read."""
        return f"{self.device}, {self.precision}" if self.device else ""
