"""Animations as files: numbered frame images or one animated GIF, read lazily.

A long sequence should not sit in memory whole, so ``FrameSource`` opens one frame at a
time; it knows the frame count and each frame's display time (a GIF's own durations,
or a fixed delay for separate images) without decoding the pictures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError
from impasto.shared.imagefile import load_image
from impasto.shared.rawimage import RawImage

DEFAULT_FRAME_MS = 100  # display time for frames given as separate images


def is_animation_file(path: Path) -> bool:
    return path.suffix.lower() in (".gif", ".webp", ".apng")


@dataclass
class FrameSource:
    """The frames of a sequence: several image files, or the frames of one animated file."""

    paths: list[Path]
    frame_ms: int = DEFAULT_FRAME_MS

    def __post_init__(self) -> None:
        if not self.paths:
            raise ImpastoError("no frames given", BAD_IMAGE)
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise ImpastoError(f"frame file not found: {missing[0]}", BAD_IMAGE)
        self.animated = len(self.paths) == 1 and self._frame_count(self.paths[0]) > 1

    @staticmethod
    def _frame_count(path: Path) -> int:
        from PIL import Image

        try:
            with Image.open(path) as img:
                return getattr(img, "n_frames", 1)
        except OSError:
            return 1  # load_image will name the problem when the frame is read

    def __len__(self) -> int:
        return self._frame_count(self.paths[0]) if self.animated else len(self.paths)

    def names(self) -> list[str]:
        """One file stem per frame, for naming the stylised frames."""
        if self.animated:
            stem = self.paths[0].stem
            return [f"{stem}_{i + 1:04d}" for i in range(len(self))]
        return [p.stem for p in self.paths]

    def durations(self) -> list[int]:
        """Display time of each frame in milliseconds."""
        if not self.animated:
            return [self.frame_ms] * len(self.paths)
        from PIL import Image, ImageSequence

        with Image.open(self.paths[0]) as img:
            return [
                int(f.info.get("duration", self.frame_ms) or self.frame_ms)
                for f in ImageSequence.Iterator(img)
            ]

    def __iter__(self) -> Iterator[RawImage]:
        if not self.animated:
            for path in self.paths:
                yield load_image(path)
            return
        from PIL import Image, ImageSequence

        with Image.open(self.paths[0]) as img:
            for frame in ImageSequence.Iterator(img):
                yield _picture(frame)

    def __getitem__(self, index: int) -> RawImage:
        """One frame on its own (an animated file is opened and seeked each time)."""
        if not self.animated:
            return load_image(self.paths[index])
        from PIL import Image

        with Image.open(self.paths[0]) as img:
            img.seek(range(len(self))[index])
            return _picture(img)


def _picture(frame) -> RawImage:
    import numpy as np

    rgb = frame.convert("RGBA" if _has_alpha(frame) else "RGB")
    return RawImage.from_numpy(np.asarray(rgb))


def _has_alpha(frame) -> bool:
    return "A" in frame.mode or "transparency" in frame.info


def write_animation(path: str | os.PathLike, frames: list[RawImage], durations: list[int]) -> Path:
    """An animated GIF (or WebP) of ``frames``, looping forever."""
    path = Path(path)
    if not is_animation_file(path):
        raise ImpastoError(f"cannot write an animation to {path.name!r}: use .gif", BAD_OPTIONS)
    if not frames:
        raise ImpastoError("no frames to write", BAD_IMAGE)
    pictures = [f.to_pil().convert("RGB") for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(
        path,
        save_all=True,
        append_images=pictures[1:],
        duration=list(durations[: len(pictures)]),
        loop=0,
        optimize=False,
    )
    return path
