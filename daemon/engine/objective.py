"""The weighted Gatys objective at one resolution: image in, loss terms out.

Everything a scale needs is bundled here so the optimisation loop only sees a function
from the image tensor (in the network's input space) to the total loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .losses import (
    ContentTarget,
    GramTarget,
    content_tap,
    content_term,
    style_tap,
    style_term,
    tv_loss,
)
from .models import FeatureExtractor


@dataclass
class Objective:
    model: FeatureExtractor
    content_targets: dict[str, torch.Tensor]  # layer -> features (empty: no content term)
    style_targets: dict[str, torch.Tensor]  # layer -> (blended) Gram matrix
    style_layer_weights: dict[str, float]
    content_weight: float
    style_weight: float
    tv_weight: float
    style_offset: float = 0.0  # constant the blended-Gram form leaves out (reporting only)
    memory_format: torch.memory_format = torch.contiguous_format
    # Further weighted terms a caller adds (a sequence's temporal term): name -> function
    # of the picture in 0..255 RGB at this scale's size.
    extra_terms: dict[str, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)
    layers: list[str] = field(init=False)
    grams: dict[str, GramTarget] = field(init=False)
    contents: dict[str, ContentTarget] = field(init=False)
    tv_scale: list[float] | None = field(init=False)

    def __post_init__(self) -> None:
        self.layers = list(dict.fromkeys([*self.content_targets, *self.style_targets]))
        dtype = self.model.dtype
        self.grams = {k: GramTarget(t, dtype) for k, t in self.style_targets.items()}
        self.contents = {k: ContentTarget(t, dtype) for k, t in self.content_targets.items()}
        # TV sees neighbour differences only, so to_rgb(x)·255's mean and channel order
        # drop out: x times 255·std/scale per channel (1 for Caffe's VGG: x itself).
        prep = self.model.preprocessing
        factors = [255.0 * s / prep.scale for s in prep.std]
        self.tv_scale = None if factors == [1.0] * 3 else factors

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (differentiable) and its weighted terms as floats."""
        style: dict[str, torch.Tensor] = {}
        content: dict[str, torch.Tensor] = {}

        def tap(layer: str, features: torch.Tensor) -> torch.Tensor:
            if layer in self.contents:
                features, content[layer] = content_tap(features, self.contents[layer])
            if layer in self.grams:
                features, style[layer] = style_tap(features, self.grams[layer])
            return features

        # A scaled extractor's terms come from its scaled copy, not the body's tensor.
        tapped = self.model.feature_scale == 1.0
        # LBFGS needs a plain contiguous parameter; the network prefers channels-last.
        x_net = x.contiguous(memory_format=self.memory_format)
        feats = self.model(x_net, self.layers, True, tap if tapped else None)
        if not tapped:
            style = {k: style_term(feats[k], g) for k, g in self.grams.items()}
            content = {k: content_term(feats[k], t) for k, t in self.contents.items()}
        zero = x.new_zeros(())
        c = sum(content.values(), zero)
        s = sum((self.style_layer_weights[k] * v for k, v in style.items()), zero)
        terms = [self.content_weight * c, self.style_weight * s]
        tv = zero
        if self.tv_weight:
            scale = self.tv_scale
            tv = tv_loss(x if scale is None else x * x.new_tensor(scale).view(1, 3, 1, 1))
            terms.append(self.tv_weight * tv)
        extra = {}
        if self.extra_terms:
            rgb255 = self.model.preprocessing.to_rgb(x) * 255.0
            extra = {name: term(rgb255) for name, term in self.extra_terms.items()}
            terms.extend(extra.values())
        total = sum(terms[1:], terms[0])
        losses = {
            "content": self.content_weight * c.detach().item(),
            "style": self.style_weight * (s.detach().item() + self.style_offset),
            "tv": self.tv_weight * tv.detach().item(),
        }
        losses.update({name: value.detach().item() for name, value in extra.items()})
        losses["total"] = sum(losses.values())
        return total, losses

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """The loss terms and their gradient at ``x`` (None when the loss is not finite);
        the interface ``tiling.TiledObjective`` shares."""
        x = x.detach().requires_grad_(True)
        total, losses = self(x)
        if not math.isfinite(losses["total"]):
            return None, losses
        (grad,) = torch.autograd.grad(total, x)
        return grad, losses
