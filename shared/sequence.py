"""Sequence options: how an animation is stylised frame to frame, on top of JobOptions.

Kept apart from JobOptions because only sequence jobs read them; torch-free like the
rest of ``shared`` so a client can build and check them. ``SequenceOptions.from_dict`` is
the one place untrusted values are checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from impasto.shared.options import MAX_ITERATIONS, OptionsError, _float, _int

FLOW_METHODS = ("dis", "farneback")

# Weight of the temporal term, mean squared 0..255-level difference to the warped
# previous frame over reliable pixels. See bench/bench_sequence.py for the measurement
# behind the default.
DEFAULT_TEMPORAL_WEIGHT = 0.2
# Iterations of every frame after the first, as a share of the first frame's budget.
# A warped previous frame is already stylised; it only needs mending where the flow
# failed or the scene changed (bench/bench_sequence.py).
DEFAULT_WARM_SHARE = 0.3


@dataclass
class SequenceOptions:
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT  # 0: warm start without the term
    warm_iterations: int | None = None  # None: DEFAULT_WARM_SHARE of the first frame's
    flow: str = "dis"  # OpenCV's DIS or Farneback optical flow
    independent: bool = False  # every frame on its own, from scratch (to compare)

    def warm_budget(self, first_frame_iterations: int) -> int:
        if self.warm_iterations is not None:
            return self.warm_iterations
        return max(1, round(DEFAULT_WARM_SHARE * first_frame_iterations))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SequenceOptions:
        if not isinstance(data, dict):
            raise OptionsError("sequence", f"expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise OptionsError(unknown[0], "unknown sequence option")
        opts = cls(**data)
        opts.validate()
        return opts

    def validate(self) -> None:
        _float(self, "temporal_weight")
        _int(self, "warm_iterations", 1, MAX_ITERATIONS, optional=True)
        if self.flow not in FLOW_METHODS:
            raise OptionsError("flow", f"{self.flow!r} is not one of {', '.join(FLOW_METHODS)}")
        if not isinstance(self.independent, bool):
            raise OptionsError("independent", f"expected true or false, got {self.independent!r}")
