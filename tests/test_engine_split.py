"""The split objective (shallow blocks in tiles, deep blocks whole) is the whole picture's.

Real VGG19 weights, real images, float32 so the comparison is not blurred by bfloat16's
rounding; and the plan picks it where the whole picture does not fit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.daemon.engine import Engine, eta, memory, tiling
from impasto.daemon.engine.losses import gram
from impasto.daemon.engine.models import available_layers
from impasto.daemon.engine.objective import Objective
from impasto.daemon.engine.split import SplitObjective
from impasto.daemon.engine.weights import load_extractor
from impasto.shared.options import JobOptions

STYLE_LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


def load(path, size) -> torch.Tensor:
    a = np.asarray(Image.open(path).convert("RGB").resize(size), dtype=np.float32) / 255
    return torch.from_numpy(a).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def vgg():
    return load_extractor("vgg19", "original", "avg", available_layers("vgg19")["conv5_1"])


@pytest.fixture(scope="module")
def problem(vgg, images_dir):
    return make_problem(vgg, images_dir)


def make_problem(vgg, images_dir):
    """A picture away from its content, the content, and the style's Gram targets."""
    prep = vgg.preprocessing
    c = prep.to_input(load(images_dir / "tubingen.jpg", (200, 150)))
    x = (c + 20 * torch.randn(c.shape, generator=torch.Generator().manual_seed(0))).detach()
    with torch.no_grad():
        feats = vgg(prep.to_input(load(images_dir / "starry_night.jpg", (120, 96))), STYLE_LAYERS)
    return x, c, {k: gram(v) for k, v in feats.items()}


@pytest.mark.parametrize(
    ("pool", "core", "fmt"),
    [
        (2, 64, torch.contiguous_format),
        (2, 64, torch.channels_last),
        (2, 96, torch.contiguous_format),
        (3, 64, torch.contiguous_format),
        (2, 200, torch.contiguous_format),
    ],
    ids=[
        "pool2 in 12 tiles",
        "pool2 in 12 tiles, channels-last",
        "pool2 in 6 tiles",
        "pool3 in 12 tiles",
        "pool2 in one tile",
    ],
)
def test_split_loss_and_gradient_equal_the_whole_pictures(vgg, problem, pool, core, fmt):
    assert_split_is_whole(vgg, problem, pool, core, fmt)


def test_a_split_of_the_mixed_pooling_network_is_exact_too(images_dir):
    """``pooling="mix"`` (part max pooling): a tile's window holds each pooling window
    of its core whole, so the split's maxima, and where their gradients go, are the
    whole picture's."""
    vgg = load_extractor("vgg19", "original", "mix", available_layers("vgg19")["conv5_1"])
    assert_split_is_whole(vgg, make_problem(vgg, images_dir), 2, 64, torch.channels_last)


def assert_split_is_whole(vgg, problem, pool, core, fmt):
    x, c, targets = problem
    cut = tiling.pool_indices(vgg)[pool - 1]
    tiles = tiling.grid(150, 200, core, tiling.halo(vgg, cut), tiling.alignment(vgg))
    weights = dict(zip(STYLE_LAYERS, [1.0, 0.5, 2.0, 1.0, 0.7], strict=True))
    terms = (0.05, 10.0, 2.0)  # content, style and total-variation weights
    with torch.no_grad():
        content_targets = vgg(c, ["conv4_2"])
    whole = Objective(vgg, content_targets, targets, weights, *terms)
    split = SplitObjective(
        vgg, c, ["conv4_2"], targets, weights, *terms, tiles, memory_format=fmt, cut=cut
    )
    g_whole, l_whole = whole.value_and_grad(x)
    g_split, l_split = split.value_and_grad(x)
    assert g_whole is not None and g_split is not None
    for k in ("content", "style", "tv", "total"):
        assert l_split[k] == pytest.approx(l_whole[k], rel=1e-4), k
    assert float((g_split - g_whole).norm() / g_whole.norm()) < 1e-4


def test_the_split_halo_is_the_shallow_blocks_reach(vgg):
    # up to pool2 the receptive field is 16 px: half of it plus a 4 px cell, rounded to
    # the 16 px alignment; up to pool3 52 px: 26 + 8, rounded to 48. conv5_1 needs 96.
    pools = tiling.pool_indices(vgg)
    assert [tiling.halo(vgg, p) for p in pools[1:3]] == [16, 48]


def test_content_layers_before_the_cut_are_refused(vgg, problem):
    _, c, targets = problem
    cut = tiling.pool_indices(vgg)[2]
    tiles = tiling.grid(150, 200, 64, 48, 16)
    with pytest.raises(ValueError, match="content layers"):
        SplitObjective(vgg, c, ["conv3_2"], targets, {}, 1.0, 1.0, 0.0, cut=cut, tiles=tiles)


def test_a_budget_between_whole_and_tiles_splits_the_network_and_costs_less_time():
    # 2048x1536 in bfloat16 under 3 GB: the whole pass does not fit at any history, the
    # network split after pool2 does, and its ETA is well under the whole network in tiles.
    opts = JobOptions(size=2048, precision="bfloat16")
    engine = Engine(memory_budget=3 * 1024 * memory.MB)
    plan = engine.preflight(1536, 2048, opts)
    finest = plan["scales"][-1]
    assert finest["split"] == 2 and finest["tile"] is not None
    assert plan["memory_estimate"] <= plan["memory_budget"]
    limits = memory.Limits("bfloat16", 3 * memory.GB, halo=96, align=16, can_tile=True)
    tiles_only = memory.plan_scale(1536, 2048, limits)
    assert tiles_only is not None and tiles_only.split is None
    costs = dict(
        split=eta.split_cost(1536, 2048, 1, [1536 * 2048], 2, 2),
        tiles=eta.scale_cost(1536, 2048, 1, [1536 * 2048] * 2, 2),
    )
    assert costs["split"].per_iteration < costs["tiles"].per_iteration


def test_content_layers_above_a_cut_rule_that_split_out():
    vgg_taps = available_layers("vgg19")
    engine = Engine(memory_budget=3 * 1024 * memory.MB)
    opts = JobOptions(size=2048, precision="bfloat16", content_layers=["conv2_2"])
    finest = engine.preflight(1536, 2048, opts)["scales"][-1]
    assert finest["split"] is None and finest["tile"] is not None
    assert vgg_taps["conv2_2"] < vgg_taps["pool2"]


def test_a_split_job_matches_the_untiled_job(images_dir):
    content = load(images_dir / "tubingen.jpg", (320, 240))[0].permute(1, 2, 0).numpy()
    style = load(images_dir / "starry_night.jpg", (160, 128))[0].permute(1, 2, 0).numpy()
    opts = JobOptions(size=320, iterations=3, scales=1, frames=0, precision="float32", seed=1)
    # a budget just under the whole pass at its shortest history: only a split fits
    base = memory.BASE_BYTES + 320 * 240 * memory.INPUT_BYTES_PER_PX
    whole_min = memory.estimate(240, 320, "float32", None, 96, memory.HISTORIES[-1], base)
    whole = Engine().run(content, [style], opts)
    split = Engine(memory_budget=whole_min - memory.MB).run(content, [style], opts)
    assert whole.memory["split"] == 0 and split.memory["split"] == 2
    assert split.memory["tiles"] == 2 and split.memory["estimate"] < whole_min
    assert split.losses["total"] == pytest.approx(whole.losses["total"], rel=1e-4)
    assert np.abs(split.image - whole.image).max() < 1e-3
