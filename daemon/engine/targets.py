"""A cache of loss targets keyed by image content, so a repeated style costs nothing.

A key is a hash of the exact prepared pixels (after resizing and colour matching) plus
the model and layer names, so any change that alters the targets misses the cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import torch


def tensor_digest(t: torch.Tensor) -> str:
    data = t.detach().cpu().contiguous().numpy().tobytes()
    h = hashlib.blake2b(data, digest_size=20)
    h.update(repr(tuple(t.shape)).encode())
    return h.hexdigest()


class TargetCache:
    """LRU map from (kind, model, layers, pixels) to a dict of target tensors."""

    def __init__(self, max_entries: int = 48):
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get_or_compute(
        self, key: tuple, compute: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        with self._lock:
            if key in self._items:
                self.hits += 1
                self._items.move_to_end(key)
                return self._items[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
