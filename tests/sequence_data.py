"""A synthetic animation whose motion is known exactly: the sequence tests' ground truth.

A camera pans and zooms over a bundled photograph (tubingen.jpg) while an object (a disc
cut from coffee.png) slides across the picture on its own path. Because every frame is
rendered from the same source by a known mapping, the true backward flow of every pixel
is known, and so are the pixels that have no honest match in the previous frame: those
the object uncovered (real occlusions), those that entered at the frame's border, and a
thin band along the object's outline where the rendering mixes object and background.

``python -m tests.sequence_data out/`` writes the frames as PNGs to look at.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from impasto.daemon.engine.flow import warp

IMAGES = Path(__file__).resolve().parent / "images"

PAN = (2.0, 1.0)  # background pan per frame, in output pixels at the first frame's zoom
ZOOM = 1.03  # each frame magnifies the background by this much (camera moving in)
OBJECT_STEP = (-4.0, 1.5)  # the object's own motion per frame, output pixels
OBJECT_RADIUS = 0.2  # of the frame's width
EDGE_BAND = 1.5  # px either side of the object's outline that count as unreliable


@dataclass
class Sequence:
    frames: list[np.ndarray]  # float32 (H, W, 3) in 0..1
    # flows[t] for t >= 1: (H, W, 2) displacement from a pixel of frame t to where that
    # point was in frame t-1 (x, y order, as OpenCV's flow); flows[0] is None.
    flows: list[np.ndarray | None]
    # reliable[t] for t >= 1: (H, W) bool, true where frame t-1 shows the same point.
    reliable: list[np.ndarray | None]

    def motion(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(true backward flow, reliable mask) of frame ``t`` >= 1."""
        flow, reliable = self.flows[t], self.reliable[t]
        if flow is None or reliable is None:
            raise IndexError(f"frame {t} has no previous frame, so no motion")
        return flow, reliable


def _load(name: str, width: int) -> np.ndarray:
    img = Image.open(IMAGES / name).convert("RGB")
    height = round(img.height * width / img.width)
    img = img.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


def _camera(t: int, w: int, h: int, src_shape) -> tuple[np.ndarray, float]:
    """Source point under the frame's centre, and source pixels per output pixel."""
    sh, sw = src_shape[:2]
    zoom = ZOOM**-t  # source pixels per output pixel shrink as the camera moves in
    centre = np.array([sw / 2 - 6 * PAN[0], sh / 2 - 6 * PAN[1]]) + t * np.array(PAN)
    return centre, zoom


def make_sequence(n: int = 5, width: int = 96, height: int = 72) -> Sequence:
    """``n`` frames of ``width`` x ``height`` with their true flow and reliable pixels."""
    # The source is sampled at about one source pixel per output pixel, so the frames
    # are neither aliased nor blurry.
    src = _load("tubingen.jpg", round(width * 1.6))
    radius = OBJECT_RADIUS * width
    patch_size = int(2 * radius) + 4
    patch = _load("coffee.png", patch_size * 3)
    ph, pw = patch.shape[:2]
    top, left = ph // 2 - patch_size // 2, pw // 2 - patch_size // 2
    patch = np.ascontiguousarray(patch[top : top + patch_size, left : left + patch_size])
    start = np.array([width * 0.7, height * 0.4])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    pix = np.stack([xs, ys], axis=-1)
    mid = np.array([(width - 1) / 2, (height - 1) / 2], dtype=np.float32)

    def background_source(t: int) -> np.ndarray:
        centre, zoom = _camera(t, width, height, src.shape)
        return (centre + zoom * (pix - mid)).astype(np.float32)

    def object_centre(t: int) -> np.ndarray:
        return start + t * np.array(OBJECT_STEP)

    frames, flows, reliable = [], [], []
    for t in range(n):
        s = background_source(t)
        frame = cv2.remap(
            src, s[..., 0], s[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        q = object_centre(t)
        d = np.linalg.norm(pix - q, axis=-1)
        inside = d < radius
        local = (pix - q + patch_size / 2).astype(np.float32)
        obj = cv2.remap(patch, local[..., 0], local[..., 1], cv2.INTER_LINEAR)
        frame[inside] = obj[inside]
        frames.append(np.ascontiguousarray(frame))
        if t == 0:
            flows.append(None)
            reliable.append(None)
            continue
        # Background: the same source point, seen by the previous camera.
        centre_prev, zoom_prev = _camera(t - 1, width, height, src.shape)
        before = mid + (s - centre_prev) / zoom_prev
        before[inside] = pix[inside] - np.array(OBJECT_STEP, dtype=np.float32)
        flow = (before - pix).astype(np.float32)
        ok = (
            (before[..., 0] >= 0)
            & (before[..., 0] <= width - 1)
            & (before[..., 1] >= 0)
            & (before[..., 1] <= height - 1)
        )
        d_prev = np.linalg.norm(before - object_centre(t - 1), axis=-1)
        ok &= inside | (d_prev >= radius + EDGE_BAND)  # not hidden by the object before
        ok &= np.abs(d - radius) > EDGE_BAND  # not on the object's outline now
        flows.append(flow)
        reliable.append(ok)
    return Sequence(frames, flows, reliable)


def instability(stylised: list[np.ndarray], seq: Sequence) -> float:
    """Mean |frame t - frame t-1 warped by the true flow| over reliable pixels, 0..255.

    The warp is the engine's bicubic one: the measurement's own resampling blur must not
    count as flicker. A perfectly stable stylised sequence (each frame the previous one
    moved by the true flow) scores 0 this way, and 1.8 levels with bilinear resampling.
    """
    diffs = []
    for t in range(1, len(stylised)):
        flow, reliable = seq.motion(t)
        warped = warp(stylised[t - 1][..., :3], flow)
        diff = np.abs(stylised[t][..., :3] - np.clip(warped, 0, 1))[reliable]
        diffs.append(diff.mean())
    return float(np.mean(diffs) * 255.0)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "sequence-frames")
    out.mkdir(parents=True, exist_ok=True)
    seq = make_sequence()
    for t, frame in enumerate(seq.frames):
        Image.fromarray(np.round(frame * 255).astype(np.uint8)).save(out / f"frame_{t:02d}.png")
        if t:
            mask = seq.motion(t)[1].astype(np.uint8) * 255
            Image.fromarray(mask).save(out / f"reliable_{t:02d}.png")
    print(f"wrote {len(seq.frames)} frames to {out}")
