"""The whole picture's objective, evaluated tile by tile: memory bounded, gradient exact.

A job over a 4096² picture in one pass needs ~30 GB (memory.py); over one
tile it needs what the tile's pixels need. Tiling usually changes the objective (each
tile its own style statistics, seams at the borders). Here it does not:

* Tiles are cores that partition the picture plus a *halo* of overlap at least as wide
  as the network's reach (half the receptive field of the deepest layer, 78 px at
  conv5_1), with every window starting on a multiple of the network's total stride. A
  feature at a core position then sees exactly the pixels it sees in the whole picture,
  so it has the same value, and every feature position belongs to exactly one core.
* Pass 1 (no gradient) runs every tile and sums each style layer's ``F Fᵀ`` over the
  cores: the whole picture's Gram matrix ``G``. Any partition into cores gives the same
  sum, so pass 1 may use larger tiles than pass 2 (``gram_tiles``): holding no graph,
  it needs less than half the memory per pixel (memory.py). The content and
  total-variation terms are sums over positions, so they add up over cores too.
* With ``G`` known, ``∂L/∂G = 2 w (G − A) / C⁴`` is a constant matrix ``Ĝ``. Pass 2 runs
  every tile again with gradients and back-propagates the surrogate
  ``Σ_l ⟨Ĝ_l, F_c F_cᵀ⟩ / N_l + content + TV`` restricted to the core; its gradient
  with respect to the core's features equals the full objective's, and the tile
  gradients (halo included) add up to the whole picture's gradient.

So the tiled loss and gradient equal the untiled ones up to floating-point order
(tests/test_engine_tiling.py checks this), there are no seams to blend, and the price
is the halo's recomputation plus pass 1 (a forward without gradient, about a third of a
forward and backward).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field

import torch

from .losses import Region, region_gram_sum, region_tap, style_layer_loss
from .models import VGG_CONFIGS, FeatureExtractor


@dataclass(frozen=True)
class Tile:
    """A core (the positions it owns) and the window the network sees, in pixels."""

    y0: int
    y1: int
    x0: int
    x1: int
    wy0: int
    wy1: int
    wx0: int
    wx1: int

    def window(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.wy0 : self.wy1, self.wx0 : self.wx1]

    def region(self, stride: int) -> Region:
        """(top, bottom, left, right) of the core in a feature map of this tile's window
        at ``stride``."""
        top, left = (self.y0 - self.wy0) // stride, (self.x0 - self.wx0) // stride
        bottom = self.y1 // stride - self.wy0 // stride
        right = self.x1 // stride - self.wx0 // stride
        return top, bottom, left, right

    def core(self, f: torch.Tensor, stride: int) -> torch.Tensor:
        """The core's positions of a feature map of this tile's window at ``stride``."""
        top, bottom, left, right = self.region(stride)
        return f[..., top:bottom, left:right]

    def in_picture(self, f: torch.Tensor, stride: int) -> torch.Tensor:
        """The core's positions of a feature map of the whole picture at ``stride``."""
        return f[..., self.y0 // stride : self.y1 // stride, self.x0 // stride : self.x1 // stride]


def can_tile(model: FeatureExtractor) -> bool:
    """Only the VGG bodies (stride-2 pooling, 3x3 convolutions) have the alignment used here."""
    return model.name in VGG_CONFIGS


def stride_at(model: FeatureExtractor, index: int) -> int:
    """The stride in pixels of body index ``index``'s output: 2 per pooling up to it."""
    return 2 ** sum(p <= index for p in pool_indices(model))


def layer_strides(model: FeatureExtractor, layers: list[str]) -> dict[str, int]:
    """Each layer's stride in pixels: 2 per pooling before (or at) it."""
    return {layer: stride_at(model, model.taps[layer]) for layer in layers}


def alignment(model: FeatureExtractor) -> int:
    """Windows start on multiples of the body's total stride so every pooling grid lines up."""
    return 2 ** len(pool_indices(model))


def halo(model: FeatureExtractor, upto: int) -> int:
    """Overlap in pixels that makes core features exact up to body index ``upto``.

    Half the receptive field plus one cell of the deepest stride, rounded up to the
    alignment: 96 px for VGG19 up to conv5_1.
    """
    field, step = 1, 1
    for m in model.body[: upto + 1]:
        if isinstance(m, torch.nn.Conv2d):
            field += (m.kernel_size[0] - 1) * step
        elif isinstance(m, torch.nn.AvgPool2d | torch.nn.MaxPool2d):
            field += step
            step *= 2
    align = alignment(model)
    need = field // 2 + step
    return -(-need // align) * align


def _bounds(length: int, core: int, align: int) -> list[int]:
    n = max(1, -(-length // core))
    inner = [round(i * length / n / align) * align for i in range(1, n)]
    return sorted({0, *[b for b in inner if 0 < b < length], length})


def grid(height: int, width: int, core: int, halo_px: int, align: int) -> list[Tile]:
    """Tiles of about ``core`` px whose cores partition the picture (row-major)."""
    ys, xs = _bounds(height, core, align), _bounds(width, core, align)
    tiles = []
    for y0, y1 in itertools.pairwise(ys):
        for x0, x1 in itertools.pairwise(xs):
            tiles.append(
                Tile(
                    y0,
                    y1,
                    x0,
                    x1,
                    max(0, y0 - halo_px),
                    min(height, y1 + halo_px),
                    max(0, x0 - halo_px),
                    min(width, x1 + halo_px),
                )
            )
    return tiles


def window_areas(tiles: list[Tile]) -> list[int]:
    """The pixels the network sees in each tile's window."""
    return [(t.wy1 - t.wy0) * (t.wx1 - t.wx0) for t in tiles]


def tiled_grams(
    model: FeatureExtractor,
    x: torch.Tensor,
    layers: list[str],
    tiles: list[Tile],
    memory_format: torch.memory_format,
) -> dict[str, torch.Tensor]:
    """The whole picture's Gram matrices (as losses.gram), one tile at a time, no gradient;
    products in the network's dtype (losses.gram_sum)."""
    strides = layer_strides(model, layers)
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for t in tiles:
            feats = model(t.window(x).contiguous(memory_format=memory_format), layers, True)
            for layer in layers:
                g = region_gram_sum(feats[layer], t.region(strides[layer]))
                sums[layer] = sums[layer] + g if layer in sums else g
    return {layer: sums[layer] / core_positions(tiles, strides[layer]) for layer in layers}


def tiled_features(
    model: FeatureExtractor,
    x: torch.Tensor,
    layers: list[str],
    tiles: list[Tile],
    memory_format: torch.memory_format,
) -> list[dict[str, torch.Tensor]]:
    """Per tile, the core features of ``layers`` (content targets), kept in the network's
    dtype where they left it in that dtype: nothing is lost and bfloat16 halves them."""
    strides = layer_strides(model, layers)
    keep = model.dtype if model.feature_scale == 1.0 else torch.float32
    out = []
    with torch.no_grad():
        for t in tiles:
            feats = model(t.window(x).contiguous(memory_format=memory_format), layers)
            out.append({k: t.core(feats[k], strides[k]).to(keep).clone() for k in layers})
    return out


def pool_indices(model: FeatureExtractor) -> list[int]:
    """Body indices of the pooling layers, shallowest first."""
    return [
        i
        for i, m in enumerate(model.body)
        if isinstance(m, torch.nn.AvgPool2d | torch.nn.MaxPool2d)
    ]


def core_positions(tiles: list[Tile], stride: int) -> int:
    """Feature positions the cores own at ``stride``: the whole picture's (a Gram's N)."""
    return sum((t.y1 // stride - t.y0 // stride) * (t.x1 // stride - t.x0 // stride) for t in tiles)


def style_slopes(
    grams: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    layer_weights: dict[str, float],
    style_weight: float,
) -> tuple[float, dict[str, torch.Tensor]]:
    """From whole-picture Gram matrices: the style loss Σ w_l mean((G−A)²)/C² (before
    ``style_weight``) and each layer's ``Ĝ = ∂(style_weight · that)/∂G``."""
    value = sum(layer_weights[k] * float(style_layer_loss(grams[k], t)) for k, t in targets.items())
    slopes = {
        k: style_weight * layer_weights[k] * 2.0 * (grams[k] - t) / t.shape[0] ** 4
        for k, t in targets.items()
    }
    return value, slopes


def unfinished() -> tuple[None, dict[str, float]]:
    """What value_and_grad returns when a cancel stopped it between tiles."""
    return None, dict.fromkeys(("content", "style", "tv", "total"), math.nan)


def tv_part(rgb255: torch.Tensor, t: Tile, height: int, width: int, eps: float = 1e-2):
    """Sums of losses.tv_loss's smooth-L1 differences whose left/top pixel is in the core."""
    oy, ox = t.y0 - t.wy0, t.x0 - t.wx0
    h, w = t.y1 - t.y0, t.x1 - t.x0
    core_dx = rgb255[..., oy : oy + h, ox : ox + min(w, width - 1 - t.x0)]
    right = rgb255[..., oy : oy + h, ox + 1 : ox + 1 + core_dx.shape[-1]]
    core_dy = rgb255[..., oy : oy + min(h, height - 1 - t.y0), ox : ox + w]
    below = rgb255[..., oy + 1 : oy + 1 + core_dy.shape[-2], ox : ox + w]
    e2 = eps * eps
    dx, dy = right - core_dx, below - core_dy
    return (torch.sqrt(dx * dx + e2) - eps).sum(), (torch.sqrt(dy * dy + e2) - eps).sum()


class TileTV:
    """``losses.tv_loss`` of the whole picture, summed tile by tile over the cores."""

    def __init__(self, model: FeatureExtractor, height: int, width: int, weight: float):
        self.prep, self.height, self.width, self.weight = model.preprocessing, height, width, weight
        self.n_dx = max(3 * height * (width - 1), 1)
        self.n_dy = max(3 * (height - 1) * width, 1)
        self.sum_x = self.sum_y = 0.0

    def term(self, xw: torch.Tensor, t: Tile) -> torch.Tensor:
        """The weighted, differentiable part of the term whose pixels the core of ``t``
        owns; ``xw`` is that tile's window of the picture."""
        px, py = tv_part(self.prep.to_rgb(xw) * 255.0, t, self.height, self.width)
        self.sum_x += float(px.detach())
        self.sum_y += float(py.detach())
        return self.weight * 0.5 * (px / self.n_dx + py / self.n_dy)

    @property
    def value(self) -> float:
        """The weighted term, once every tile has added its part."""
        return self.weight * 0.5 * (self.sum_x / self.n_dx + self.sum_y / self.n_dy)


def weighted_losses(content: float, style: float, tv: float) -> dict[str, float]:
    """The loss terms as Objective reports them, with their total."""
    return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


@dataclass(eq=False)
class TiledTerms:
    """What both tiled forms of the objective take (this module's and split.py's): the
    terms' targets and weights as ``Objective`` has them, the tiles, and a check for a
    cancel between tiles: one iteration of a large picture takes minutes, and a cancel
    should not wait for it (value_and_grad then returns no gradient). The content input
    is only read to build the content targets, never kept."""

    model: FeatureExtractor
    content_input: InitVar[torch.Tensor | None]
    content_layers: list[str]
    style_targets: dict[str, torch.Tensor]
    style_layer_weights: dict[str, float]
    content_weight: float
    style_weight: float
    tv_weight: float
    tiles: list[Tile]
    style_offset: float = 0.0
    memory_format: torch.memory_format = torch.contiguous_format
    interrupted: Callable[[], bool] | None = None
    # Set by the subclasses: each layer's stride, and N_l, the whole picture's positions
    # at each style layer (the Gram's divisor).
    strides: dict[str, int] = field(init=False)
    n_pos: dict[str, int] = field(init=False)

    def stopped(self) -> bool:
        return self.interrupted is not None and self.interrupted()

    def core_tap(
        self, h: torch.Tensor, layer: str, tile: Tile, ghat: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the body goes on with, a zero carrying the gradient of ⟨Ĝ, F Fᵀ⟩/N over
        the tile's core) for a style layer's activations ``h`` (``F``: scaled as the
        extractor scales them). Only that gradient is needed: the style loss came from
        the Gram pass."""
        slope = ghat[layer] / self.n_pos[layer]
        region = tile.region(self.strides[layer])
        scale = self.model.feature_scale
        if scale == 1.0:
            return region_tap(h, slope, region)
        _, zero = region_tap(h * scale, slope, region)
        return h, zero


@dataclass(eq=False)
class TiledObjective(TiledTerms):
    """``Objective``'s loss and gradient for a picture too large for one pass."""

    # Pass 1 needs no gradient, so it may run in fewer, larger windows (memory.py plans
    # them); its cores partition the picture as pass 2's do. None: pass 2's tiles.
    gram_tiles: list[Tile] | None = None

    def __post_init__(self, content_input: torch.Tensor | None) -> None:
        if content_input is None:
            self.content_layers = []
        self.style_layers = list(self.style_targets)
        self.layers = list(dict.fromkeys([*self.content_layers, *self.style_layers]))
        self.strides = layer_strides(self.model, self.layers)
        # N_l: the whole picture's positions at each style layer (the Gram's divisor)
        self.n_pos = {k: core_positions(self.tiles, self.strides[k]) for k in self.style_layers}
        self.content_targets = (
            tiled_features(
                self.model, content_input, self.content_layers, self.tiles, self.memory_format
            )
            if content_input is not None and self.content_layers
            else [{} for _ in self.tiles]
        )
        self.content_counts = {
            k: sum(c[k].numel() for c in self.content_targets) for k in self.content_layers
        }

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """(gradient, weighted loss terms) of the whole picture's objective at ``x``."""
        x = x.detach()
        height, width = x.shape[-2:]
        fmt = self.memory_format
        grams = tiled_grams(self.model, x, self.style_layers, self.gram_tiles or self.tiles, fmt)
        style, ghat = style_slopes(
            grams, self.style_targets, self.style_layer_weights, self.style_weight
        )
        grad = torch.zeros_like(x)
        content = 0.0
        tv = TileTV(self.model, height, width, self.tv_weight)
        for t, targets in zip(self.tiles, self.content_targets, strict=True):
            if self.stopped():
                return unfinished()
            xw = t.window(x).clone().requires_grad_(True)
            terms = []

            def tap(k: str, f: torch.Tensor, t: Tile = t, terms: list = terms) -> torch.Tensor:
                if k not in ghat:
                    return f
                f, zero = self.core_tap(f, k, t, ghat)
                terms.append(zero)
                return f

            feats = self.model(xw.contiguous(memory_format=fmt), self.layers, True, tap)
            for k in self.content_layers:
                d = t.core(feats[k], self.strides[k]).float() - targets[k].float()
                part = (d * d).sum() / self.content_counts[k]
                content += float(part.detach())
                terms.append(self.content_weight * part)
            if self.tv_weight:
                terms.append(tv.term(xw, t))
            (g,) = torch.autograd.grad(sum(terms[1:], terms[0]), xw)
            grad[..., t.wy0 : t.wy1, t.wx0 : t.wx1] += g
        losses = weighted_losses(
            self.content_weight * content,
            self.style_weight * (style + self.style_offset),
            tv.value if self.tv_weight else 0.0,
        )
        return grad, losses
