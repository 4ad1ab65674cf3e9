"""Layers that do not keep their input for the backward pass: a max pool that keeps only its
argmax indices, and a convolution that computes its input again from a recipe.

A layer that follows an attention module receives a new full-size tensor, the module's output
``y = x * g``, and plain autograd keeps it for the layer's backward: a max pool keeps its input
(only its shape is used), a convolution keeps it for the weight gradient. The module keeps its
input ``x`` and its small gates anyway, so ``y`` is a second full-size copy per block. Here:

- :func:`max_pool_indices_only`: the pool's backward puts every output gradient at its argmax
  position; it needs the indices and the input's shape, not its values.
- :func:`conv_recomputing_input`: the convolution keeps the tensors of a recipe (the module's
  ``x`` and gates) and computes ``y`` again in its backward pass, then calls the same
  ``convolution_backward`` that autograd calls.

Both give the values and gradients of the plain layers (the pool's exactly: each input position
receives at most one gradient; the convolution's from the same kernels on the same, recomputed,
input). Their autograd functions save through ``ctx.save_for_backward``, so
``saved_tensors_hooks`` (:class:`segattn.layers.SavedTensorMeter`) see what they keep.

Example:
    >>> import torch
    >>> x = torch.randn(2, 3, 8, 6, requires_grad=True)
    >>> torch.equal(max_pool_indices_only(x, 2), torch.nn.functional.max_pool2d(x, 2))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["conv_recomputing_input", "max_pool_indices_only", "recomputable_conv"]

_MAX_POOL = (F.max_pool1d, F.max_pool2d, F.max_pool3d)


class _MaxPoolIndicesOnly(torch.autograd.Function):
    """Non-overlapping max pool saving its ``int64`` argmax indices, not its input."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, kernel_size: int) -> Tensor:  # type: ignore[override]
        pool = _MAX_POOL[x.ndim - 3]
        out, indices = pool(x, kernel_size, kernel_size, return_indices=True)
        ctx.input_shape = x.shape
        ctx.save_for_backward(indices)
        return out  # type: ignore[no-any-return]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        (indices,) = ctx.saved_tensors
        n, c, *spatial = ctx.input_shape
        grad_x = grad.new_zeros((n, c, int(torch.Size(spatial).numel())))
        # indices count positions in each (sample, channel) plane: scatter into the flat planes;
        # windows do not overlap, so every position receives at most one value (exact)
        grad_x.scatter_add_(2, indices.flatten(2), grad.flatten(2))
        return grad_x.view(ctx.input_shape), None


def max_pool_indices_only(x: Tensor, kernel_size: int) -> Tensor:
    """Max pool with window and stride ``kernel_size`` that keeps only its argmax indices.

    The indices (``int64``, one per output) cost ``8 / kernel_size**d`` bytes per input element:
    half of a float32 input in 2D, an eighth in 3D; ``nn.MaxPoolNd`` keeps its input as well.

    Args:
        x: ``(N, C, *spatial)`` with 1-3 spatial axes.
        kernel_size: window and stride along every axis (no padding, floor mode).

    Returns:
        ``(N, C, *(s // kernel_size))``, the values of ``F.max_poolNd(x, kernel_size)``.

    Raises:
        ValueError: ``x`` is not 3-5 dimensional.
    """
    if not 3 <= x.ndim <= 5:
        raise ValueError(f"expected (N, C, *spatial) with 1-3 spatial axes, got {tuple(x.shape)}")
    return _MaxPoolIndicesOnly.apply(x, kernel_size)  # type: ignore[no-any-return]


def recomputable_conv(layer: nn.Module) -> bool:
    """Whether :func:`conv_recomputing_input` can stand in for ``layer``: an ``nn.Conv*d`` or
    ``nn.ConvTranspose*d`` with zero padding given as numbers."""
    if not isinstance(layer, nn.modules.conv._ConvNd):
        return False
    return layer.padding_mode == "zeros" and not isinstance(layer.padding, str)


class _ConvRecomputingInput(torch.autograd.Function):
    """``convolution(y, weight, bias)`` saving the weight and a recipe's tensors, not ``y``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        y: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        options: tuple[Any, ...],
        compute: Callable[..., Tensor],
        *tensors: Tensor,
    ) -> Tensor:
        ctx.options, ctx.compute = options, compute
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.save_for_backward(weight, *tensors)
        return torch.ops.aten.convolution(y, weight, bias, *options)  # type: ignore[no-any-return]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        weight, *tensors = ctx.saved_tensors
        with torch.no_grad():
            y = ctx.compute(*tensors)
        need_y, need_w, need_b = ctx.needs_input_grad[:3]
        grad_y, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad,
            y,
            weight,
            ctx.bias_shape,
            *ctx.options,
            [need_y, need_w, need_b and ctx.bias_shape is not None],
        )
        return (grad_y, grad_w, grad_b, None, None, *[None] * len(tensors))


def conv_recomputing_input(
    y: Tensor, layer: nn.Module, compute: Callable[..., Tensor], tensors: Sequence[Tensor]
) -> Tensor:
    """``layer(y)`` for a convolution layer, keeping ``tensors`` instead of ``y`` for backward.

    Args:
        y: the layer's input ``(N, C_in, *spatial)``; ``compute(*tensors)`` must return the same
            values (it runs again in the backward pass, without grad mode).
        layer: an ``nn.Conv*d`` or ``nn.ConvTranspose*d`` (see :func:`recomputable_conv`).
        compute: recomputes ``y`` from ``tensors``.
        tensors: what the backward pass keeps; choose tensors that are kept anyway (e.g. by the
            operation that made ``y``), or nothing is gained.

    Returns:
        ``layer(y)``.

    Raises:
        ValueError: ``layer`` is not such a convolution.
    """
    if not recomputable_conv(layer):
        raise ValueError(f"expected a zero-padded nn.Conv*d/nn.ConvTranspose*d, got {layer!r}")
    conv: Any = layer
    transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
    output_padding = conv.output_padding if transposed else (0,) * len(conv.padding)
    options = (
        list(conv.stride),
        list(conv.padding),
        list(conv.dilation),
        transposed,
        list(output_padding),
        conv.groups,
    )
    return _ConvRecomputingInput.apply(  # type: ignore[no-any-return]
        y, conv.weight, conv.bias, options, compute, *tensors
    )
