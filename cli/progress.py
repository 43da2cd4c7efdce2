"""A one-line live progress bar with losses and ETA for terminal runs.

On a terminal it redraws one line; into a pipe or log it prints a plain line every
tenth of the run, so CI logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from impasto.plugin.hostjob import format_eta


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, width: int = 28, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.width = width
        self.quiet = quiet
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_decile = -1
        self._started = time.monotonic()
        self._drawn = False

    def update(
        self,
        iteration: int,
        total: int,
        losses: dict | None = None,
        eta: float | None = None,
        scale: int | None = None,
        n_scales: int | None = None,
    ) -> None:
        if self.quiet or total <= 0:
            return
        fraction = min(max(iteration / total, 0.0), 1.0)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        parts = [f"[{bar}] {iteration}/{total}"]
        if scale and n_scales and n_scales > 1:
            parts.append(f"scale {scale}/{n_scales}")
        if losses and "total" in losses:
            parts.append(f"loss {losses['total']:.4g}")
        elapsed = time.monotonic() - self._started
        parts.append(f"{format_eta(elapsed)} elapsed, ETA {format_eta(eta)}")
        line = "  ".join(parts)
        if self.live:
            self.stream.write("\r" + line + "\x1b[K")
            self._drawn = True
        else:
            decile = int(fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that must not be overwritten by the bar."""
        if self.quiet:
            return
        self.close()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
