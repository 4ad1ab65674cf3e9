"""Second-order statistics shared by ``gsop`` and ``soca``: channel covariance and its square root.

Both run in float32 with autocast disabled, whatever the input dtype: a covariance of bf16/fp16
features loses most of its digits to cancellation, and the Newton-Schulz iteration amplifies that.

The authors' covariance layer (MPN-COV, used by GSoP-Net and SAN) multiplies the features with an
``M x M`` centering matrix, ``M`` = number of positions: 4 GB for a 3D patch of 32^3 voxels. Here
the mean is subtracted first and ``Xc @ Xc^T / M`` is formed directly, which is the same matrix.

Memory: plain autograd would keep the centred ``Xc`` (a full-size copy of the features) for the
backward pass; :func:`channel_covariance` is a custom autograd function that keeps ``X`` (which the
layer before keeps anyway) and the ``(N, C, 1)`` mean, and recomputes ``Xc`` there
(``dX = (G + G^T) Xc / M``, centred over positions). :func:`segattn.attention.lean.plain_autograd`
switches back to the plain expression.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from segattn.attention.lean import lean_enabled

__all__ = ["channel_covariance", "newton_schulz_sqrt"]


def channel_covariance(x: Tensor) -> Tensor:
    """Biased covariance of the channels over all spatial positions, in float32.

    Args:
        x: ``(N, C, *spatial)``.

    Returns:
        ``(N, C, C)`` float32, ``(X - mean) (X - mean)^T / M`` with ``X`` the ``(C, M)`` matrix
        of each sample; all zeros when ``M == 1``.
    """
    n, c = x.shape[:2]
    with torch.autocast(device_type=x.device.type, enabled=False):
        flat = x.reshape(n, c, -1).float()
        if lean_enabled() and torch.is_grad_enabled():
            return _Covariance.apply(flat)  # type: ignore[no-any-return]
        centred = flat - flat.mean(dim=2, keepdim=True)
        return torch.bmm(centred, centred.transpose(1, 2)) / flat.shape[2]


class _Covariance(torch.autograd.Function):
    """``Xc Xc^T / M`` of ``(N, C, M)`` features, saving ``X`` and its mean instead of ``Xc``."""

    @staticmethod
    def forward(ctx: Any, flat: Tensor) -> Tensor:  # type: ignore[override]
        mean = flat.mean(dim=2, keepdim=True)
        centred = flat - mean
        ctx.save_for_backward(flat, mean)
        return torch.bmm(centred, centred.transpose(1, 2)) / flat.shape[2]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        flat, mean = ctx.saved_tensors
        grad = grad / flat.shape[2]
        grad_centred = torch.bmm(grad + grad.transpose(1, 2), flat - mean)
        return grad_centred - grad_centred.mean(dim=2, keepdim=True)


def newton_schulz_sqrt(a: Tensor, iterations: int = 5, eps: float = 1e-12) -> Tensor:
    """Approximate square root of symmetric positive semi-definite matrices (iSQRT-COV).

    ``a`` is divided by its trace (so its eigenvalues lie in [0, 1] and the coupled Newton-Schulz
    iteration ``T = (3I - Z Y) / 2; Y <- Y T; Z <- T Z`` from ``Y = a / tr(a)``, ``Z = I``
    converges), iterated ``iterations`` times, and scaled back by ``sqrt(tr(a))``. This is the
    square root SAN and GSoP-Net use; with few iterations it is an approximation that is accurate
    for well-conditioned matrices and shrinks tiny eigenvalues less than the exact root would.

    Args:
        a: ``(N, C, C)`` symmetric positive semi-definite.
        iterations: Newton-Schulz steps (SAN: 5).
        eps: lower bound of the trace, so an all-zero matrix maps to zeros instead of NaN.

    Returns:
        ``(N, C, C)`` float32 with ``result @ result ~= a``.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations!r}")
    with torch.autocast(device_type=a.device.type, enabled=False):
        a = a.float()
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
        trace = a.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(eps)
        y = a / trace[:, None, None]
        z = eye
        for step in range(iterations):
            t = 0.5 * (3.0 * eye - torch.bmm(z, y))
            y = torch.bmm(y, t)
            if step < iterations - 1:  # the last Z is never used
                z = torch.bmm(t, z)
        return y * trace.sqrt()[:, None, None]
