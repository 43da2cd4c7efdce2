"""Arrays in, tensors out: checking callers' pixels and resizing them.

The engine's callers hand over NumPy arrays (H, W, 3|4) in 0..1. Anything else that can
reasonably be read as an image (uint8/uint16, grayscale, gray+alpha) is converted; what
cannot gives a BAD_IMAGE error naming the problem.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from impasto.shared.errors import BAD_IMAGE, IMAGE_TOO_LARGE, ImpastoError


def as_rgba_array(image, what: str) -> np.ndarray:
    """Validate ``image`` and return float32 (H, W, 3|4) in 0..1."""
    if image is None:
        raise ImpastoError(f"{what} image is missing", BAD_IMAGE)
    try:
        arr = np.asarray(image)
    except Exception as exc:
        raise ImpastoError(f"{what} image is not an array: {exc}", BAD_IMAGE) from exc
    if arr.dtype == object or arr.dtype.kind not in "uifb":
        raise ImpastoError(f"{what} image has unsupported data type {arr.dtype}", BAD_IMAGE)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImpastoError(
            f"{what} image must be (height, width, channels), got shape {arr.shape}", BAD_IMAGE
        )
    h, w, c = arr.shape
    if h == 0 or w == 0:
        raise ImpastoError(f"{what} image is empty ({w}x{h} pixels)", BAD_IMAGE)
    if c not in (1, 2, 3, 4):
        raise ImpastoError(f"{what} image has {c} channels; expected 1 to 4", BAD_IMAGE)
    # One float32 array at most, and none for float32 already in 0..1 (a decoded
    # upload): a layer-sized content is held all job long (memory.INPUT_BYTES_PER_PX).
    if arr.dtype.kind in "uib":
        kind, size = arr.dtype.kind, arr.dtype.itemsize
        top = 1.0 if kind == "b" else 65535.0 if kind == "u" and size == 2 else 255.0
        arr = arr.astype(np.float32)
        arr /= top
        np.clip(arr, 0.0, 1.0, out=arr)
    else:
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise ImpastoError(f"{what} image contains NaN or infinite values", BAD_IMAGE)
        if arr.min() < 0.0 or arr.max() > 1.0:  # the caller's array is not ours to clip
            arr = np.clip(arr, 0.0, 1.0)
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 2:
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    return np.ascontiguousarray(arr)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3|4) array -> (1, 3, H, W) float32 tensor of its colour channels.

    A view of a float32 array, not a copy: a layer-sized content stays held by its
    caller for the whole job, and a second copy of it cost 12 bytes a pixel more."""
    return torch.from_numpy(np.asarray(rgb)).permute(2, 0, 1)[None, :3].float()


def to_array(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) float32 array in 0..1."""
    chw = t[0].detach()
    out = torch.empty(chw.shape[1], chw.shape[2], chw.shape[0])  # one copy, at any size
    return out.copy_(chw.permute(1, 2, 0)).clamp_(0, 1).numpy()


def resize(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize, antialiased when shrinking."""
    if tuple(t.shape[-2:]) == (height, width):
        return t
    shrink = height < t.shape[-2] or width < t.shape[-1]
    return F.interpolate(
        t, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink
    )


def upscale(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic enlargement, for carrying a picture up to the next scale.

    Sharper than bilinear, so the finer scale starts nearer its texture; the caller
    clamps the overshoot.
    """
    return F.interpolate(t, size=(height, width), mode="bicubic", align_corners=False)


def fit_long_edge(height: int, width: int, long_edge: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is ``long_edge``; each side at least 1."""
    s = long_edge / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def fit_area(height: int, width: int, pixels: float) -> tuple[int, int]:
    """(h, w) with the same aspect ratio and about ``pixels`` pixels."""
    s = (pixels / (height * width)) ** 0.5
    return max(1, round(height * s)), max(1, round(width * s))


def output_size(height: int, width: int, size: int | None, max_pixels: int) -> tuple[int, int]:
    h, w = (height, width) if size is None else fit_long_edge(height, width, size)
    if h * w > max_pixels:
        raise ImpastoError(
            f"output would be {w}x{h} = {w * h:,} pixels, over this engine's limit of "
            f"{max_pixels:,}; ask for a smaller size",
            IMAGE_TOO_LARGE,
        )
    return h, w
