"""Whole jobs on the real VGG19 at 48-96 px: output, options, progress, cancel, cache, errors."""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image

from impasto.daemon.engine import CancelToken, Engine, Progress, StyleResult, schedule
from impasto.shared.errors import (
    BAD_IMAGE,
    BAD_OPTIONS,
    DEVICE_UNAVAILABLE,
    IMAGE_TOO_LARGE,
    ImpastoError,
)
from impasto.shared.options import JobOptions


@pytest.fixture(scope="module")
def engine():
    return Engine()


def load(path, size) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize(size), dtype=np.float32) / 255


@pytest.fixture(scope="module")
def content(images_dir):
    return load(images_dir / "tubingen.jpg", (96, 72))


@pytest.fixture(scope="module")
def style(images_dir):
    return load(images_dir / "starry_night.jpg", (96, 60))


@pytest.fixture(scope="module")
def style2(images_dir):
    return load(images_dir / "grace_hopper.jpg", (64, 75))


# Most tests stop at conv3_1, a third of the full network's cost; the first two run the
# paper's layers up to conv5_1.
SHALLOW: dict[str, Any] = {
    "style_layers": ["conv1_1", "conv2_1", "conv3_1"],
    "content_layers": ["conv2_2"],
}


def opts(deep: bool = False, **kw) -> JobOptions:
    base: dict[str, Any] = dict(
        size=64, iterations=6, frames=0, seed=1, **({} if deep else SHALLOW)
    )
    base.update(kw)
    return JobOptions(**base)


def test_stylises_and_lowers_the_loss(engine, content, style):
    seen: list[Progress] = []
    result = engine.run(
        content, [style], opts(True, iterations=12, scales=1), on_progress=seen.append
    )
    assert isinstance(result, StyleResult)
    assert result.image.shape == (48, 64, 3) and result.image.dtype == np.float32
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert result.iterations == 12 and not result.cancelled and result.device == "cpu"
    assert seen[-1].losses["total"] < 0.5 * seen[0].losses["total"]
    assert set(result.losses) == {"content", "style", "tv", "total"}
    # the picture moved away from the content towards the style
    assert np.abs(result.image - load_resized(content, 64, 48)).mean() > 0.02


