"""The editors' animation job (plugin/hostjob.py SequenceHostJob) against a real daemon.

Frames come from tests/sequence_data.py (a known pan and zoom), 64x48, 6 iterations; the
job runs exactly as Krita's and GIMP's adapters drive it, minus the editor.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from impasto.plugin.client import Client
from impasto.plugin.hostjob import (
    SequenceHostJob,
    options_from_settings,
    sequence_options_from_settings,
)
from impasto.shared import errors
from impasto.shared.errors import ImpastoError
from impasto.shared.imagefile import load_image
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import SequenceOptions
from tests.sequence_data import make_sequence

W, H = 64, 48


def _raw(frame: np.ndarray, hole: bool = True) -> RawImage:
    """An RGBA frame; ``hole``: a transparent corner the results must keep exactly."""
    rgba = np.concatenate([frame, np.ones_like(frame[..., :1])], axis=2)
    if hole:
        rgba[:12, :16, 3] = 0.0
        rgba[12:16, :16, 3] = 0.5
    data = np.round(rgba * 255).astype(np.uint8)
    return RawImage(W, H, 4, 8, data.tobytes())


@pytest.fixture(scope="module")
def pictures():
    return [_raw(f) for f in make_sequence(3, W, H).frames]


@pytest.fixture(scope="module")
def style(starry_night):
    return load_image(starry_night)


def _alpha(image: RawImage) -> np.ndarray:
    return np.frombuffer(bytes(image.data), np.uint8).reshape(H, W, 4)[..., 3]


def test_frames_go_out_once_and_come_back_to_every_key_in_order(daemon, pictures, style):
    a, b, c = pictures
    written: list[tuple[str, RawImage]] = []
    texts: list[str] = []
    job = SequenceHostJob(
        Client(daemon.endpoint),
        [("a", a), ("b", b), ("b-held", b), ("c", c)],  # a hold: "b" twice in a row
        [style],
        options_from_settings({"iterations": 6, "seed": 1}),
        SequenceOptions(warm_iterations=3),
        on_frame=lambda key, image: written.append((key, image)),
        style_name="starry",
    )
    frames = job.run_blocking(timeout=300, on_update=lambda j: texts.append(j.status_text))
    assert job.error is None and not job.cancelled
    assert job.n_frames == 3  # the hold was sent once
    assert [key for key, _ in written] == ["a", "b", "b-held", "c"]
    assert [f.key for f in frames] == ["a", "b", "b-held", "c"]
    assert written[1][1] is written[2][1]  # the held frame's result, written twice
    assert job.status_text.startswith("Done: 4 frames"), job.status_text
    assert any(t.startswith("Frame 2 of 3 · iteration") for t in texts), texts
    assert any(" left" in t for t in texts), texts
    for key, image in written:
        assert (image.width, image.height, image.channels) == (W, H, 4)
        assert np.array_equal(_alpha(image), _alpha(a)), key  # the source's alpha, exactly
    stylised = [np.frombuffer(bytes(image.data), np.uint8) for _, image in written]
    source = np.frombuffer(bytes(a.data), np.uint8)
    assert np.abs(stylised[0].astype(int) - source).mean() > 3  # painted
    assert np.abs(stylised[0].astype(int) - stylised[1]).mean() > 0.5  # its own frame


def test_cancel_keeps_the_frames_written_so_far(daemon, pictures, style):
    written: list[str] = []
    many = [(i, pictures[i % 3]) for i in range(8)]
    job = SequenceHostJob(
        Client(daemon.endpoint),
        many,
        [style],
        options_from_settings({"iterations": 6, "seed": 1}),
        SequenceOptions(warm_iterations=400),
        on_frame=lambda key, _image: written.append(key),
    )
    job.start()
    deadline = time.monotonic() + 180
    while job.pump(0.05) and not written:
        assert time.monotonic() < deadline
    job.cancel()
    job.run_blocking(timeout=60)
    assert job.cancelled and job.error is None
    assert 1 <= len(written) < 8 and written == list(range(len(written)))
    assert [f.key for f in job.frames] == written
    assert job.status_text.startswith("Cancelled after"), job.status_text


def test_a_frame_the_editor_cannot_write_ends_the_job(daemon, pictures, style):
    def refuse(_key, _image):
        raise ImpastoError("the layer is locked", errors.BAD_IMAGE)

    job = SequenceHostJob(
        Client(daemon.endpoint),
        list(enumerate(pictures)),
        [style],
        options_from_settings({"iterations": 6}),
        on_frame=refuse,
    )
    with pytest.raises(ImpastoError) as info:
        job.run_blocking(timeout=300)
    assert info.value.message == "the layer is locked"
    assert job.done and len(job.frames) == 1


def test_frames_of_different_sizes_or_none_are_refused_before_sending(pictures, style):
    small = RawImage(32, 24, 3, 8, bytes(32 * 24 * 3))
    client = Client("tcp://127.0.0.1:9")
    opts = options_from_settings({})
    with pytest.raises(ImpastoError) as info:
        SequenceHostJob(client, [(0, pictures[0]), (1, small)], [style], opts)
    assert "32x24, 64x48" in info.value.message and info.value.code == errors.BAD_IMAGE
    with pytest.raises(ImpastoError) as info:
        SequenceHostJob(client, [], [style], opts)
    assert "no frames" in info.value.message


def test_animation_settings_are_read_apart_from_the_job_options():
    settings = {"iterations": 6, "temporal-weight": "2.5", "warm_iterations": 9, "flow": "dis"}
    assert options_from_settings(settings).iterations == 6  # passes over the others
    sequence = sequence_options_from_settings(settings)
    assert (sequence.temporal_weight, sequence.warm_iterations) == (2.5, 9)
    assert sequence_options_from_settings({"size": 64}) == SequenceOptions()
    with pytest.raises(ImpastoError) as info:
        sequence_options_from_settings({"flow": "magic"})
    assert "flow" in info.value.message and info.value.code == errors.BAD_OPTIONS
