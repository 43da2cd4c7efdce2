"""Sequence options: how an animation is stylised frame to frame, on top of JobOptions.

Kept apart from JobOptions because only sequence jobs read them; torch-free like the
rest of ``shared`` so a client can build and check them. ``SequenceOptions.from_dict`` is
the one place untrusted values are checked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from impasto.shared.options import (
    MAX_ITERATIONS,
    OptionsError,
    _float,
    _int,
    checked_from_dict,
)

FLOW_METHODS = ("dis", "farneback")
# Frames in one daemon sequence job: a 40 s clip at 25 fps. Longer animations go in
# several jobs; the daemon's byte caps (daemon/limits.py) bound the frames' size too.
MAX_SEQUENCE_FRAMES = 1000

# Weight of the temporal term, a mean squared 0..255-level difference to the warped
# previous frame over reliable pixels, and the warm frames' share of the first frame's
# iterations. Measured on the synthetic pan (tests/sequence_data.py: 96x72, 60
# iterations, layers up to conv3_1), as (stability ratio against independent frames,
# worst frame's style loss ratio), 4 frames: weight 5 with 18 warm iterations (2.97,
# 1.05), 8 with 18 (3.46, 1.09), 8 with 10 (3.75, 1.09); weight 10 with 18 reached 1.12.
# Over 5 frames, 8 with 10 drifted to 1.14 and 8 with 18 stayed at (3.54, 1.09): the
# texture slowly softens and grows with the zoom unless the style term has time to
# mend it. Taking the temporal term on a blurred difference (sigma 1 px) was worse at
# every weight tried (8: 2.57, 1.04; 16: 2.79, 1.11).
# Re-measured once the engine ran small frames at one scale (stroke scale "auto"), which
# made the independent frames' style better, 4 frames: 8 with 18 (4.22, 1.15), 6 with 30
# (3.83, 1.105), 5 with 30 (3.64, 1.09), 4 with 18 (3.49, 1.09), 4 with 30 (3.44, 1.066),
# 3 with 30 (3.14, 1.045). 4 with half the first frame's iterations keeps both goals
# (ratio >= 3, style within 10%) with room to spare.
DEFAULT_TEMPORAL_WEIGHT = 4.0
DEFAULT_WARM_SHARE = 0.5  # 30 of 60


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
        return checked_from_dict(cls, data, "sequence", "sequence option")

    def validate(self) -> None:
        _float(self, "temporal_weight")
        _int(self, "warm_iterations", 1, MAX_ITERATIONS, optional=True)
        if self.flow not in FLOW_METHODS:
            raise OptionsError("flow", f"{self.flow!r} is not one of {', '.join(FLOW_METHODS)}")
        if not isinstance(self.independent, bool):
            raise OptionsError("independent", f"expected true or false, got {self.independent!r}")
