"""The host-independent job driver (plugin/hostjob.py) both editor plug-ins use.

Settings and names are checked directly; jobs run against the real daemon fixture
(a daemon process on a free loopback port, the real VGG19 at 64 px).
"""

from __future__ import annotations

import time

import pytest

from impasto.plugin.client import Client
from impasto.plugin.hostjob import (
    DEFAULT_SETTINGS,
    HostJob,
    describe_error,
    format_eta,
    frame_layer_name,
    group_layer_name,
    options_from_settings,
    style_display_name,
)
from impasto.shared import errors
from impasto.shared.errors import ImpastoError
from impasto.shared.imagefile import load_image


# -- settings ---------------------------------------------------------------------------
def test_settings_use_cli_names_and_plugin_defaults():
    opts = options_from_settings({"size": 64, "iterations": 6, "frames": 3, "strength": "strong"})
    assert (opts.size, opts.iterations, opts.frames, opts.strength) == (64, 6, 3, "strong")
    defaults = options_from_settings({})
    assert defaults.size is None  # the plug-ins keep the layer's size unless capped
    assert defaults.frames == DEFAULT_SETTINGS["frames"]


def test_settings_stored_as_strings_are_coerced():
    opts = options_from_settings(
        {
            "size": "128",
            "iterations": "",
            "style-weight": "2.5",
            "style_blend": "0.7, 0.3",
            "seed": "none",
            "preset": "draft",
            "placement": "animation",  # host-only: passed over
            "endpoint": "tcp://127.0.0.1:1",
        }
    )
    assert opts.size == 128 and opts.iterations is None and opts.style_weight == 2.5
    assert opts.style_blend == [0.7, 0.3] and opts.seed is None and opts.quality == "draft"
    assert options_from_settings({"size": "original"}).size is None
    assert options_from_settings({"size": 0}).size is None


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"sizee": 64}, "sizee"),
        ({"iterations": "many"}, "iterations"),
        ({"strength": "brutal"}, "strength"),
        ({"frames": -1}, "frames"),
        ({"content_weight": "nan"}, "content_weight"),
    ],
)
def test_bad_settings_name_the_field(settings, field):
    with pytest.raises(ImpastoError) as info:
        options_from_settings(settings)
    assert info.value.code == errors.BAD_OPTIONS
    assert f"'{field}'" in info.value.message


def test_layer_names():
    assert style_display_name("/x/starry_night.jpg") == "starry_night"
    assert style_display_name("Layer 3") == "Layer 3"
    assert group_layer_name(["starry_night", "wave"]) == "Impasto – starry_night + wave"
    assert frame_layer_name("starry", 2, 6) == "starry – iteration 2/6"
    assert frame_layer_name("starry", 6, 6, final=True) == "starry – final (6 iterations)"
    assert frame_layer_name("starry", 2, 6, delay_ms=120) == "starry – iteration 2/6 (120 ms)"


def test_errors_come_with_advice():
    text = describe_error(errors.DAEMON_UNAVAILABLE, "no daemon at tcp://127.0.0.1:1")
    assert text.startswith("no daemon at") and "impasto daemon start" in text
    assert "smaller output size" in describe_error(errors.IMAGE_TOO_LARGE, "too big")
    assert "update both" in describe_error(errors.VERSION_MISMATCH, "v1 vs v2")
    assert describe_error(errors.BAD_IMAGE, "broken") == "broken"
    assert (format_eta(5), format_eta(125.4), format_eta(3725), format_eta(None)) == (
        "0:05",
        "2:05",
        "1:02:05",
        "?",
    )


# -- jobs against the real daemon -----------------------------------------------------------
@pytest.fixture(scope="module")
def images(images_dir):
    content = load_image(images_dir / "tubingen.jpg")
    style = load_image(images_dir / "starry_night.jpg")
    return content, style


def test_job_streams_frames_and_ends_with_the_final_image(daemon, images):
    content, style = images
    opts = options_from_settings({"size": 64, "iterations": 6, "frames": 3, "seed": 1})
    job = HostJob(Client(daemon.endpoint), content, [style], opts, style_name="starry_night")
    seen = []
    job.start()
    assert job.running and job.job_id
    deadline = time.monotonic() + 120
    while job.pump(0.05):  # what a GUI timer does
        seen.append((job.fraction, job.status_text))
        assert time.monotonic() < deadline, job.status_text
    assert job.error is None, job.error_text
    assert job.done and not job.cancelled and job.fraction == 1.0
    assert any("Iteration" in text for _, text in seen), seen[-3:]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    labels = [f.label for f in job.frames]
    assert len(job.frames) == 3, labels
    assert job.frames[-1].final and labels[-1] == "starry_night – final (6 iterations)"
    assert all(not f.final for f in job.frames[:-1])
    iterations = [f.iteration for f in job.frames]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 6
    datas = [f.image.data for f in job.frames]
    assert len(set(datas)) == 3  # frames differ from each other
    assert max(job.frames[-1].image.width, job.frames[-1].image.height) == 64
    assert job.status_text.startswith("Done: 6 iterations")


def test_cancel_keeps_the_frames_so_far(daemon, images):
    content, style = images
    opts = options_from_settings({"size": 64, "iterations": 400, "frames": 200})
    job = HostJob(Client(daemon.endpoint), content, [style], opts, style_name="s")
    job.start()
    deadline = time.monotonic() + 120
    while job.pump(0.05) and len(job.frames) < 2:
        assert time.monotonic() < deadline
    job.cancel()
    assert job.run_blocking(timeout=60) is job.frames
    assert job.cancelled and job.error is None
    assert len(job.frames) >= 2 and job.frames[-1].iteration < 400
    assert job.status_text.startswith("Cancelled")


def test_unreachable_daemon_is_a_readable_error_not_a_hang(images):
    content, style = images
    client = Client("tcp://127.0.0.1:9", timeout=30)  # nothing listens on the discard port
    job = HostJob(client, content, [style], options_from_settings({"size": 64}))
    started = time.monotonic()
    assert job.pump() is False
    assert time.monotonic() - started < 3
    assert job.error.code == errors.DAEMON_UNAVAILABLE
    assert "impasto daemon start" in job.error_text
    with pytest.raises(ImpastoError):
        job.run_blocking()


def test_daemon_side_rejections_end_the_job(daemon, images):
    content, style = images
    opts = options_from_settings({"size": 64, "iterations": 2, "style_layers": "conv9_9"})
    job = HostJob(Client(daemon.endpoint), content, [style], opts)
    with pytest.raises(ImpastoError) as info:
        job.run_blocking(timeout=60)
    assert job.error is info.value and job.done and not job.frames
    assert "conv9_9" in info.value.message
