"""Stylising an animation frame by frame without the texture boiling (Ruder et al. 2016).

Every frame after the first starts from the previous stylised frame, warped by the
optical flow of the content frames, and its objective gains a temporal term that keeps
it near that warped frame wherever the flow is reliable (forward-backward consistent,
off motion boundaries, inside the frame). Where the flow fails (disocclusions, new
picture at the borders) only style and content speak, so those areas are painted anew.

The style targets are computed once (the engine caches them) and each frame has its own
content. Frames are taken from any iterable and results handed out one by one, so a
long sequence is never held in memory whole: only the previous frame and its result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from impasto.shared.errors import BAD_IMAGE, ImpastoError
from impasto.shared.options import JobOptions
from impasto.shared.sequence import SequenceOptions

from . import imageops
from .engine import Engine, check_options
from .flow import frame_motion, warp
from .types import CancelToken, Progress, StyleResult

# on_progress(frame_index, progress) for every progress report of every frame.
FrameProgress = Callable[[int, Progress], None]


@dataclass
class FrameResult:
    index: int  # 0-based position in the sequence
    result: StyleResult
    warm: bool  # started from the previous frame with the temporal term
    reliable: float | None = None  # share of pixels the temporal term held (warm frames)


class TemporalTerm:
    """``weight · mean(c · (x − ω)²)`` in 0..255 levels (Ruder et al., eq. 5).

    ``ω`` is the previous stylised frame warped into this one and ``c`` the reliability
    mask; both are resized to whatever scale the engine is optimising.
    """

    def __init__(self, warped: np.ndarray, mask: np.ndarray, weight: float):
        self.target = imageops.to_tensor(warped) * 255.0
        self.mask = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
        self.weight = weight
        self._at: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _sized(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(like.shape[-2:]), str(like.device))
        if key not in self._at:
            h, w = key[0]
            target = imageops.resize(self.target, h, w).to(like.device)
            mask = F.interpolate(self.mask, size=(h, w), mode="area").to(like.device)
            self._at[key] = (target, mask)
        return self._at[key]

    def __call__(self, rgb255: torch.Tensor) -> torch.Tensor:
        target, mask = self._sized(rgb255)
        return self.weight * torch.mean(mask * (rgb255.float() - target) ** 2)


def _at_size(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    rgb = frame[..., :3]
    if rgb.shape[:2] == (h, w):
        return rgb
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def stylise_sequence(
    engine: Engine,
    frames: Iterable,
    styles,
    options: JobOptions | None = None,
    sequence: SequenceOptions | None = None,
    on_progress: FrameProgress | None = None,
    cancel: CancelToken | None = None,
    resume: tuple[int, np.ndarray, np.ndarray] | None = None,
) -> Iterator[FrameResult]:
    """Yield each frame's result as it finishes.

    A cancel (or an engine error) ends the sequence; the frames already yielded stay
    valid, the interrupted one is not yielded. The first frame runs with ``options`` as
    a still image would; later frames run at the output size only, for
    ``sequence.warm_budget(...)`` iterations. ``resume`` = (index of the first frame in
    ``frames``, the content frame before it, that frame's stylised result) carries on an
    interrupted sequence exactly where it stopped: the next frame is warm-started.
    """
    opts = check_options(options if options is not None else JobOptions())
    seq = sequence if sequence is not None else SequenceOptions()
    seq.validate()
    warm_opts = opts.replace(
        init="image", scales=1, iterations=seq.warm_budget(opts.total_iterations())
    )
    previous: tuple[np.ndarray, np.ndarray] | None = None  # content and result, output size
    first_shape = None
    start = 0
    if resume is not None:
        start, before, stylised = resume
        before = imageops.as_rgba_array(before, f"frame {start}")
        first_shape = before.shape[:2]
        h, w = stylised.shape[:2]
        previous = (_at_size(before, h, w), stylised)
    for index, frame in enumerate(frames, start):
        if cancel is not None and cancel.cancelled:
            return
        content = imageops.as_rgba_array(frame, f"frame {index + 1}")
        if first_shape is None:
            first_shape = content.shape[:2]
        elif content.shape[:2] != first_shape:
            raise ImpastoError(
                f"frame {index + 1} is {content.shape[1]}x{content.shape[0]}, the first "
                f"frame {first_shape[1]}x{first_shape[0]}: every frame must be the same size",
                BAD_IMAGE,
            )

        def report(p: Progress, index: int = index) -> None:
            if on_progress is not None:
                on_progress(index, p)

        if previous is None or seq.independent:
            result = engine.run(content, styles, opts, report, cancel)
            warm, reliable = False, None
        else:
            before, stylised = previous
            h, w = stylised.shape[:2]
            backward, mask = frame_motion(before, _at_size(content, h, w), seq.flow)
            warped = np.clip(warp(stylised[..., :3], backward), 0.0, 1.0)
            terms = {}
            if seq.temporal_weight > 0:
                terms["temporal"] = TemporalTerm(warped, mask, seq.temporal_weight)
            result = engine.run(
                content, styles, warm_opts, report, cancel, init_image=warped, extra_terms=terms
            )
            warm, reliable = True, float(mask.mean())
        if result.cancelled:
            return
        h, w = result.image.shape[:2]
        previous = (_at_size(content, h, w), result.image)
        yield FrameResult(index, result, warm, reliable)
