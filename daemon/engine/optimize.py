"""The iteration loop at one resolution: L-BFGS or Adam over the image pixels.

One iteration is one loss-and-gradient evaluation (L-BFGS with ``max_iter=1``, as
pastiche and jcjohnson/neural-style count), so iteration counts compare across tools.
After every step the picture is clamped to the colours an image can hold (0..1 RGB), so
the optimiser spends no effort on values the saved picture cannot show; at 512 px this
lowered the bench's loss after 50 final-scale iterations by about 6%. A cancel or time
limit is checked after every step and ends the loop at once with the latest image; a
diverging loss (NaN) falls back to the lowest-loss image evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .lbfgs import LBFGS

LBFGS_HISTORY = 20
# The first L-BFGS step (and so each scale's first), in 0..255 levels for the top pixel.
LBFGS_FIRST_STEP = 4.0
# The most any pixel may move in one L-BFGS step, in 0..255 levels (see lbfgs.py).
LBFGS_MAX_STEP = 48.0
# Adam steps are given in 0..255 pixel levels and converted to the network's input units.
DEFAULT_ADAM_STEP = 4.0


@dataclass
class ScaleOutcome:
    image: torch.Tensor  # the image to carry on with (input space, detached)
    iterations: int  # iterations actually run
    losses: dict[str, float]  # of the last evaluation
    stop: str | None  # None, "diverged" or what should_stop said ("cancelled", ...)


class _Stepper:
    """One interface over our L-BFGS and torch's Adam: (x, grad) -> next x."""

    def __init__(
        self,
        x: torch.Tensor,
        name: str,
        lr: float | None,
        levels_per_unit: float,
        bounds: tuple[torch.Tensor, torch.Tensor],
        history: int = LBFGS_HISTORY,
    ):
        self.lo, self.hi = bounds  # every step ends inside this box
        self.adam = None
        if name == "adam":
            step = lr if lr is not None else DEFAULT_ADAM_STEP
            self.param = x.detach().clone()
            self.adam = torch.optim.Adam([self.param], lr=step / levels_per_unit)
        else:
            self.lbfgs = LBFGS(
                history,
                lr if lr is not None else 1.0,
                LBFGS_FIRST_STEP / levels_per_unit,
                LBFGS_MAX_STEP / levels_per_unit,
            )

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if self.adam is None:
            return self.lbfgs.step(x, grad).clamp_(self.lo, self.hi)
        self.param.grad = grad
        self.adam.step()
        with torch.no_grad():
            self.param.clamp_(self.lo, self.hi)
        return self.param.detach().clone()


def optimise_scale(
    x0: torch.Tensor,
    objective,  # Objective or tiling.TiledObjective: value_and_grad(x) -> (grad, losses)
    iterations: int,
    optimizer: str,
    learning_rate: float | None,
    levels_per_unit: float,
    should_stop: Callable[[], str | None],
    after_iteration: Callable[[int, torch.Tensor, dict[str, float], str | None], None],
    history: int = LBFGS_HISTORY,
) -> ScaleOutcome:
    """Run up to ``iterations`` steps from ``x0``.

    ``after_iteration(i, x, losses, stop)`` reports each step with what ``should_stop``
    has just said (None: go on), so the caller can emit a final frame on a real stop.
    """
    bounds = objective.model.preprocessing.bounds(x0)
    x = x0.detach().clamp(*bounds)
    stepper = _Stepper(x, optimizer, learning_rate, levels_per_unit, bounds, history)
    best_loss, best = math.inf, x
    losses: dict[str, float] = {}
    done, stop = 0, should_stop()
    for i in range(1, iterations + 1 if not stop else 1):
        grad, losses = objective.value_and_grad(x)
        if grad is None or not math.isfinite(losses["total"]):
            stop = should_stop()  # a tiled evaluation stops early on a cancel
            if stop is None:
                stop, x = "diverged", best
            break
        if losses["total"] < best_loss:
            best_loss, best = losses["total"], x
        x = stepper.step(x, grad)
        done = i
        stop = should_stop()
        after_iteration(i, x, dict(losses), stop)
        if stop:
            break
    return ScaleOutcome(x, done, dict(losses), stop)
