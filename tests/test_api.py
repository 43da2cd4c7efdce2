"""The seed paper's API: NeuralStyleTransfer(...).fit_style_transfer(...) -> PIL frames."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from PIL import Image

from impasto.daemon import NeuralStyleTransfer
from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def test_paths_in_frames_out(tubingen, starry_night):
    nst = NeuralStyleTransfer(
        style_image=starry_night, content_image=str(tubingen), n_style_layers=3, size=64
    )
    assert nst.options.style_layers == ["conv1_1", "conv2_1", "conv3_1"]
    assert nst.options.content_layers == ["conv4_2"]
    frames = nst.fit_style_transfer(epochs=2, steps_per_epoch=2, show_image=True)
    assert len(frames) == 2 and all(isinstance(f, Image.Image) for f in frames)
    assert frames[-1].size == (64, 48) and frames[-1].mode == "RGB"
    assert nst.result is not None and nst.result.iterations == 4
    assert all(f.size == frames[-1].size for f in frames)  # one size: ready for a GIF


def test_pil_and_array_inputs_blend_and_weights(tubingen, starry_night, grace_hopper):
    content = Image.open(tubingen).resize((80, 60))
    styles = [Image.open(starry_night), np.asarray(Image.open(grace_hopper).resize((50, 60)))]
    nst = NeuralStyleTransfer(
        style_image=styles, content_image=content, n_style_layers=2, n_content_layers=2, size=48
    )
    assert nst.options.content_layers == ["conv4_2", "conv5_2"]
    frames = nst.fit_style_transfer(
        epochs=1,
        steps_per_epoch=3,
        style_weight=5.0,
        content_weight=0.1,
        var_weight=0.0,
        learning_rate=2.0,
        optimizer="adam",
    )
    assert len(frames) == 1 and frames[0].size == (48, 36)
    assert nst.result is not None and nst.result.losses["tv"] == 0.0


def test_rgba_content_keeps_alpha(tubingen, starry_night):
    content = Image.open(tubingen).convert("RGBA").resize((64, 48))
    content.putalpha(Image.new("L", (64, 48), 100))
    nst = NeuralStyleTransfer(
        style_image=starry_night, content_image=content, n_style_layers=2, size=64
    )
    frame = nst.fit_style_transfer(epochs=1, steps_per_epoch=1)[-1]
    assert frame.mode == "RGBA" and frame.getpixel((10, 10))[3] == 100


def test_bad_arguments_are_named(tubingen, starry_night, tmp_path):
    with pytest.raises(ImpastoError) as err:
        NeuralStyleTransfer(style_image=tmp_path / "none.jpg", content_image=tubingen)
    assert err.value.code == BAD_IMAGE and "none.jpg" in str(err.value)
    with pytest.raises(ImpastoError) as err:
        NeuralStyleTransfer(style_image=starry_night, content_image=tubingen, n_style_layers=9)
    assert err.value.code == BAD_OPTIONS and "n_style_layers" in str(err.value)
    with pytest.raises(ImpastoError) as err:
        NeuralStyleTransfer(style_image=starry_night, content_image=12345)
    assert err.value.code == BAD_IMAGE
    with pytest.raises(ImpastoError) as err:
        NeuralStyleTransfer(style_image=starry_night, content_image=tubingen, sharpness=3)
    assert err.value.code == BAD_OPTIONS
    nst = NeuralStyleTransfer(style_image=starry_night, content_image=tubingen, size=64)
    bad: list[dict[str, Any]] = [  # wrong on purpose: fit_style_transfer must say so
        {"epochs": 0},
        {"style_weight": float("nan")},
        {"steps_per_epoch": 1.5},
    ]
    for kwargs in bad:
        with pytest.raises(ImpastoError) as err:
            nst.fit_style_transfer(**kwargs)
        assert err.value.code == BAD_OPTIONS


def test_importing_the_daemon_package_does_not_import_torch():
    code = (
        "import sys, impasto.daemon as d; print('torch' in sys.modules); "
        "print(d.NeuralStyleTransfer.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "NeuralStyleTransfer"]
