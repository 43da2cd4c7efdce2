"""The loss terms against direct NumPy computations, and their gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impasto.daemon.engine import colors, losses


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def np_gram(f: np.ndarray) -> np.ndarray:
    _, c, h, w = f.shape
    m = f.reshape(c, h * w)
    return m @ m.T / (h * w)


def test_gram_matches_numpy(rng):
    f = rng.standard_normal((1, 5, 4, 3))
    g = losses.gram(torch.from_numpy(f)).numpy()
    np.testing.assert_allclose(g, np_gram(f), rtol=1e-12)
    # by hand for one entry: mean over positions of channel products
    assert g[1, 3] == pytest.approx(np.mean(f[0, 1] * f[0, 3]))
    np.testing.assert_allclose(g, g.T)


def test_content_and_style_losses_match_numpy(rng):
    f, p = rng.standard_normal((2, 1, 6, 5, 4))
    assert losses.content_loss(torch.from_numpy(f), torch.from_numpy(p)).item() == pytest.approx(
        np.sum((f - p) ** 2) / f.size
    )
    a = np_gram(p)
    got = losses.style_layer_loss(losses.gram(torch.from_numpy(f)), torch.from_numpy(a)).item()
    c = f.shape[1]
    assert got == pytest.approx(np.sum((np_gram(f) - a) ** 2) / c**2 / c**2)


def test_tv_loss_is_half_mean_absolute_neighbour_difference(rng):
    img = rng.uniform(0, 255, (1, 3, 5, 7))
    dx = np.abs(np.diff(img, axis=3)).mean()
    dy = np.abs(np.diff(img, axis=2)).mean()
    assert losses.tv_loss(torch.from_numpy(img), eps=1e-6).item() == pytest.approx(
        0.5 * (dx + dy), rel=1e-6
    )
    assert losses.tv_loss(torch.full((1, 3, 4, 4), 9.0)).item() == 0.0


def test_style_gradient_matches_the_papers_formula(rng):
    """Gatys eq. 6: ∂E/∂F = (4/(N²M²))·((G−A)F) in unnormalised form; here with our scaling."""
    f = rng.standard_normal((1, 4, 3, 3))
    a = np_gram(rng.standard_normal((1, 4, 3, 3)))
    c, m = 4, 9
    ft = torch.from_numpy(f).requires_grad_()
    losses.style_layer_loss(losses.gram(ft), torch.from_numpy(a)).backward()
    fm = f.reshape(c, m)
    # L = Σ(G−A)²/c⁴ with G = F Fᵀ/m  =>  dL/dF = 4 (G−A) F / (m c⁴)
    expected = 4.0 * (np_gram(f) - a) @ fm / (m * c**4)
    assert ft.grad is not None
    np.testing.assert_allclose(ft.grad.numpy().reshape(c, m), expected, rtol=1e-10)


def test_content_gradient_matches_numpy(rng):
    f, p = rng.standard_normal((2, 1, 3, 2, 2))
    ft = torch.from_numpy(f).requires_grad_()
    losses.content_loss(ft, torch.from_numpy(p)).backward()
    assert ft.grad is not None
    np.testing.assert_allclose(ft.grad.numpy(), 2 * (f - p) / f.size, rtol=1e-12)


def test_gradcheck_all_terms():
    torch.manual_seed(0)
    f = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: losses.style_layer_loss(losses.gram(x), target), (f,))
    assert torch.autograd.gradcheck(lambda x: losses.tv_loss(x * 50, eps=1.0), (f,))


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_style_term_equals_the_autograd_style_loss(rng, fmt):
    """The hand-written style term (value and gradient) is the reference one in float64."""
    f = torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu()
    a = losses.gram(torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu())
    ref_f = f.clone().requires_grad_()
    ref = losses.style_layer_loss(losses.gram(ref_f), a)
    ref.backward()
    ft = f.contiguous(memory_format=fmt).requires_grad_()
    got = losses.style_term(ft, losses.GramTarget(a, torch.float64))
    got.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)
    assert ft.grad is not None and ref_f.grad is not None
    np.testing.assert_allclose(ft.grad.numpy(), ref_f.grad.numpy(), rtol=1e-10, atol=1e-18)
    assert ft.grad.is_contiguous(memory_format=fmt)  # no layout conversion in the backward


REGIONS = {
    "inside": (2, 6, 1, 4),
    "at the left edge": (0, 7, 0, 3),
    "at the right edge": (1, 5, 2, 6),
    "full width": (3, 8, 0, 6),
}


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("region", list(REGIONS.values()), ids=list(REGIONS))
@pytest.mark.parametrize("downstream", [True, False], ids=["network goes on", "last layer"])
def test_a_regions_gram_and_gradient_equal_those_of_the_region_cut_out(
    rng, fmt, region, downstream
):
    """A tile's core, not cut out of its window's features: the Gram sum over its
    positions and the gradient of ⟨S, F Fᵀ⟩ over them (added to the network's) equal
    those of the features sliced to the core, as autograd gives them."""
    top, bottom, left, right = region
    f = torch.from_numpy(rng.standard_normal((1, 5, 8, 6))).relu()
    s = torch.from_numpy(rng.standard_normal((5, 5)))
    s = s + s.t()
    conv = torch.nn.Conv2d(5, 3, 3, padding=1).double()
    core = f[..., top:bottom, left:right].reshape(5, -1)
    np.testing.assert_allclose(
        losses.region_gram_sum(f.contiguous(memory_format=fmt), region).numpy(),
        (core @ core.t()).numpy(),
        rtol=1e-12,
        atol=1e-12,  # the strips are subtracted: a zero comes back as a rounding error
    )
    grads = []
    for tapped in (False, True):
        ft = f.contiguous(memory_format=fmt).requires_grad_()
        if tapped:
            x, zero = losses.region_tap(ft, s, region)
            value = 2.0 * zero
        else:
            x, c = ft, ft[..., top:bottom, left:right].reshape(5, -1)
            value = 2.0 * (s * (c @ c.t())).sum()
        if downstream:
            value = value + conv(x).square().sum()
        (g,) = torch.autograd.grad(value, ft)
        grads.append(g)
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-10, atol=1e-12)
    assert grads[1].is_contiguous(memory_format=fmt)


def test_bfloat16_style_term_is_as_close_as_its_features_allow(rng):
    """bfloat16 features, float32 target: G − A is rounded once, relative to itself."""
    f = torch.from_numpy(rng.standard_normal((1, 16, 24, 20))).relu().bfloat16()
    exact = losses.gram(f.double())
    a = exact * (1 + 0.02 * torch.from_numpy(rng.standard_normal((16, 16))))
    a = ((a + a.t()) / 2).float()
    ref = losses.style_layer_loss(exact, a.double()).item()
    ft = f.contiguous(memory_format=torch.channels_last).requires_grad_()
    got = losses.style_term(ft, losses.GramTarget(a, torch.bfloat16))
    got.backward()
    assert got.item() == pytest.approx(ref, rel=2e-3)
    assert ft.grad is not None and ft.grad.dtype == torch.bfloat16
    # a plain bfloat16 Gram is off by its own rounding (2⁻⁹ of G, here ~50x G − A)
    plain = losses.style_layer_loss(losses.gram(f).double(), a.double())
    assert abs(plain.item() / ref - 1) > 10 * abs(got.item() / ref - 1)


@pytest.mark.parametrize(
    "dtype, exact",
    [(torch.float64, True), (torch.bfloat16, True), (torch.bfloat16, False)],
    ids=["float64", "bfloat16, a bfloat16 target", "bfloat16, a float64 target"],
)
def test_content_term_equals_the_autograd_content_loss(rng, dtype, exact):
    """A target the features' dtype holds exactly is subtracted in that dtype (one
    rounding of the difference); any other in the target's own."""
    f = torch.from_numpy(rng.standard_normal((1, 5, 4, 3))).to(dtype)
    p = torch.from_numpy(rng.standard_normal((1, 5, 4, 3)))
    if exact:
        p = p.to(dtype).double()
    target = losses.ContentTarget(p, dtype)
    assert target.target.dtype == (dtype if exact else torch.float64)
    ref_f = f.clone().double().requires_grad_()
    ref = losses.content_loss(ref_f, p)
    ref.backward()
    ft = f.contiguous(memory_format=torch.channels_last).requires_grad_()
    got = losses.content_term(ft, target)
    got.backward()
    rounded = dtype == torch.bfloat16 and exact
    assert got.item() == pytest.approx(ref.item(), rel=4e-3 if rounded else 1e-7)
    assert ft.grad is not None and ft.grad.dtype == dtype and ref_f.grad is not None
    tol = 1e-12 if dtype == torch.float64 else 8e-3  # bfloat16: a rounding or two
    np.testing.assert_allclose(ft.grad.double().numpy(), ref_f.grad.numpy(), rtol=tol)


