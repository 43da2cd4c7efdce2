"""Animations: optical flow against known motion, temporal stability, cancel, CLI, API.

The stability test is the issue's measure on the synthetic pan-and-zoom with a moving
object (tests/sequence_data.py): mean |frame t − frame t−1 warped by the true flow| over
the pixels the true motion marks reliable, for the stable run against every frame
stylised on its own with the same settings (a ratio, not a timing), while each frame's
style loss stays within 10% of the independent run's.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PIL.GifImagePlugin import GifImageFile

from impasto.daemon.engine import CancelToken, Engine
from impasto.daemon.engine.flow import frame_motion
from impasto.daemon.engine.sequence import stylise_sequence
from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError
from impasto.shared.options import JobOptions
from impasto.shared.sequence import SequenceOptions
from tests.sequence_data import instability, make_sequence
from tests.test_cli import start_interruptible, wait_for_files

IMPASTO = str(Path(sys.executable).parent / "impasto")
# Style up to conv3_1 (a third of the network's cost), as most engine tests do.
SHALLOW: dict[str, Any] = {
    "style_layers": ["conv1_1", "conv2_1", "conv3_1"],
    "content_layers": ["conv2_2"],
}


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def pan():
    return make_sequence(n=4, width=96, height=72)


@pytest.fixture(scope="module")
def style(starry_night):
    img = Image.open(starry_night).convert("RGB").resize((96, 60))
    return np.asarray(img, dtype=np.float32) / 255


def opts(**kw) -> JobOptions:
    return JobOptions(**{"size": None, "iterations": 60, "frames": 0, **SHALLOW, **kw})


def test_flow_finds_the_known_motion_and_its_occlusions(pan):
    for t in range(1, len(pan.frames)):
        backward, mask = frame_motion(pan.frames[t - 1], pan.frames[t])
        truth, reliable = pan.motion(t)
        error = np.linalg.norm(backward - truth, axis=-1)
        assert error[reliable].mean() < 0.3  # px; 0.13-0.15 measured
        trusted = mask > 0
        assert trusted[reliable].mean() > 0.9  # keeps what is reliable (0.93-0.96)
        assert (~trusted)[~reliable].mean() > 0.6  # flags the occlusions (0.72-0.78)


@pytest.mark.slow
def test_stable_sequence_flickers_far_less_at_the_same_style_loss(engine, pan, style):
    # Measured with the defaults: ratio 3.44, worst style ratio 1.066 (shared.sequence).
    def run(sequence):
        return list(stylise_sequence(engine, pan.frames, [style], opts(), sequence))

    independent = run(SequenceOptions(independent=True))
    stable = run(SequenceOptions())
    assert [f.warm for f in stable] == [False, True, True, True]
    ratio = instability([f.result.image for f in independent], pan) / instability(
        [f.result.image for f in stable], pan
    )
    assert ratio >= 3.0, ratio
    for a, b in zip(independent, stable, strict=True):
        assert b.result.losses["style"] <= 1.10 * a.result.losses["style"]
        assert b.warm == ("temporal" in b.result.losses)


def test_cancel_mid_sequence_keeps_the_finished_frames(engine, pan, style):
    cancel = CancelToken()
    started: list[int] = []

    def on_progress(index, progress):
        started.append(index)
        if index == 2:
            cancel.cancel()

    done = list(
        stylise_sequence(engine, pan.frames, [style], opts(iterations=8), None, on_progress, cancel)
    )
    assert [f.index for f in done] == [0, 1]
    assert not any(f.result.cancelled for f in done)
    assert max(started) == 2  # the third frame had started, and was dropped


def test_frames_of_different_sizes_are_refused(engine, pan, style):
    frames = [pan.frames[0], pan.frames[1][:64]]
    with pytest.raises(ImpastoError) as err:
        list(stylise_sequence(engine, frames, [style], opts(iterations=2)))
    assert err.value.code == BAD_IMAGE
    assert "frame 2 is 96x64" in str(err.value)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"temporal_weight": -1}, "temporal_weight"),
        ({"warm_iterations": 0}, "warm_iterations"),
        ({"flow": "lucas-kanade"}, "flow"),
        ({"independent": "yes"}, "independent"),
        ({"frames_per_second": 3}, "frames_per_second"),
    ],
)
def test_bad_sequence_options_are_named(values, field):
    with pytest.raises(ImpastoError) as err:
        SequenceOptions.from_dict(values)
    assert err.value.code == BAD_OPTIONS
    assert field in str(err.value)


def test_python_api_returns_one_picture_per_frame(pan, style):
    from impasto.daemon.api import stylize_sequence

    seen: list[int] = []
    pictures = stylize_sequence(
        pan.frames[:3],
        style,
        on_frame=lambda i, _: seen.append(i),
        size=64,
        iterations=6,
        warm_iterations=3,
        **SHALLOW,
    )
    assert seen == [0, 1, 2]
    assert [p.size for p in pictures] == [(64, 48)] * 3


def cli_command(paths: list, flags: str = "") -> list[str]:
    """The installed command on ``paths`` at 64 px with the shallow layers, plus ``flags``."""
    layers = ["--style-layers", *SHALLOW["style_layers"], "--content-layers", "conv2_2"]
    return [IMPASTO, "stylize-sequence", *map(str, paths), "--size", "64", *layers, *flags.split()]


def stylize_sequence_cli(paths: list, flags: str = "", timeout: float = 300):
    return subprocess.run(
        cli_command(paths, flags), capture_output=True, text=True, timeout=timeout, check=False
    )


def _write_gif(path: Path, frames: list[np.ndarray], durations: list[int]) -> None:
    pictures = [Image.fromarray(np.round(f * 255).astype(np.uint8)) for f in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=durations, loop=0)


def test_cli_gif_in_gif_out_keeps_the_timing(tmp_path, pan, starry_night):
    source, out = tmp_path / "clip.gif", tmp_path / "clip_starry.gif"
    _write_gif(source, pan.frames[:3], [120, 80, 200])
    proc = stylize_sequence_cli(
        [source, starry_night, "-o", out], "--iterations 6 --warm-iterations 3"
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as gif:
        assert isinstance(gif, GifImageFile) and gif.n_frames == 3
        assert gif.size == (64, 48)
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    assert durations == [120, 80, 200]
    assert "3/3 frames" in proc.stderr


def test_cli_frame_files_to_a_folder(tmp_path, pan, starry_night):
    names = []
    for t, frame in enumerate(pan.frames[:2]):
        names.append(tmp_path / f"shot_{t:03d}.png")
        Image.fromarray(np.round(frame * 255).astype(np.uint8)).save(names[-1])
    out = tmp_path / "out"
    proc = stylize_sequence_cli(
        [*names, starry_night, "-o", out], "--iterations 4 --temporal-weight 5 -q"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["shot_000.png", "shot_001.png"]


def test_cli_names_a_missing_frame(tmp_path, starry_night):
    proc = stylize_sequence_cli([tmp_path / "nope.png", starry_night], timeout=60)
    assert proc.returncode == 1
    assert "frame file not found" in proc.stderr and "nope.png" in proc.stderr


def test_cli_ctrl_c_keeps_the_finished_frames(tmp_path, pan, starry_night):
    source, out, gif = tmp_path / "clip.gif", tmp_path / "out", tmp_path / "done.gif"
    _write_gif(source, pan.frames, [100] * len(pan.frames))
    interrupt_in_the_second_frame([source, starry_night, "-o", out], out, gif)
    assert [p.name for p in out.iterdir()] == ["clip_0001.png"]


def interrupt_in_the_second_frame(args: list, out: Path, gif: Path, flags: str = "") -> None:
    """Run the CLI on 4 frames, Ctrl-C it once the first is written; check what it kept."""
    # --warm-iterations 5000: the second frame runs until interrupted.
    command = cli_command(args, f"{flags} --gif {gif} --iterations 4 --warm-iterations 5000")
    proc = start_interruptible(command)
    wait_for_files(proc, out, "*.png")
    time.sleep(1.0)  # into the second frame
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped early: 1/4 frames" in err
    with Image.open(gif) as done:
        assert isinstance(done, GifImageFile) and done.n_frames == 1 and done.size == (64, 48)