def load_resized(arr, w, h):
    img = Image.fromarray((arr * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255


def test_progress_fields_frames_and_eta(engine, content, style):
    seen: list[Progress] = []
    result = engine.run(
        content,
        style,
        opts(True, iterations=9, frames=3, stroke_scale="large"),
        on_progress=seen.append,
    )
    assert [p.iteration for p in seen] == list(range(1, 10))
    assert all(p.total == 9 for p in seen)
    framed = [p for p in seen if p.image is not None]
    assert [p.iteration for p in framed] == [3, 6, 9]
    n_scales = seen[0].n_scales
    assert n_scales >= 2 and [p.scale for p in seen][-1] == n_scales
    assert sorted({p.scale for p in seen}) == list(range(1, n_scales + 1))
    for p in framed:
        assert p.image is not None and p.image.shape == (p.height, p.width, 3)
    assert (seen[-1].width, seen[-1].height) == (64, 48)
    assert seen[0].width < 64  # coarse first
    assert all(p.eta is not None and p.eta >= 0 for p in seen) and seen[-1].eta == 0
    assert all(b.elapsed >= a.elapsed for a, b in itertools.pairwise(seen))
    np.testing.assert_array_equal(framed[-1].image, result.image)


def test_progress_every_and_frame_size(engine, content, style):
    seen: list[Progress] = []
    engine.run(
        content,
        style,
        opts(iterations=6, frames=2, progress_every=4, frame_size=32, scales=1),
        on_progress=seen.append,
    )
    assert [p.iteration for p in seen] == [3, 4, 6]
    assert [p.image is not None for p in seen] == [True, False, True]
    assert seen[0].image is not None and seen[0].image.shape == (24, 32, 3)


def test_alpha_is_kept_and_reapplied(engine, content, style):
    alpha = np.zeros((*content.shape[:2], 1), np.float32)
    alpha[:, 48:] = 1.0
    rgba = np.concatenate([content, alpha], axis=2)
    seen = []
    result = engine.run(rgba, [style], opts(frames=1), on_progress=seen.append)
    assert result.image.shape == (48, 64, 4)
    assert result.image[:, :30, 3].max() < 0.05 and result.image[:, 34:, 3].min() > 0.95
    assert seen[-1].image.shape[2] == 4


def test_cancel_returns_promptly_with_an_image(engine, content, style):
    token = CancelToken()
    seen = []

    def on_progress(p):
        seen.append(p)
        if p.iteration == 3:
            threading.Thread(target=token.cancel).start()
            threading.Event().wait(0.05)

    result = engine.run(
        content, [style], opts(iterations=500), on_progress=on_progress, cancel=token
    )
    assert result.cancelled and result.stop_reason == "cancelled"
    assert result.iterations <= 5
    assert result.image.shape == (48, 64, 3) and np.isfinite(result.image).all()
    assert seen[-1].image is not None  # a last frame for the caller


def test_time_limit_stops_early(engine, content, style):
    result = engine.run(content, [style], opts(iterations=2000, time_limit=1.5))
    assert not result.cancelled and result.stop_reason == "time_limit"
    assert 1 <= result.iterations < 2000
    assert result.elapsed < 15
    assert result.image.shape == (48, 64, 3)


def test_seed_makes_noise_init_reproducible(engine, content, style):
    a = engine.run(content, [style], opts(init="noise", seed=5, iterations=3, scales=1))
    b = engine.run(content, [style], opts(init="noise", seed=5, iterations=3, scales=1))
    c = engine.run(content, [style], opts(init="noise", seed=6, iterations=3, scales=1))
    np.testing.assert_array_equal(a.image, b.image)
    assert np.abs(a.image - c.image).mean() > 0.01


def test_init_modes(engine, content, style):
    grey = np.full_like(content, 0.5)
    first = {}
    for mode in ("content", "noise", "image"):
        seen = []
        engine.run(
            content,
            [style],
            opts(init=mode, iterations=1, frames=1, scales=1),
            on_progress=seen.append,
            init_image=grey,
        )
        first[mode] = seen[0].losses["content"]
    assert first["content"] == 0.0  # starts at the content
    assert first["noise"] > 0 and first["image"] > 0 and first["noise"] != first["image"]
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [style], opts(init="image"))
    assert err.value.code == BAD_OPTIONS and "init" in str(err.value)


def test_adam_and_lbfgs_both_reduce_the_loss(engine, content, style):
    for name in ("adam", "lbfgs"):
        seen = []
        engine.run(
            content, [style], opts(optimizer=name, iterations=8, scales=1), on_progress=seen.append
        )
        assert seen[-1].losses["total"] < seen[0].losses["total"], name


def test_each_pooling_reduces_the_loss_with_its_own_network(engine, content, style):
    """ "max" and "mix" build networks of their own (cached beside "avg"); each job's loss
    is its network's, so the three start apart."""
    first = {}
    for pooling in ("avg", "max", "mix"):
        seen = []
        engine.run(
            content, [style], opts(pooling=pooling, iterations=8, scales=1), on_progress=seen.append
        )
        assert seen[-1].losses["total"] < 0.7 * seen[0].losses["total"], pooling
        first[pooling] = seen[0].losses["style"]
    assert len({round(v, 3) for v in first.values()}) == 3


def test_style_blend_sits_between_the_two_styles(engine, content, style, style2):
    def final_style_loss(styles, blend):
        seen = []
        engine.run(
            content,
            styles,
            opts(iterations=4, scales=1, style_blend=blend),
            on_progress=seen.append,
        )
        return seen[0].losses["style"]

    only_a = final_style_loss([style], None)
    only_b = final_style_loss([style2], None)
    both = final_style_loss([style, style2], [1.0, 1.0])
    # at the first iteration (the content image) the blended loss is the weighted mean
    assert both == pytest.approx(0.5 * only_a + 0.5 * only_b, rel=1e-3)
    skewed = final_style_loss([style, style2], [3.0, 1.0])
    assert skewed == pytest.approx(0.75 * only_a + 0.25 * only_b, rel=1e-3)
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [style, style2], opts(style_blend=[1.0]))
    assert err.value.code == BAD_OPTIONS


