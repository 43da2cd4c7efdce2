"""The Ray backend's parts that need no cluster: which actor takes a job (style-target
affinity), and the one clear line a missing Ray gives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from impasto.daemon.backend import Task
from impasto.daemon.cluster import INSTALL_HINT
from impasto.daemon.cluster.placement import DEAD, READY, ActorSlot, choose, style_keys
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage
from tests.daemon_fixture import free_port
from tests.test_daemon_jobs import load


def job_with(*styles: RawImage, size: int = 64) -> Task:
    return Task("1", JobOptions(size=size), styles[0], list(styles))


@pytest.fixture(scope="module")
def two_styles(starry_night, grace_hopper):
    return load(starry_night), load(grace_hopper)


def test_style_keys_follow_the_pixels_and_the_output_size(two_styles):
    starry, hopper = two_styles
    same = RawImage(starry.width, starry.height, starry.channels, starry.depth, starry.data)
    assert style_keys(job_with(starry)) == style_keys(job_with(same))
    assert style_keys(job_with(starry)) != style_keys(job_with(hopper))
    assert style_keys(job_with(starry)) != style_keys(job_with(starry, size=128))
    assert len(style_keys(job_with(starry, hopper))) == 2


def test_an_idle_actor_holding_the_style_wins_over_the_one_idle_longest(two_styles):
    starry, hopper = two_styles
    a, b, c = (ActorSlot(n, handle=None, state=READY) for n in "abc")
    b.remember(style_keys(job_with(starry)))  # b ran it last: idle the shortest time
    assert choose([a, b, c], style_keys(job_with(starry))) is b
    assert choose([a, b, c], style_keys(job_with(hopper))) in (a, c)  # never b: idle least
    b.job = job_with(starry)  # busy: the job goes elsewhere rather than wait
    assert choose([a, b, c], style_keys(job_with(starry))) in (a, c)
    a.state = c.state = DEAD
    assert choose([a, b, c], style_keys(job_with(starry))) is None


def test_an_actor_forgets_styles_the_engine_cache_has_dropped():
    slot = ActorSlot("a", handle=None, state=READY)
    for i in range(60):
        pixels = np.full((16, 16, 3), i / 60, np.float32)
        slot.remember(style_keys(job_with(RawImage.from_numpy(pixels, 8))))
    assert len(slot.styles) == 48


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "impasto.daemon", "--endpoint", "tcp://127.0.0.1:{port}", "--ray", "auto"],
        [
            "-m",
            "impasto.cli.main",
            "daemon",
            "start",
            "--endpoint",
            "tcp://127.0.0.1:{port}",
            "--ray",
            "auto",
        ],
    ],
    ids=["impasto-daemon", "impasto daemon start"],
)
def test_without_ray_installed_ray_is_one_clear_line(command):
    hide_ray = "import sys, runpy; sys.modules['ray'] = None; sys.argv = sys.argv[1:]; "
    module = command[1]
    args = [a.format(port=free_port()) for a in command[2:]]
    code = hide_ray + f"runpy.run_module({module!r}, run_name='__main__')"
    proc = subprocess.run(
        [sys.executable, "-c", code, module, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and INSTALL_HINT in lines[0], proc.stderr
