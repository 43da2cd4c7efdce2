"""Which actor takes a job: a free one that already holds the job's style targets.

The engine caches style targets per process (engine/targets.py), so a style that an
actor has seen costs it nothing the next time; another actor would recompute them. The
dispatcher remembers which styles each actor has run (keyed by the style's pixels and
the output size, as the engine's cache is) and prefers a free actor that knows them.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from impasto.daemon.backend import Task

STARTING, READY, RESTARTING, DEAD = "starting", "ready", "restarting", "dead"
REMEMBERED_STYLES = 48  # the engine's TargetCache size: older styles are gone there too


def style_keys(task: Task) -> list[str]:
    """One key per style image of ``task``: its pixels' digest and the output size."""
    keys = []
    for style in task.styles:
        h = hashlib.blake2b(style.data, digest_size=16)
        h.update(f"{style.width}x{style.height}x{style.channels}x{style.depth}".encode())
        keys.append(f"{h.hexdigest()}@{task.options.size}")
    return keys


@dataclass(eq=False)
class ActorSlot:
    """The dispatcher's record of one actor."""

    name: str
    handle: Any  # the Ray actor handle
    state: str = STARTING
    device: str = ""
    node: str = ""
    error: str | None = None
    job: Task | None = None
    started: bool = False  # the job has reported STARTED (it left the actor's queue)
    done: int = 0
    last_used: float = 0.0
    styles: OrderedDict[str, None] = field(default_factory=OrderedDict)

    @property
    def idle(self) -> bool:
        return self.state == READY and self.job is None

    def remember(self, keys: list[str]) -> None:
        for key in keys:
            self.styles[key] = None
            self.styles.move_to_end(key)
        while len(self.styles) > REMEMBERED_STYLES:
            self.styles.popitem(last=False)
        self.last_used = time.monotonic()

    def summary(self) -> dict[str, Any]:
        """What ``status`` shows for this actor."""
        return {
            "name": self.name,
            "state": self.state,
            "device": self.device,
            "node": self.node,
            "queue": int(self.job is not None and not self.started),
            "running": self.job.job_id if self.job is not None and self.started else None,
            "done": self.done,
            "styles": len(self.styles),
            "error": self.error,
        }


def choose(slots: list[ActorSlot], keys: list[str]) -> ActorSlot | None:
    """The idle slot holding most of ``keys``; among equals the one idle longest."""
    idle = [s for s in slots if s.idle]
    if not idle:
        return None
    return max(idle, key=lambda s: (sum(k in s.styles for k in keys), -s.last_used))