def test_preserve_colors_luminance_keeps_content_chroma(engine, content, style):
    from impasto.daemon.engine.colors import rgb_to_yiq
    from impasto.daemon.engine.imageops import resize, to_tensor

    plain = engine.run(content, [style], opts(iterations=8))
    kept = engine.run(content, [style], opts(iterations=8, preserve_colors="luminance"))
    c_iq = rgb_to_yiq(resize(to_tensor(content), 48, 64))[:, 1:]
    err_plain = (rgb_to_yiq(to_tensor(plain.image))[:, 1:] - c_iq).abs().mean()
    err_kept = (rgb_to_yiq(to_tensor(kept.image))[:, 1:] - c_iq).abs().mean()
    assert err_kept < 0.01 < err_plain


def test_preserve_colors_match_recolours_the_style(engine, content, style):
    plain = engine.run(content, [style], opts(iterations=8))
    matched = engine.run(content, [style], opts(iterations=8, preserve_colors="match"))
    c_mean = load_resized(content, 64, 48).reshape(-1, 3).mean(0)
    d_plain = np.abs(plain.image.reshape(-1, 3).mean(0) - c_mean).sum()
    d_match = np.abs(matched.image.reshape(-1, 3).mean(0) - c_mean).sum()
    assert d_match < d_plain


def test_second_job_with_the_same_style_hits_the_target_cache(content, style):
    engine = Engine()
    engine.run(content, [style], opts(iterations=2, stroke_scale="large"))
    misses, hits = engine.targets.misses, engine.targets.hits
    assert misses == 4 and hits == 0  # content + style at 2 scales
    assert engine.models_loaded == 1
    engine.run(content, [style], opts(iterations=2, content_weight=0.5, stroke_scale="large"))
    assert engine.targets.misses == misses and engine.targets.hits == 4
    engine.run(content, [style[::-1].copy()], opts(iterations=2, stroke_scale="large"))
    assert engine.targets.misses == misses + 2
    assert engine.models_loaded == 1


def test_output_size_and_pixel_limit(content, style):
    engine = Engine(max_pixels=64 * 48)
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [style], opts(size=None, iterations=1))
    assert err.value.code == IMAGE_TOO_LARGE and "96x72" in str(err.value)
    ok = engine.run(content, [style], opts(size=64, iterations=1))
    assert ok.image.shape == (48, 64, 3)
    same = Engine().run(content, [style], opts(size=None, iterations=1))
    assert same.image.shape == (72, 96, 3)  # size None keeps the content's size


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (np.zeros((0, 10, 3), np.float32), "empty"),
        (np.zeros((10, 10, 5), np.float32), "channels"),
        (np.zeros((10,), np.float32), "shape"),
        (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
        (np.array([["a"]]), "data type"),
        (None, "missing"),
    ],
)
def test_bad_content_images_are_named(engine, style, bad, words):
    with pytest.raises(ImpastoError) as err:
        engine.run(bad, [style], opts(iterations=1))
    assert err.value.code == BAD_IMAGE and words in str(err.value)
    assert "content" in str(err.value)


def test_bad_style_list_and_tiny_output(engine, content, style):
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [], opts())
    assert err.value.code == BAD_IMAGE
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [style, np.zeros((4, 0, 3))], opts())
    assert err.value.code == BAD_IMAGE and "style 2" in str(err.value)
    with pytest.raises(ImpastoError) as err:  # 16x12 cannot pass four poolings to conv5_1
        engine.run(content, [style], opts(True, size=16))
    assert err.value.code == BAD_IMAGE and "too small" in str(err.value)


def test_grayscale_and_uint8_inputs_are_accepted(engine, content, style):
    gray = (content.mean(axis=2) * 255).astype(np.uint8)
    result = engine.run(gray, [(style * 65535).astype(np.uint16)], opts(iterations=2))
    assert result.image.shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"content_weight": -1.0}, "content_weight"),
        ({"style_weight": -2.0}, "style_weight"),
        ({"tv_weight": float("nan")}, "tv_weight"),
        ({"iterations": "ten"}, "iterations"),
        ({"style_layers": ["conv1_1", "conv7_1"]}, "style_layers"),
        ({"optimizer": "sgd"}, "optimizer"),
    ],
)
def test_bad_options_are_named(engine, content, style, change, field):
    o = opts()
    for k, v in change.items():
        setattr(o, k, v)  # bypass the constructor, as a buggy caller might
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [style], o)
    assert err.value.code == BAD_OPTIONS and field in str(err.value)


