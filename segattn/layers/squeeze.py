"""Global average pooling whose backward pass broadcasts the gradient instead of writing it out.

``x.mean(dim=spatial)`` is the squeeze of every SE-style channel gate. Autograd's backward for
``mean`` divides the broadcast gradient, which writes a new full-size ``(N, C, *spatial)`` tensor,
and then adds it to the input's other gradient. :func:`spatial_mean` divides the small gradient
first and hands autograd the broadcast view: the same values (the same division of the same
numbers), added in place to the input's gradient without the full-size temporary.

Example:
    >>> import torch
    >>> x = torch.randn(2, 3, 4, 5, requires_grad=True)
    >>> torch.equal(spatial_mean(x), x.mean(dim=(2, 3)))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from segattn.layers.factories import reduce_dims

__all__ = ["spatial_mean"]


class _SpatialMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.shape = x.shape
        return x.mean(dim=reduce_dims(x.ndim))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        shape = ctx.shape
        count = 1
        for size in shape[2:]:
            count *= size
        return (grad / count).view(*grad.shape, *[1] * (len(shape) - 2)).expand(shape)


def spatial_mean(x: Tensor) -> Tensor:
    """Mean over the spatial axes: ``(N, C, *spatial) -> (N, C)``, as ``x.mean(dim=spatial)``.

    Args:
        x: ``(N, C, *spatial)``.
    """
    if not torch.is_grad_enabled() or not x.requires_grad:
        return x.mean(dim=reduce_dims(x.ndim))
    return _SpatialMean.apply(x)  # type: ignore[no-any-return]
