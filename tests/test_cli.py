"""The `impasto` command, run as a user runs it: the installed console script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.GifImagePlugin import GifImageFile

from impasto.cli.frames import FrameRecorder
from impasto.shared.rawimage import RawImage

IMPASTO = str(Path(sys.executable).parent / "impasto")
SMALL = ["--size", "64", "--iterations", "4", "--frame-count", "2"]


def impasto(*args: str, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [IMPASTO, *args], capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "expected an error message"
    assert lines[-1].startswith("impasto: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], "impasto stylize photo.jpg"),
        (["stylize"], "--preserve-colors"),
        (["demo"], "Grace Hopper"),
        (["daemon"], "impasto daemon start"),
        (["install-plugin"], "impasto install-plugin krita --check"),
        (["keys"], "--authorize"),
    ],
)
def test_every_command_has_example_led_help(command, expected):
    proc = impasto(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "example" in proc.stdout
    assert expected in proc.stdout


def test_stylize_locally_writes_picture_frames_and_gif(tmp_path, tubingen, starry_night):
    out = tmp_path / "out.png"
    gif = tmp_path / "progress.gif"
    frames = tmp_path / "frames"
    proc = impasto(
        "stylize",
        str(tubingen),
        str(starry_night),
        "-o",
        str(out),
        "--local",
        "--gif",
        str(gif),
        "--frames",
        str(frames),
        "--seed",
        "1",
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 iterations" in proc.stderr
    result = Image.open(out)
    assert max(result.size) == 64
    with Image.open(tubingen) as original:
        ratio = original.width / original.height
    assert abs(result.width / result.height - ratio) < 0.05
    source = Image.open(tubingen).convert("RGB").resize(result.size)
    diff = sum(abs(a - b) for a, b in zip(result.tobytes(), source.tobytes(), strict=True))
    assert diff / len(source.tobytes()) > 2, "the output should not be the content unchanged"
    assert len(list(frames.glob("frame_*.png"))) >= 2
    animation = Image.open(gif)
    assert isinstance(animation, GifImageFile) and animation.n_frames >= 2
    assert animation.size == result.size


def test_a_frames_folder_gets_each_frame_as_it_comes_and_keeps_none(tmp_path):
    # At 4096 px a frame is 38 MB, more than a job's memory budget spares: only a GIF
    # needs them kept.
    recorder = FrameRecorder(tmp_path / "frames")
    for i in (5, 10):
        recorder.add(i, RawImage(2, 2, 3, 8, bytes([i] * 12)))
        assert (tmp_path / "frames" / f"frame_{i:05d}.png").exists()
    assert recorder.frames == []
    final = RawImage(2, 2, 3, 8, bytes([200] * 12))
    recorder.finish(final, 10)  # the last frame is already the final picture
    with Image.open(tmp_path / "frames" / "frame_00010.png") as written:
        assert written.getpixel((0, 0)) == (10, 10, 10)
    recorder.finish(final, 12)
    assert (tmp_path / "frames" / "frame_00012.png").exists()


def test_stylize_through_a_running_daemon(tmp_path, daemon, tubingen, starry_night):
    out = tmp_path / "via_daemon.png"
    proc = impasto(
        "stylize",
        str(tubingen),
        str(starry_night),
        "-o",
        str(out),
        "--daemon",
        "--endpoint",
        daemon.endpoint,
        *SMALL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "daemon" in proc.stderr or daemon.endpoint in proc.stderr
    assert max(Image.open(out).size) == 64


def test_daemon_required_but_absent_exits_3(tmp_path, tubingen, starry_night):
    proc = impasto(
        "stylize",
        str(tubingen),
        str(starry_night),
        "-o",
        str(tmp_path / "x.png"),
        "--daemon",
        "--endpoint",
        "tcp://127.0.0.1:1",
        *SMALL,
    )
    assert_one_line_error(proc, 3, "impasto daemon start")
    assert not (tmp_path / "x.png").exists()


def test_corrupt_image_is_one_readable_line(tmp_path, starry_night):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    proc = impasto("stylize", str(broken), str(starry_night), "--local", *SMALL)
    assert_one_line_error(proc, 1, "broken.jpg")


def test_missing_file_names_it(tmp_path, starry_night):
    proc = impasto("stylize", str(tmp_path / "nope.png"), str(starry_night), "--local")
    assert_one_line_error(proc, 1, "nope.png")


def test_bad_option_names_the_option(tubingen, starry_night):
    proc = impasto("stylize", str(tubingen), str(starry_night), "--local", "--size", "5")
    assert_one_line_error(proc, 1, "size")
    proc = impasto(
        "stylize", str(tubingen), str(starry_night), "--local", "--style-blend", "1", "2"
    )
    assert_one_line_error(proc, 1, "style_blend")


def test_bad_output_extension_fails_before_any_work(tubingen, starry_night):
    proc = impasto("stylize", str(tubingen), str(starry_night), "-o", "out.xyz", "--local")
    assert_one_line_error(proc, 1, ".png")


def test_debug_shows_the_traceback(tmp_path, starry_night):
    proc = impasto("--debug", "stylize", str(tmp_path / "nope.png"), str(starry_night))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_ctrl_c_saves_the_best_image_so_far(tmp_path, tubingen, starry_night):
    out = tmp_path / "interrupted.png"
    frames = tmp_path / "frames"
    proc = start_interruptible(
        [
            IMPASTO,
            "stylize",
            str(tubingen),
            str(starry_night),
            "-o",
            str(out),
            "--local",
            "--size",
            "96",
            "--iterations",
            "2000",
            "--frame-count",
            "400",
            "--frames",
            str(frames),
        ]
    )
    wait_for_files(proc, frames, "frame_*.png")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped early" in err
    assert max(Image.open(out).size) == 96


def test_demo_writes_picture_and_gif(tmp_path):
    proc = impasto("demo", "--out-dir", str(tmp_path), "--local", *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert max(Image.open(tmp_path / "grace_hopper_starry_night.png").size) == 64
    animation = Image.open(tmp_path / "grace_hopper_starry_night.gif")
    assert isinstance(animation, GifImageFile) and animation.n_frames >= 2


def test_keys_creates_and_shows_pairs():
    proc = impasto("keys")
    assert proc.returncode == 0, proc.stderr
    assert "created server key pair" in proc.stdout
    shown = impasto("keys", "--show")
    assert shown.returncode == 0
    # "<name> public key: KEY  (path)"; a Z85 key may itself end in ':' (1 in 85)
    keys = [line.split(": ", 1)[1].split()[0] for line in shown.stdout.splitlines() if ":" in line]
    assert len(keys) == 2 and all(len(k) == 40 for k in keys)
    config = Path(os.environ["XDG_CONFIG_HOME"])
    assert list(config.rglob("server.key_secret"))


def test_install_plugin_check_then_install(tmp_path):
    dest = tmp_path / "pykrita"
    before = impasto("install-plugin", "krita", "--dest", str(dest), "--check")
    assert before.returncode == 1
    assert "problem" in before.stdout
    installed = impasto("install-plugin", "krita", "--dest", str(dest))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    after = impasto("install-plugin", "krita", "--dest", str(dest), "--check")
    assert after.returncode == 0, after.stdout
    assert "everything in place" in after.stdout


def test_daemon_start_status_stop(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    started = impasto("daemon", "start", "--endpoint", endpoint)
    try:
        assert started.returncode == 0, started.stderr
        assert f"started on {endpoint}" in started.stdout
        again = impasto("daemon", "start", "--endpoint", endpoint)
        assert "already running" in again.stdout
        status = impasto("daemon", "status", "--endpoint", endpoint)
        assert status.returncode == 0, status.stderr
        assert endpoint in status.stdout
    finally:
        stopped = impasto("daemon", "stop", "--endpoint", endpoint)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    gone = impasto("daemon", "status", "--endpoint", endpoint)
    assert_one_line_error(gone, 3, "impasto daemon start")


def start_interruptible(command: list) -> subprocess.Popen:
    """The CLI in a child that takes Ctrl-C as a terminal's: a runner that started us in
    the background (as a non-interactive shell's `&` does) passes SIGINT on ignored, and
    so would Python."""
    return subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_files(proc: subprocess.Popen, folder: Path, pattern: str, timeout=180.0) -> None:
    """Until the running child has written a file matching ``pattern`` into ``folder``."""
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)


def test_stylize_estimate_prints_the_plan_and_runs_nothing(
    tmp_path, daemon, tubingen, starry_night
):
    out = tmp_path / "never.png"
    args = ["stylize", str(tubingen), str(starry_night), "-o", str(out), "--estimate"]
    proc = impasto(*args, "--daemon", "--endpoint", daemon.endpoint, *SMALL)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("output 64x48 px on ") and daemon.endpoint in lines[0]
    assert lines[1] == "  1. 64x48 px, 4 iterations, whole", proc.stdout
    assert lines[-2].startswith("peak memory about ") and "GB budget" in lines[-2]
    assert lines[-1].startswith("time about 0:")
    assert lines[-1].endswith("(at the speed measured there)")  # the daemon's warm-up
    assert not out.exists()


def test_stylize_estimate_in_process_names_a_size_that_fits(tmp_path, tubingen, starry_night):
    env = {**os.environ, "IMPASTO_MEMORY_BUDGET_MB": "1024", "OMP_NUM_THREADS": "1"}
    args = ["stylize", str(tubingen), str(starry_night), "--estimate", "--local"]
    proc = impasto(*args, "--size", "512", env=env)
    assert_one_line_error(proc, 1, "ask for", "px or less")
    fits = impasto(*args, "--size", "64", env=env)
    assert fits.returncode == 0, fits.stderr
    assert "(this process)" in fits.stdout and "of a 1.00 GB budget" in fits.stdout
    assert "(at the speed measured there)" in fits.stdout  # calibrated first, in budget
