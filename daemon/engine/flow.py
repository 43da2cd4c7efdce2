"""Optical flow between animation frames, and where it can be trusted (Ruder et al. 2016).

The flow itself comes from OpenCV (DIS by default, Farneback as the alternative), not
from code of ours. On top of it, Ruder, Dosovitskiy & Brox's forward-backward check marks
the pixels whose flow is not to be trusted: points the previous frame did not show
(disocclusions, where following the backward flow and then the forward flow does not
come back), points on motion boundaries (where the flow changes sharply), and points
whose match lies outside the previous frame.

Arrays here are NumPy, float32 (H, W, 3) in 0..1 for pictures and (H, W, 2) in pixels
(x, y order) for flows; nothing here needs torch.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
from cv2.typing import MatLike

from impasto.shared.errors import BAD_OPTIONS, ImpastoError

METHODS = ("dis", "farneback")
INTERPOLATION = cv2.INTER_CUBIC

# Ruder et al.'s thresholds (section 3.2), with flows in pixels.
CONSISTENCY_RELATIVE = 0.01
CONSISTENCY_ABSOLUTE = 0.5
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002


def _gray(image: np.ndarray) -> np.ndarray:
    rgb = np.clip(image[..., :3], 0.0, 1.0)
    return cv2.cvtColor(np.round(rgb * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def optical_flow(source: np.ndarray, target: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow ``f`` with ``source(p) ≈ target(p + f(p))``: (H, W, 2) float32 pixels."""
    a, b = _gray(source), _gray(target)
    if method == "dis":
        dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        # The medium preset stops at half resolution; going down to full resolution with
        # denser patches and more refinement cut the end-point error on the synthetic
        # pan (96x72, tests/sequence_data.py) from 0.50 to 0.14 px, and every tenth of a
        # pixel shows as texture drift. Flow costs milliseconds next to a frame's
        # optimisation, so the finer settings cost nothing that matters.
        dis.setFinestScale(0)
        dis.setVariationalRefinementIterations(10)
        small = min(a.shape) < 256
        dis.setPatchSize(6 if small else 8)
        dis.setPatchStride(2 if small else 3)
        # OpenCV allocates the output when given None; its stubs type ``flow`` as required.
        flow = dis.calc(a, b, cast(MatLike, None))
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    else:
        raise ImpastoError(
            f"flow method {method!r} is not one of {', '.join(METHODS)}", BAD_OPTIONS
        )
    return np.ascontiguousarray(flow, dtype=np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``p + flow(p)``: the previous frame seen from the current one."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        xs + flow[..., 0],
        ys + flow[..., 1],
        INTERPOLATION,
        borderMode=cv2.BORDER_REPLICATE,
    )


def reliable_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) float32, 1 where frame t's backward flow can be trusted, else 0.

    ``backward`` is frame t -> frame t-1, ``forward`` frame t-1 -> frame t.
    """
    h, w = backward.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    px, py = xs + backward[..., 0], ys + backward[..., 1]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    # The forward flow at the point the backward flow lands on should undo it.
    there = cv2.remap(forward, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mismatch = np.sum((backward + there) ** 2, axis=-1)
    magnitude = np.sum(backward**2, axis=-1) + np.sum(there**2, axis=-1)
    consistent = mismatch <= CONSISTENCY_RELATIVE * magnitude + CONSISTENCY_ABSOLUTE
    gu = np.gradient(backward[..., 0])
    gv = np.gradient(backward[..., 1])
    gradient = gu[0] ** 2 + gu[1] ** 2 + gv[0] ** 2 + gv[1] ** 2
    smooth = gradient <= BOUNDARY_RELATIVE * np.sum(backward**2, axis=-1) + BOUNDARY_ABSOLUTE
    return (inside & consistent & smooth).astype(np.float32)


def frame_motion(previous: np.ndarray, current: np.ndarray, method: str = "dis"):
    """Backward flow of ``current`` and its reliability mask, from the two content frames."""
    backward = optical_flow(current, previous, method)
    forward = optical_flow(previous, current, method)
    return backward, reliable_mask(backward, forward)
