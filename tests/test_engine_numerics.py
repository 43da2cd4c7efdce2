"""Arithmetic and step control: bfloat16 networks, the colour box, the L-BFGS step cap."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from impasto.daemon.engine import Engine, devices, imageops, losses
from impasto.daemon.engine.lbfgs import LBFGS
from impasto.daemon.engine.models import CAFFE, available_layers
from impasto.daemon.engine.objective import Objective
from impasto.daemon.engine.optimize import optimise_scale
from impasto.daemon.engine.weights import load_extractor
from impasto.shared.options import JobOptions

SHALLOW: dict[str, Any] = {
    "style_layers": ["conv1_1", "conv2_1", "conv3_1"],
    "content_layers": ["conv2_2"],
}


def load(path, size) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize(size), dtype=np.float32) / 255


@pytest.fixture(scope="module")
def pictures(images_dir):
    return load(images_dir / "tubingen.jpg", (96, 72)), load(
        images_dir / "starry_night.jpg", (96, 60)
    )


@pytest.fixture(scope="module")
def vgg():
    return load_extractor("vgg19", "original", "avg", available_layers("vgg19")["conv3_1"])


def as_input(path, size) -> torch.Tensor:
    return CAFFE.to_input(torch.from_numpy(load(path, size)).permute(2, 0, 1)[None])


def test_bfloat16_network_gives_float32_features_close_to_float32(vgg, tubingen):
    x = as_input(tubingen, (80, 64))
    ref = vgg(x, ["conv1_1", "conv3_1"])
    half = load_extractor("vgg19", "original", "avg", vgg.taps["conv3_1"]).to(torch.bfloat16)
    got = half(x, ["conv1_1", "conv3_1"])
    for layer in ref:
        assert got[layer].dtype == torch.float32
        err = (got[layer] - ref[layer]).norm() / ref[layer].norm()
        assert err < 0.02, (layer, float(err))


def test_gradient_reaches_a_float32_image_through_a_bfloat16_network(vgg):
    half = load_extractor("vgg19", "original", "avg", vgg.taps["conv2_1"]).to(torch.bfloat16)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(half(x, ["conv2_1"])["conv2_1"].square().mean(), x)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_precision_option_reaches_the_network_and_the_result(pictures):
    content, style = pictures
    engine = Engine()
    results = {
        p: engine.run(
            content,
            [style],
            JobOptions(size=64, iterations=8, frames=0, scales=1, seed=1, precision=p, **SHALLOW),
        )
        for p in ("float32", "bfloat16")
    }
    assert results["float32"].precision == "float32"
    assert results["bfloat16"].precision == "bfloat16"
    dtypes = sorted(str(m.dtype) for m in engine._models.values())
    assert dtypes == ["torch.bfloat16", "torch.float32"]  # one cached network each
    a, b = (results[p].losses["total"] for p in ("float32", "bfloat16"))
    assert abs(a - b) < 0.25 * a  # the same optimisation, within bfloat16's rounding
    diff = np.abs(results["float32"].image - results["bfloat16"].image).mean()
    assert diff < 8 / 255  # same picture, up to small rounding differences


def test_auto_precision_follows_the_cpu():
    cpu = torch.device("cpu")
    want = torch.bfloat16 if devices.native_bf16_cpu() else torch.float32
    assert devices.compute_dtype(cpu, "auto") is want
    assert devices.compute_dtype(cpu, "float32") is torch.float32
    assert devices.compute_dtype(cpu, "bfloat16") is torch.bfloat16
    assert devices.compute_dtype(torch.device("meta"), "auto") is torch.float32


def test_bad_precision_is_named():
    with pytest.raises(ValueError, match="precision"):
        JobOptions(precision="float8").validate()


def test_pictures_stay_inside_the_colour_box(vgg, tubingen):
    x0 = as_input(tubingen, (64, 48))
    f = vgg(x0, ["conv2_1"])["conv2_1"][0].flatten(1)
    objective = Objective(
        model=vgg,
        content_targets={},
        # A Gram target 50x the picture's own asks for more energy than colours can hold.
        style_targets={"conv2_1": 50 * (f @ f.t()) / f.shape[1]},
        style_layer_weights={"conv2_1": 1.0},
        content_weight=0.0,
        style_weight=1.0,
        tv_weight=0.0,
    )
    lo, hi = CAFFE.bounds(x0)
    for optimizer in ("lbfgs", "adam"):
        seen: list[torch.Tensor] = []
        out = optimise_scale(
            x0,
            objective,
            8,
            optimizer,
            None,
            1.0,
            lambda: None,
            lambda i, x, *_, s=seen: s.append(x),
        )
        assert out.iterations == 8
        for x in [*seen, out.image]:
            assert (x >= lo - 1e-4).all() and (x <= hi + 1e-4).all()
        assert any(bool((x >= hi - 1e-3).any()) for x in seen)  # it did press against the box


def test_lbfgs_steps_are_capped():
    # Σ sqrt(1 + x²) far from its minimum: the gradient hardly changes over the small
    # first step, so the curvature estimate sᵀy/yᵀy is huge and an uncapped second step
    # would throw x hundreds of thousands of units away.
    def run(max_step):
        x, moves = torch.linspace(50, 100, 50), []
        opt = LBFGS(history=5, lr=1.0, first_step=0.5, max_step=max_step)
        for _ in range(4):
            nxt = opt.step(x, x / torch.sqrt(1 + x * x))
            moves.append(float((nxt - x).abs().max()))
            x = nxt
        return moves

    assert max(run(float("inf"))) > 1000
    assert max(run(2.0)) <= 2.0 + 1e-4


def _textbook_direction(pairs, g):
    """−H·g by the two-loop recursion over (s, y) pairs, oldest first, from scratch."""
    q, alphas = g.clone(), []
    for s, y in reversed(pairs):
        a = torch.dot(s, q) / torch.dot(s, y)
        q -= a * y
        alphas.append(a)
    s, y = pairs[-1]
    q *= torch.dot(s, y) / torch.dot(y, y)
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        q += (a - torch.dot(y, q) / torch.dot(s, y)) * s
    return -q


def test_lbfgs_with_a_full_history_steps_like_the_textbook():
    # The oldest pair's buffers are reused for the newest, and points and gradients
    # are kept by reference: after many steps on a quadratic, each step must still be
    # the two-loop recursion over the last ``history`` pairs, and the caller's tensors
    # untouched.
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    a = m @ m.t() / 40 + torch.eye(40, dtype=torch.float64)
    opt = LBFGS(history=3, lr=1.0, first_step=0.1)
    x = torch.randn(40, generator=gen, dtype=torch.float64)
    points, grads = [], []
    for _ in range(10):
        g = a @ x
        before = x.clone(), g.clone()
        nxt = opt.step(x, g)
        assert torch.equal(x, before[0]) and torch.equal(g, before[1])
        points.append(x)
        grads.append(g)
        if len(points) >= 2:
            pairs = [
                (points[i + 1] - points[i], grads[i + 1] - grads[i])
                for i in range(max(0, len(points) - 4), len(points) - 1)
            ]
            torch.testing.assert_close(nxt - x, _textbook_direction(pairs, g))
        x = nxt
    assert float(x @ a @ x) < 1e-3 * float(points[0] @ a @ points[0])


def test_lbfgs_drops_a_pair_without_curvature_and_reuses_its_buffers():
    # A pair with sᵀy <= 0 would make H indefinite: it is refused, the step falls back to
    # the first step's rule, and the next good pair is stored in the refused one's place.
    opt = LBFGS(history=2, lr=1.0, first_step=0.1)
    x0, g0 = torch.zeros(4, dtype=torch.float64), torch.tensor([1.0, 2.0, 3.0, 4.0]).double()
    x1 = opt.step(x0, g0)
    g1 = g0 - (x1 - x0)  # y = -s: negative curvature
    x2 = opt.step(x1, g1)
    torch.testing.assert_close(x2 - x1, -0.1 * g1 / g1.abs().max())
    g2 = g1 + 2.0 * (x2 - x1)
    x3 = opt.step(x2, g2)
    torch.testing.assert_close(x3 - x2, _textbook_direction([(x2 - x1, g2 - g1)], g2))
    block = opt._s[0].untyped_storage().data_ptr()
    assert all(t.untyped_storage().data_ptr() == block for t in (*opt._s, *opt._y))


def test_upscale_is_sharper_than_bilinear():
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    cubic = imageops.upscale(edge, 16, 16)
    linear = torch.nn.functional.interpolate(edge, size=(16, 16), mode="bilinear")
    assert cubic.shape == (1, 1, 16, 16)
    # Steeper transition: the pixels beside the edge sit further from the middle grey.
    assert (cubic[..., 7] - 0.5).abs().mean() > (linear[..., 7] - 0.5).abs().mean()


def test_inputs_are_read_without_copying_what_is_already_float_in_range():
    # A layer-sized content is held all job: a float32 array in 0..1 is used as given,
    # and the engine's colour tensor is a view of it, not a third copy.
    layer = np.random.default_rng(0).random((48, 64, 4), dtype=np.float32)
    arr = imageops.as_rgba_array(layer, "content")
    assert arr is layer
    assert np.shares_memory(imageops.to_tensor(arr).numpy(), layer)
    # out of range: clipped into a new array, the caller's left as it was
    loud = layer * 2
    clipped = imageops.as_rgba_array(loud, "content")
    assert clipped.max() == 1.0 and loud.max() > 1.5
    # integers are scaled by their depth and clipped
    as_u8 = imageops.as_rgba_array(np.full((2, 2, 3), 255, np.uint8), "content")
    as_u16 = imageops.as_rgba_array(np.full((2, 2, 3), 32768, np.uint16), "content")
    as_int = imageops.as_rgba_array(np.array([[[-5, 128, 300]]], np.int32), "content")
    assert as_u8.dtype == np.float32 and np.all(as_u8 == 1.0)
    assert np.allclose(as_u16, 32768 / 65535)
    assert np.allclose(as_int, [[[0.0, 128 / 255, 1.0]]])


@pytest.mark.parametrize(
    "dtype, layout",
    [(torch.float64, torch.contiguous_format), (torch.float32, torch.channels_last)],
    ids=["float64", "float32 channels-last"],
)
def test_objective_equals_the_papers_loss_by_plain_autograd(tubingen, starry_night, dtype, layout):
    """The objective's taps (a content and a style term on one layer among them) give
    the loss and gradient autograd gives for the paper's formulas written out."""
    vgg = load_extractor("vgg19", "original", "avg", available_layers("vgg19")["conv3_1"])
    vgg = vgg.to(memory_format=layout).to(dtype=dtype)
    x0 = as_input(tubingen, (48, 40)).to(dtype)
    style = as_input(starry_night, (48, 36)).to(dtype)
    style_layers, content_layers = ["conv1_1", "conv2_1", "conv3_1"], ["conv2_1"]
    with torch.no_grad():
        sf = vgg(style.contiguous(memory_format=layout), style_layers)
        targets = {k: losses.gram(f) for k, f in sf.items()}
        ctargets = vgg(x0.contiguous(memory_format=layout), content_layers)
    weights = {"conv1_1": 0.5, "conv2_1": 1.0, "conv3_1": 2.0}
    objective = Objective(vgg, ctargets, targets, weights, 0.05, 10.0, 2.0, memory_format=layout)
    x = (x0 + 20.0 * torch.randn_like(x0)).requires_grad_()
    feats = vgg(x, style_layers + content_layers, True)  # in the network's dtype
    # Caffe's VGG: TV's differences are the input's own, in 0..255 units
    dx, dy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    tv = 0.5 * ((torch.sqrt(dx**2 + 1e-4) - 1e-2).mean() + (torch.sqrt(dy**2 + 1e-4) - 1e-2).mean())
    ref = (
        0.05 * losses.content_loss(feats["conv2_1"], ctargets["conv2_1"])
        + 10.0
        * sum(
            w * losses.style_layer_loss(losses.gram(feats[k]), targets[k])
            for k, w in weights.items()
        )
        + 2.0 * tv
    )
    (ref_grad,) = torch.autograd.grad(ref, x)
    grad, values = objective.value_and_grad(x)
    assert grad is not None
    rtol = 1e-9 if dtype == torch.float64 else 2e-4
    assert values["total"] == pytest.approx(ref.item(), rel=rtol)
    scale = float(ref_grad.abs().max())
    np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), rtol=0, atol=rtol * scale * 10)