def _tap(kind: str, x: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "style":
        return losses.style_tap(x, losses.GramTarget(losses.gram(p), x.dtype))
    if kind == "region":  # a tile's core inside the feature map
        return losses.region_tap(x, losses.gram(p), (1, 4, 1, 3))
    return losses.content_tap(x, losses.ContentTarget(p, x.dtype))


def _term(kind: str, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """What ``_tap``'s value stands for (for a region: the gradient's, its value is 0)."""
    if kind == "style":
        return losses.style_layer_loss(losses.gram(x), losses.gram(p))
    if kind == "region":
        core = x[..., 1:4, 1:3].reshape(x.shape[1], -1)
        return (losses.gram(p) * (core @ core.t())).sum()
    return losses.content_loss(x, p)


@pytest.mark.parametrize("kind", ["style", "content"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("downstream", ["conv", "conv and a content term", "none"])
def test_a_tap_adds_its_gradient_to_the_networks(rng, kind, fmt, downstream):
    """A tap's alias carries the network on; the features' gradient is the term's plus
    the network's, as autograd's sum of two branches gives it (where the network's
    gradient is the tap's own, the tap adds to it in place)."""
    f = torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu()
    p = torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu()
    conv = torch.nn.Conv2d(6, 3, 3, padding=1).double()
    grads = []
    for tapped in (False, True):
        x = ft = f.clone(memory_format=fmt).requires_grad_()  # a leaf of its own each time
        if tapped:
            x, value = _tap(kind, ft, p)
        else:
            value = _term(kind, ft, p)
        value = 3.0 * value
        if downstream != "none":
            value = value + conv(x).square().sum()
        if downstream == "conv and a content term":  # a second branch from the same alias
            value = value + 0.5 * losses.content_loss(x, p)
        value.backward()
        assert ft.grad is not None
        grads.append((value.item(), ft.grad))
    (ref, ref_grad), (got, got_grad) = grads
    assert got == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(got_grad.numpy(), ref_grad.numpy(), rtol=1e-10, atol=1e-15)
    assert got_grad.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("kind", ["style", "content", "region"])
@pytest.mark.parametrize("view", [False, True], ids=["directly", "through a view"])
def test_a_tap_leaves_a_gradient_it_shares_alone(rng, kind, view):
    """An addition hands the same gradient tensor to both its operands: a tap behind one
    of them must not add its term into it, or the other operand's gradient changes.
    (autograd runs the later-made node first: the other operand is made before the tap.)"""
    f = torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu().requires_grad_()
    p = torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu()
    u = torch.zeros_like(f, requires_grad=True)
    w = torch.from_numpy(rng.standard_normal((1, 6, 5, 4)))
    other = u * 2.0
    x, value = _tap(kind, f, p)
    if view:  # the tap's gradient: a tensor of its own on the shared one's memory
        x, other, w = x.reshape(-1), other.reshape(-1), w.reshape(-1)
    ((x + other) * w).sum().add(3.0 * value).backward()
    assert u.grad is not None and f.grad is not None
    np.testing.assert_allclose(u.grad.numpy().ravel(), 2.0 * w.numpy().ravel(), rtol=1e-15)
    ref_f = f.detach().clone().requires_grad_()
    (3.0 * _term(kind, ref_f, p) + (ref_f.reshape(w.shape) * w).sum()).backward()
    assert ref_f.grad is not None
    np.testing.assert_allclose(f.grad.numpy(), ref_f.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_gram_sum_of_bfloat16_features_is_float32_accurate(rng):
    f = torch.from_numpy(rng.standard_normal((1, 32, 40, 30))).relu().bfloat16()
    flat = losses.flat_features(f.contiguous(memory_format=torch.channels_last))
    exact = flat.double() @ flat.double().t()
    got = losses.gram_sum(flat)
    assert got.dtype == torch.float32
    assert float((got.double() - exact).abs().max() / exact.abs().max()) < 2e-5


def test_blended_targets_give_the_same_loss_as_separate_styles(rng):
    f = torch.from_numpy(rng.standard_normal((1, 4, 5, 5)))
    per_style = [
        {"l": losses.gram(torch.from_numpy(rng.standard_normal((1, 4, 6, 6))))} for _ in range(3)
    ]
    blend = [0.5, 0.3, 0.2]
    g = losses.gram(f)
    separate = float(
        sum(w * losses.style_layer_loss(g, t["l"]) for w, t in zip(blend, per_style, strict=True))
    )
    mean = losses.blended_style_targets(per_style, blend)
    offset = losses.style_constant(per_style, blend, mean, {"l": 1.0})
    combined = losses.style_layer_loss(g, mean["l"]).item() + offset
    assert combined == pytest.approx(separate, rel=1e-9)


def test_match_colors_gives_the_contents_mean_and_covariance(rng):
    style = torch.from_numpy(rng.uniform(0.2, 0.5, (1, 3, 20, 20)))
    style[:, 0] *= 1.5
    content = torch.from_numpy(rng.uniform(0.3, 0.7, (1, 3, 16, 16)))
    content[:, 2] = 0.5 * content[:, 1] + 0.2
    out = colors.match_colors(style.float(), content.float()).double()
    o, c = out[0].reshape(3, -1), content[0].reshape(3, -1)
    np.testing.assert_allclose(o.mean(1), c.mean(1), atol=2e-3)
    np.testing.assert_allclose(torch.cov(o), torch.cov(c), atol=2e-3)


def test_keep_luminance_takes_brightness_from_result_and_colour_from_content():
    result = torch.rand(1, 3, 8, 8)
    content = torch.rand(1, 3, 8, 8)
    out = colors.keep_luminance(result, content)
    y_out = colors.rgb_to_yiq(out)
    inside = (out > 0.001) & (out < 0.999)  # clamping aside
    mask = inside.all(1, keepdim=True)
    assert torch.allclose(y_out[:, :1][mask], colors.rgb_to_yiq(result)[:, :1][mask], atol=1e-5)
    assert torch.allclose(
        y_out[:, 1:][mask.expand(1, 2, 8, 8)],
        colors.rgb_to_yiq(content)[:, 1:][mask.expand(1, 2, 8, 8)],
        atol=1e-5,
    )


# Where each _Fresh backward's gradient lives.
_FRESH_POINTERS: list[int] = []


class _Fresh(torch.autograd.Function):
    """Identity whose backward hands on a fresh copy of its gradient and notes where it
    lives: a network layer's backward, as a tap behind it receives one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        fresh = grads[0].clone(memory_format=torch.preserve_format)
        _FRESH_POINTERS.append(fresh.data_ptr())
        return fresh


@pytest.mark.parametrize("kind", ["style", "content", "region"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_a_tap_adds_into_a_network_gradient_of_its_own(rng, kind, fmt):
    """The network's gradient, the layer's own, comes back from the tap as the same
    memory with the term added (no copy of it, no sum of two branches)."""
    f = torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu()
    p = torch.from_numpy(rng.standard_normal((1, 6, 5, 4))).relu()
    ft = f.contiguous(memory_format=fmt).requires_grad_()
    x, value = _tap(kind, ft, p)
    _FRESH_POINTERS.clear()
    (torch.tanh(_Fresh.apply(x)).sum() + value).backward()
    assert ft.grad is not None and [ft.grad.data_ptr()] == _FRESH_POINTERS