def test_unavailable_device_is_named(engine, content, style):
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [style], opts(device="cuda:3"))
    assert err.value.code == DEVICE_UNAVAILABLE and "cuda" in str(err.value)
    with pytest.raises(ImpastoError) as err:
        engine.run(content, [style], opts(device="tpu"))
    assert err.value.code == DEVICE_UNAVAILABLE


def test_options_dict_and_custom_layers(engine, content, style):
    result = engine.run(
        content,
        [style],
        {
            "size": 64,
            "iterations": 2,
            "frames": 0,
            "style_layers": ["conv1_1", "conv2_1"],
            "content_layers": ["conv2_2"],
            "style_layer_weights": [1.0, 0.5],
        },
    )
    assert result.image.shape == (48, 64, 3)


@pytest.mark.parametrize("slow", [True, False])
def test_auto_turns_coarse_to_fine_only_after_a_slow_probe(
    engine, content, style, monkeypatch, slow
):
    # The threshold is the only thing set by hand: 0 makes every probe slow, inf none.
    monkeypatch.setattr(schedule, "SLOW_STYLE", 0.0 if slow else math.inf)
    total = schedule.PROBE_MIN_BUDGET
    seen: list[Progress] = []
    result = engine.run(content, style, opts(iterations=total, frames=4), on_progress=seen.append)
    assert [p.iteration for p in seen] == list(range(1, total + 1))
    assert all(p.total == total for p in seen) and result.iterations == total
    # the probe's iterations and the one that reads its losses run at the output size
    probe = seen[: schedule.PROBE_ITERATIONS + 1]
    assert all((p.n_scales, p.width) == (1, 64) for p in probe)
    rest = seen[schedule.PROBE_ITERATIONS + 1 :]
    if slow:
        assert rest[0].width < 64 and rest[0].scale == 1 and rest[0].n_scales >= 2
        assert [p.width for p in rest] == sorted(p.width for p in rest)
    else:
        assert all((p.n_scales, p.width) == (1, 64) for p in rest)
    assert (seen[-1].width, seen[-1].height, seen[-1].scale) == (64, 48, seen[-1].n_scales)
    # no extra frame where the plan changed, and the ETA counts down to the new plan's end
    assert [p.iteration for p in seen if p.image is not None] == [10, 20, 30, 40]
    assert seen[-1].eta == 0 and result.image.shape == (48, 64, 3)


@pytest.mark.parametrize("flat", [True, False])
def test_auto_ends_a_large_picture_once_its_finest_scale_is_flat(
    engine, content, style, monkeypatch, flat
):
    # 64 px stands in for a size above the one-scale range; the threshold is set by hand:
    # inf makes every window flat, -inf none.
    monkeypatch.setattr(schedule, "AUTO_SINGLE_MAX", 32)
    monkeypatch.setattr(schedule, "FINISH_DROP", math.inf if flat else -math.inf)
    total = 40
    seen: list[Progress] = []
    result = engine.run(content, style, opts(iterations=total, frames=4), on_progress=seen.append)
    finest = [p for p in seen if p.scale == p.n_scales]
    assert seen[0].n_scales >= 2 and finest and finest[0].width == 64
    if flat:  # the first time a whole window can be judged
        assert len(finest) == schedule.FINISH_WINDOW + 2 and result.iterations < total
        assert seen[-1].image is not None  # the finished picture is a frame too
    else:
        assert result.iterations == total
    assert result.stop_reason == "done" and result.iterations == seen[-1].iteration
    assert seen[-1].eta == 0 and result.image.shape == (48, 64, 3)
    # the rule never ends a job that asked for a stroke scale of its own
    fixed = engine.run(content, style, opts(iterations=total, stroke_scale="medium"))
    assert fixed.iterations == total
