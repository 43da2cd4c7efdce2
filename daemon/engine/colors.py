"""Keeping the content's colours (Gatys et al. 2016, "Preserving color in neural style transfer").

Two ways, as in jcjohnson/neural-style: ``luminance`` transfers style to brightness only
(the result's luminance with the content's chroma, in YIQ), ``match`` recolours the style
image so its colour mean and covariance equal the content's before the style is measured.
All functions take and return RGB tensors (N, 3, H, W) in 0..1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def rgb_to_yiq(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB_TO_YIQ.to(rgb), rgb)


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    inv = torch.linalg.inv(_RGB_TO_YIQ.double()).to(yiq)
    return torch.einsum("ij,njhw->nihw", inv, yiq)


def keep_luminance(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luminance under the content's chroma (content resized to fit)."""
    if content.shape[-2:] != result.shape[-2:]:
        content = F.interpolate(
            content, size=result.shape[-2:], mode="bilinear", align_corners=False, antialias=True
        )
    y = rgb_to_yiq(result)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0.0, 1.0)


def _matrix_power(cov: torch.Tensor, power: float) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(1e-8) ** power
    return vecs @ torch.diag(vals) @ vecs.t()


def match_colors(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Affinely recolour ``style`` so its RGB mean and covariance equal ``content``'s."""
    s = style[0].reshape(3, -1).double()
    c = content[0].reshape(3, -1).double()
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    eye = 1e-5 * torch.eye(3, dtype=torch.float64)
    cov_s = torch.cov(s) + eye
    cov_c = torch.cov(c) + eye
    transform = _matrix_power(cov_c, 0.5) @ _matrix_power(cov_s, -0.5)
    out = transform @ (s - mu_s) + mu_c
    return out.reshape(style.shape).to(style.dtype).clamp(0.0, 1.0)
