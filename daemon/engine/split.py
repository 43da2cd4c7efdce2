"""The whole picture's objective with the network split in two: its shallow blocks tile
by tile, its deep blocks over the whole picture at once. Memory bounded, gradient exact.

Tiling the whole network (tiling.py) pays for conv5_1's reach: each tile recomputes a
96 px halo, and pass 1 runs the network once more for the Gram sums, so a 2048x1536
iteration took 2.9 times as long in 20 tiles as in one piece. But the memory of a pass
sits in its first blocks, where 64 and 128 channels run at full and half resolution;
after the second pooling a layer holds a quarter of what conv1_1 holds, after the third
an eighth. So here:

1. The shallow blocks, up to the pooling at ``cut``, run tile by tile without gradient,
   with the halo *they* need (16 px up to pool2, 48 px up to pool3). The cores of the
   cut's output are stitched into one tensor ``P`` (a sixteenth or a sixty-fourth of
   the pixels), exactly the whole picture's, and the shallow style layers' ``F Fᵀ`` are
   summed over the cores as in tiling's pass 1.
2. The deep blocks run on ``P`` with gradient, their style and content terms those of
   ``Objective``; the backward gives ``∂L/∂P``.
3. The shallow blocks run again, tile by tile, with gradient, and back-propagate the
   core's slice of ``∂L/∂P`` plus the shallow style layers' ``⟨Ĝ, F Fᵀ⟩/N`` and the
   total-variation part; the tiles' gradients add up to the whole picture's.

The shallow blocks thus run forward twice and the deep ones once, with little overlap.
The style terms of the shallow layers never cut a core out of its window's features
(``losses.region_gram_sum``, ``losses.region_tap``): on 2 AMX cores those copies, and
the layout conversions a sliced gradient caused in the pooling's backward, had made
the 2048x1536 iteration 1.6x the whole pass. Without them it took 0.85-0.93 times the
whole pass (tiles of 336 px; 1.05x at 1024x768), in under a third of its memory: the
tiles stay in cache where the whole pass's large tensors are mapped afresh each
iteration (bench/bench_split.py, BENCHMARKS.md). Content layers must lie past the cut
(the plan only splits above them: conv4_2 by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .allocator import release_free_pages
from .losses import ContentTarget, GramTarget, content_term, region_gram_sum, style_term
from .tiling import (
    TiledTerms,
    TileTV,
    core_positions,
    layer_strides,
    stride_at,
    style_slopes,
    unfinished,
    weighted_losses,
)


@dataclass(eq=False)
class SplitObjective(TiledTerms):
    """``Objective``'s loss and gradient with the layers up to ``cut`` run in ``tiles``."""

    cut: int = field(kw_only=True)  # body index of the pooling layer ending the shallow part

    def __post_init__(self, content_input: torch.Tensor | None) -> None:
        model, cut, taps = self.model, self.cut, self.model.taps
        if content_input is None:
            self.content_layers = []
        self.shallow_targets = {k: t for k, t in self.style_targets.items() if taps[k] <= cut}
        self.deep_targets = {
            k: GramTarget(t, model.dtype) for k, t in self.style_targets.items() if taps[k] > cut
        }
        if any(taps[k] <= cut for k in self.content_layers):
            raise ValueError(f"content layers {self.content_layers} must lie past body index {cut}")
        self.strides = layer_strides(model, list(self.style_targets))
        self.cut_stride = stride_at(model, cut)
        self.n_pos = {k: core_positions(self.tiles, self.strides[k]) for k in self.shallow_targets}
        self.content_targets: dict[str, ContentTarget] = {}
        if content_input is not None and self.content_layers:
            stitched, _ = self._shallow(content_input, [])
            with torch.no_grad():
                deep = self._deep(stitched, self.content_layers, lambda k, f: f)
            self.content_targets = {k: ContentTarget(t, model.dtype) for k, t in deep.items()}

    # -- the two parts ----------------------------------------------------------------
    def _shallow(
        self, x: torch.Tensor, gram_layers: list[str]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Without gradient: the cut's output over the whole picture, stitched from the
        tiles' cores, and the whole picture's Gram matrices of ``gram_layers`` (shallow
        style layers)."""
        body, s = self.model.body, self.cut_stride
        at = self.model.taps_by_index(gram_layers)
        sums: dict[str, torch.Tensor] = {}
        channels = [m.out_channels for m in body[: self.cut + 1] if isinstance(m, torch.nn.Conv2d)]
        size = (1, channels[-1], x.shape[-2] // s, x.shape[-1] // s)
        stitched = torch.empty(
            size, dtype=self.model.dtype, device=x.device, memory_format=self.memory_format
        )
        with torch.no_grad():
            for t in self.tiles:
                h = t.window(x).contiguous(memory_format=self.memory_format).to(self.model.dtype)
                for i in range(self.cut + 1):
                    h = body[i](h)
                    for k in at.get(i, ()):
                        g = region_gram_sum(self._scaled(h), t.region(self.strides[k]))
                        sums[k] = sums[k] + g if k in sums else g
                t.in_picture(stitched, s).copy_(t.core(h, s))
        grams = {k: v / self.n_pos[k] for k, v in sums.items()}
        return stitched, grams

    def _deep(
        self,
        stitched: torch.Tensor,
        layers: list[str],
        term: Callable[[str, torch.Tensor], torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``term(layer, features)`` for each of ``layers``, running the body past the cut."""
        at = self.model.taps_by_index(layers)
        h, out = stitched, {}
        for i in range(self.cut + 1, max(at) + 1):
            h = self.model.body[i](h)
            for k in at.get(i, ()):
                out[k] = term(k, self._scaled(h))
        return out

    def _deep_slope(self, stitched: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The deep part, whole, with gradient: ``∂L/∂P`` and the values of its terms
        (each deep style layer's unweighted loss, and the content loss), as Objective
        computes them."""
        stitched = stitched.detach().requires_grad_(True)
        values: dict[str, float] = {}

        def term(k: str, f: torch.Tensor) -> torch.Tensor:
            total = f.new_zeros((), dtype=torch.float32)
            if k in self.deep_targets:
                part = style_term(f, self.deep_targets[k])
                values[k] = float(part.detach())
                total = total + self.style_weight * self.style_layer_weights[k] * part
            if k in self.content_targets:
                part = content_term(f, self.content_targets[k])
                values["content"] = values.get("content", 0.0) + float(part.detach())
                total = total + self.content_weight * part
            return total

        layers = list(dict.fromkeys([*self.deep_targets, *self.content_targets]))
        if not layers:
            return torch.zeros_like(stitched), values
        terms = list(self._deep(stitched, layers, term).values())
        (slope,) = torch.autograd.grad(sum(terms[1:], terms[0]), stitched)
        return slope, values

    def _scaled(self, features: torch.Tensor) -> torch.Tensor:
        scale = self.model.feature_scale
        return features * scale if scale != 1.0 else features

    # -- loss and gradient ------------------------------------------------------------
    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """(gradient, weighted loss terms) of the whole picture's objective at ``x``."""
        x = x.detach()
        stitched, grams = self._shallow(x, list(self.shallow_targets))
        if self.stopped():
            return unfinished()
        style, ghat = style_slopes(
            grams, self.shallow_targets, self.style_layer_weights, self.style_weight
        )
        # The tiles' tensors went back to the heap, the deep part's larger ones come from
        # mappings of their own: without this the heap's pages counted on top of them.
        release_free_pages()
        slope, values = self._deep_slope(stitched)
        del stitched
        style += sum(self.style_layer_weights[k] * values[k] for k in self.deep_targets)
        # The shallow part again, tile by tile, with gradient.
        height, width = x.shape[-2:]
        tv = TileTV(self.model, height, width, self.tv_weight)
        at = self.model.taps_by_index(list(self.shallow_targets))
        grad = torch.zeros_like(x)
        s = self.cut_stride
        for t in self.tiles:
            if self.stopped():
                return unfinished()
            xw = t.window(x).clone().requires_grad_(True)
            h = xw.contiguous(memory_format=self.memory_format).to(self.model.dtype)
            outputs, grad_outputs = [], []
            for i in range(self.cut + 1):
                h = self.model.body[i](h)
                for k in at.get(i, ()):
                    h, zero = self.core_tap(h, k, t, ghat)
                    outputs.append(zero)
                    grad_outputs.append(None)
            # The cut's gradient over the whole window, zero outside the core, in the
            # window's layout: a slice's backward would hand the pooling a zero-filled
            # contiguous tensor, and its backward two layout copies of a window.
            seed = torch.zeros_like(h)
            t.core(seed, s).copy_(t.in_picture(slope, s))
            outputs.append(h)
            grad_outputs.append(seed)
            if self.tv_weight:
                outputs.append(tv.term(xw, t))
                grad_outputs.append(None)
            (g,) = torch.autograd.grad(outputs, xw, grad_outputs=grad_outputs)
            grad[..., t.wy0 : t.wy1, t.wx0 : t.wx1] += g
        losses = weighted_losses(
            self.content_weight * values.get("content", 0.0),
            self.style_weight * (style + self.style_offset),
            tv.value if self.tv_weight else 0.0,
        )
        return grad, losses
