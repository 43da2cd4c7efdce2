"""Keeping progress frames: numbered PNGs in a folder and an animated GIF.

Frames arrive at the resolution of the scale being optimised, so for an animation they
are all brought to the size of the final image first. Only an animation keeps frames in
memory: a folder of PNGs gets each one as it comes (at 4096 px a frame is 38 MB, and
a job's memory budget has no room for a pile of them).
"""

from __future__ import annotations

from pathlib import Path

from impasto.shared.errors import ImpastoError
from impasto.shared.rawimage import RawImage


class FrameRecorder:
    """Collects frames as they arrive and writes them where the user asked."""

    def __init__(self, frames_dir: Path | None = None, gif_path: Path | None = None):
        self.frames_dir = frames_dir
        self.gif_path = gif_path
        self.frames: list[tuple[int, RawImage]] = []  # for the GIF only
        self.last: int | None = None  # the iteration of the latest frame
        if frames_dir is not None:
            try:
                frames_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ImpastoError(f"cannot create frames folder {frames_dir}: {exc}") from exc

    @property
    def wanted(self) -> bool:
        return self.frames_dir is not None or self.gif_path is not None

    def add(self, iteration: int, frame: RawImage) -> None:
        if not self.wanted:
            return
        self.last = iteration
        if self.gif_path is not None:
            self.frames.append((iteration, frame))
        if self.frames_dir is not None:
            frame.to_pil().save(self.frames_dir / f"frame_{iteration:05d}.png")

    def finish(self, final: RawImage, iteration: int, frame_ms: int = 250) -> list[Path]:
        """Write the final frame and the GIF; returns the files written."""
        written: list[Path] = []
        if self.last != iteration:
            self.add(iteration, final)
        if self.frames_dir is not None:
            written.append(self.frames_dir)
        if self.gif_path is not None and self.frames:
            write_gif(self.gif_path, [f for _, f in self.frames], final, frame_ms)
            written.append(self.gif_path)
        return written


def write_gif(path: Path, frames: list[RawImage], final: RawImage, frame_ms: int = 250) -> None:
    """An animation that holds the last frame a little longer, looping forever."""
    from PIL import Image

    size = (final.width, final.height)
    pictures = [f.to_pil().convert("RGB").resize(size, Image.Resampling.LANCZOS) for f in frames]
    durations = [frame_ms] * (len(pictures) - 1) + [frame_ms * 6]
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(
        path,
        save_all=True,
        append_images=pictures[1:],
        duration=durations,
        loop=0,
        optimize=False,
    )
