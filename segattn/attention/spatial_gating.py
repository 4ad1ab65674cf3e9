"""sSE's spatial gate and its product, ``x * sigmoid(w . x + b)`` and ``x * (g_c + sigmoid(w . x
+ b))`` (scSE), with a backward pass written for them.

The spatial squeeze of sSE (Roy et al., MICCAI 2018) is a 1x1 convolution ``C -> 1``: at every
position the dot product of the channel vector with ``w``. Written as one matrix product of
``w: (1, C)`` with ``x`` viewed as ``(N, C, S)`` it reads ``x`` once; a library convolution
with a single output channel is several times slower on a CPU.

Plain autograd composes the module's gradient from its pieces: the product's two gradients, the
1x1 convolution's input gradient (a full-size ``w (x) dq`` tensor), the sigmoid's, and the sums of
those full-size pieces. :func:`spatial_gated` computes the same forward values by the same
operations and writes the input gradient in one buffer,

    dx = g * (g_c + s) + w (x) dq,   dq = sum_C(g * x) * s * (1 - s),

keeping ``x``, the gates and ``w`` for backward (``s`` is ``(N, 1, *spatial)``, ``1/C`` of
``x``). The gradients are the same functions as autograd's evaluated in a different order, so
they agree to float rounding (about 1e-7 relative in float32).

Like the products of :mod:`segattn.attention.lean`, it falls back to the plain expression under
:func:`segattn.attention.lean.plain_autograd`, without grad mode, under autocast and while
``torch.compile`` traces, and it records a :class:`~segattn.attention.lean.ProductRecipe` so that
the next layer of a network can keep ``x`` and the gates instead of the output.

Example:
    >>> import torch
    >>> x = torch.randn(2, 8, 5, 6, requires_grad=True)
    >>> w, b = torch.randn(1, 8, 1, 1), torch.zeros(1)
    >>> s = spatial_gate_of(x, w, b)
    >>> torch.equal(spatial_gated(x, w, b), x * s)
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from segattn.attention.lean import _record, lean_enabled

__all__ = ["spatial_gate_of", "spatial_gated"]


def _flat(x: Tensor) -> Tensor:
    """``(N, C, *spatial)`` as ``(N, C, S)`` (a view of a contiguous tensor)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _logits(xf: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``w . x + b`` at every position: ``(N, C, S) -> (N, 1, S)``."""
    # bmm over the batch (not matmul, whose broadcasting copies x transposed)
    w = weight.reshape(1, 1, -1).to(xf.dtype).expand(xf.shape[0], 1, -1).contiguous()
    q = torch.bmm(w, xf)
    if bias is not None:
        q = q + bias.reshape(1, 1, 1).to(q.dtype)
    return q


def spatial_gate_of(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """sSE's gate ``sigmoid(conv1x1(x))`` for a ``C -> 1`` convolution's ``weight`` and ``bias``.

    Args:
        x: ``(N, C, *spatial)``.
        weight: ``(1, C, 1, ..., 1)`` (any shape with ``C`` elements).
        bias: one element, or None.

    Returns:
        ``(N, 1, *spatial)``, values in (0, 1).
    """
    q = _logits(_flat(x), weight, bias)
    return torch.sigmoid(q).view(x.shape[0], 1, *x.shape[2:])


def _gated_flat(xf: Tensor, c: Tensor | None, s: Tensor) -> Tensor:
    """``x * (c + s)`` (or ``x * s``) on ``(N, C, S)``, written into one new buffer."""
    if c is None:
        return torch.mul(xf, s)
    out = torch.add(c.reshape(xf.shape[0], -1, 1), s)
    return out.mul_(xf)


def _recompute(x: Tensor, c: Tensor | None, s: Tensor) -> Tensor:
    return _gated_flat(_flat(x), c, _flat(s)).view(x.shape)


class _SpatialGated(torch.autograd.Function):
    """``y = x * (c + s)`` or ``y = x * s`` with ``s = sigmoid(w . x + b)``; also returns ``s``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, c: Tensor | None, weight: Tensor, bias: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        xf = _flat(x)
        s = _logits(xf, weight, bias).sigmoid_()
        y = _gated_flat(xf, c, s).view(x.shape)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, s, weight, *([] if c is None else [c]))
        s_out = s.view(x.shape[0], 1, *x.shape[2:])
        ctx.mark_non_differentiable(s_out)
        return y, s_out

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _grad_s: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, s, weight, *rest = ctx.saved_tensors
        c = rest[0] if rest else None
        n, ch = x.shape[:2]
        xf, g = _flat(x), _flat(grad.contiguous())
        # one full-size buffer: first g * x (for the gate gradients), then the input gradient
        buf = torch.empty_like(x, memory_format=torch.contiguous_format)
        t = _flat(buf)
        torch.mul(g, xf, out=t)
        grad_c = None
        if c is not None and ctx.needs_input_grad[1]:
            grad_c = t.sum(dim=-1).view(c.shape)
        dq = t.sum(dim=1, keepdim=True)
        dq.mul_(s * (1 - s))
        grad_w = grad_b = None
        if ctx.needs_input_grad[2]:
            grad_w = torch.bmm(xf, dq.transpose(1, 2)).sum(dim=0).view(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = dq.sum().reshape(1)
        grad_x = None
        if ctx.needs_input_grad[0]:
            if c is None:
                torch.mul(g, s, out=t)
            else:
                torch.add(c.reshape(n, ch, 1), s, out=t)
                t.mul_(g)
            t.addcmul_(weight.reshape(1, ch, 1).to(t.dtype), dq)
            grad_x = buf
        return grad_x, grad_c, grad_w, grad_b


def spatial_gated(
    x: Tensor, weight: Tensor, bias: Tensor | None, channel_gate: Tensor | None = None
) -> Tensor:
    """``x * sigmoid(w . x + b)`` (sSE) or ``x * (channel_gate + sigmoid(w . x + b))`` (scSE).

    Args:
        x: ``(N, C, *spatial)``.
        weight: the ``C -> 1`` convolution's weight, ``C`` elements.
        bias: its bias (one element), or None.
        channel_gate: ``(N, C, 1, ..., 1)``, or None for sSE alone.

    Returns:
        ``(N, C, *spatial)``, the same values as the plain expression.
    """
    if (
        not lean_enabled()
        or not torch.is_grad_enabled()
        or torch.compiler.is_compiling()
        or torch.is_autocast_enabled(x.device.type)
    ):
        s = spatial_gate_of(x, weight, bias)
        return x * s if channel_gate is None else x * (channel_gate + s)
    x = x.contiguous()
    y, s = _SpatialGated.apply(x, channel_gate, weight, bias)
    if channel_gate is None:
        return _record(y, _recompute_spatial, (x, s))
    return _record(y, _recompute, (x, channel_gate, s))


def _recompute_spatial(x: Tensor, s: Tensor) -> Tensor:
    return _recompute(x, None, s)
