"""Memory-lean gating products: ``x * g``, ``x * (a + b)``, ``max(x * a, x * b)`` and CBAM's
channel-gated pooling, as custom autograd functions that keep only ``x`` and the small gates.

Plain autograd keeps every full-size ``(N, C, *spatial)`` intermediate of an expression for the
backward pass: ``x * (g_c + g_s)`` keeps the broadcast sum, ``max(x * g_c, x * g_s)`` both
products, ``x * g_1 * g_2`` the first product. The functions here compute the same forward values
with the same operations, save the input ``x`` (which the preceding activation keeps anyway) and
the gates, and recompute the products in the backward pass. For channel gates ``(N, C, 1, ...)``
and spatial gates ``(N, 1, *spatial)`` that means a module keeps about one copy of its input
instead of two or three.

The gradients are the same functions as autograd's (including its tie rules for ``maximum`` and
``amax``) evaluated in a different order, so they agree to rounding (about 1e-7 relative in
float32). :func:`plain_autograd` switches every helper back to the plain expressions, for tests
and comparisons.

The product's output ``y`` itself is the one full-size tensor left: the layer after the module
would keep it for its own backward. :func:`call_with_recipe` runs a module and returns, with
``y``, a :class:`ProductRecipe` -- the product's expression and the tensors it keeps anyway --
so that the next layer can keep those instead and compute ``y`` again in its backward pass
(:mod:`segattn.nets.handoff`).

Example:
    >>> import torch
    >>> x = torch.randn(2, 8, 5, 6, requires_grad=True)
    >>> g = torch.rand(2, 8, 1, 1, requires_grad=True)
    >>> y = gate_product(x, g)
    >>> torch.equal(y, x * g)
    True
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ProductRecipe",
    "call_with_recipe",
    "channel_gated_pool",
    "gate_max",
    "gate_product",
    "gate_sum_product",
    "lean_enabled",
    "plain_autograd",
    "sigmoid_gate",
]

_STATE = threading.local()


def lean_enabled() -> bool:
    """Whether the helpers use the lean autograd functions (not inside :func:`plain_autograd`)."""
    return not getattr(_STATE, "plain", False)


@contextlib.contextmanager
def plain_autograd() -> Iterator[None]:
    """Within this block (in this thread) the helpers build plain autograd expressions.

    Example:
        >>> import torch
        >>> with plain_autograd():
        ...     lean_enabled()
        False
    """
    previous = getattr(_STATE, "plain", False)
    _STATE.plain = True
    try:
        yield
    finally:
        _STATE.plain = previous


def _reduce_to(grad: Tensor, like: Tensor) -> Tensor:
    """Sum a broadcast gradient back to the shape (and dtype) of ``like``."""
    if grad.shape != like.shape:
        grad = grad.sum_to_size(like.shape)
    return grad.to(like.dtype)


def _product(tensors: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    out = tensors[0]
    for t in tensors[1:]:
        out = out * t
    return out


# The forward expressions of the products, shared by the autograd functions, the plain path and
# the recipes that recompute an output (same operations in the same order: the same values).
def _gated(relu: bool, x: Tensor, *gates: Tensor) -> Tensor:
    out = _product((x, *gates))
    return F.relu(out) if relu else out


def _sum_gated(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return x * (a + b)


def _max_gated(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.maximum(x * a, x * b)


def _sigmoid_gated(product: bool, offset: float, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return x * _sigmoid_factor(a, b, product, offset)


@dataclass(frozen=True, eq=False)
class ProductRecipe:
    """How to compute a lean product's output again from the tensors its backward keeps.

    A layer that receives the output and would keep it for its own backward (a convolution
    needs its input for the weight gradient) can keep these tensors instead -- the input ``x``
    and the gates, which the product keeps anyway -- and call :meth:`recompute` in its backward.

    Attributes:
        compute: ``compute(*tensors)`` returns the output again, by the same operations in the
            same order as the forward pass, so with the same values.
        tensors: the product's input ``x`` and its gates.
    """

    compute: Callable[..., Tensor]
    tensors: tuple[Tensor, ...]

    def recompute(self) -> Tensor:
        """The product's output, computed again (without autograd history)."""
        with torch.no_grad():
            return self.compute(*self.tensors)


def _record(out: Tensor, compute: Callable[..., Tensor], tensors: tuple[Tensor, ...]) -> Tensor:
    """Note ``out``'s recipe when :func:`call_with_recipe` is listening (in this thread)."""
    log = getattr(_STATE, "log", None)
    if log is not None:
        log.append((out, ProductRecipe(compute, tensors)))
    return out


def call_with_recipe(
    module: Callable[[Tensor], Tensor], x: Tensor
) -> tuple[Tensor, ProductRecipe | None]:
    """``module(x)`` and, when its output is the output of one of the lean products below, the
    :class:`ProductRecipe` that computes it again.

    The recipe is None under :func:`plain_autograd`, without grad mode, while ``torch.compile``
    traces (the compiled graph chooses what to keep), and when the module's output is not a
    lean product's output itself (a view of it, a sum with it, or another operation's result).

    Args:
        module: e.g. an attention module, ``(N, C, *spatial) -> (N, C, *spatial)``.
        x: its input.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 8, 5, 6, requires_grad=True)
        >>> g = torch.rand(2, 8, 1, 1)
        >>> y, recipe = call_with_recipe(lambda t: gate_product(t, g), x)
        >>> torch.equal(recipe.recompute(), y)
        True
    """
    if not lean_enabled() or not torch.is_grad_enabled() or torch.compiler.is_compiling():
        return module(x), None
    previous = getattr(_STATE, "log", None)
    log: list[tuple[Tensor, ProductRecipe]] = []
    _STATE.log = log
    try:
        out = module(x)
    finally:
        _STATE.log = previous
    recipe = next((r for o, r in reversed(log) if o is out), None)
    return out, recipe


class _GateProduct(torch.autograd.Function):
    """``y = x * g_1 * ... * g_k`` (optionally ``relu(y)``), saving ``x`` and the gates."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, relu: bool, *gates: Tensor) -> Tensor:  # type: ignore[override]
        ctx.relu = relu
        ctx.save_for_backward(x, *gates)
        return _gated(relu, x, *gates)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, *gates = ctx.saved_tensors
        if ctx.relu:
            # relu's backward passes the gradient where its output is positive: recompute that
            grad = grad.masked_fill(_product((x, *gates)) <= 0, 0)
        grads: list[Tensor | None] = [None] * len(gates)
        for i, gate in enumerate(gates):
            if ctx.needs_input_grad[2 + i]:
                grads[i] = _reduce_to(_product([grad, x, *gates[:i], *gates[i + 1 :]]), gate)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _reduce_to(_product([grad, *gates]), x)
        return (grad_x, None, *grads)


class _GateSumProduct(torch.autograd.Function):
    """``y = x * (a + b)``, saving ``x``, ``a`` and ``b`` instead of the broadcast sum."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, a, b)
        return _sum_gated(x, a, b)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, a, b = ctx.saved_tensors
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_sum = grad * x
            if ctx.needs_input_grad[1]:
                grad_a = _reduce_to(grad_sum, a)
            if ctx.needs_input_grad[2]:
                grad_b = _reduce_to(grad_sum, b)
        if ctx.needs_input_grad[0]:
            grad_x = _reduce_to(grad * (a + b), x)
        return grad_x, grad_a, grad_b


class _GateMax(torch.autograd.Function):
    """``y = max(x * a, x * b)``, saving ``x``, ``a`` and ``b``; ties split the gradient in half
    (as ``torch.maximum``'s backward does)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, a, b)
        return _max_gated(x, a, b)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, a, b = ctx.saved_tensors
        p, q = x * a, x * b
        tie = p == q
        half = torch.where(tie, grad / 2, grad)
        grad_p = half.masked_fill(p < q, 0)
        grad_q = half.masked_fill(q < p, 0)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _reduce_to(grad_p * a + grad_q * b, x)
        if ctx.needs_input_grad[1]:
            grad_a = _reduce_to(grad_p * x, a)
        if ctx.needs_input_grad[2]:
            grad_b = _reduce_to(grad_q * x, b)
        return grad_x, grad_a, grad_b


class _ChannelGatedPool(torch.autograd.Function):
    """``[mean_c(x * g), max_c(x * g)]`` ``(N, 2, *spatial)``, saving ``x``, ``g`` and the max
    ``(N, 1, *spatial)``; ties of the max share the gradient equally (as ``amax``'s backward)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, g: Tensor) -> Tensor:  # type: ignore[override]
        refined = x * g
        top = refined.amax(dim=1, keepdim=True)
        ctx.save_for_backward(x, g, top)
        return torch.cat((refined.mean(dim=1, keepdim=True), top), dim=1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, g, top = ctx.saved_tensors
        grad_mean, grad_max = grad[:, :1], grad[:, 1:]
        refined = x * g
        is_top = refined == top
        count = is_top.sum(dim=1, keepdim=True)
        grad_refined = grad_mean.expand_as(refined) / refined.shape[1]
        grad_refined = grad_refined + (grad_max / count) * is_top
        grad_x = grad_g = None
        if ctx.needs_input_grad[0]:
            grad_x = _reduce_to(grad_refined * g, x)
        if ctx.needs_input_grad[1]:
            grad_g = _reduce_to(grad_refined * x, g)
        return grad_x, grad_g


class _SigmoidGate(torch.autograd.Function):
    """``y = x * (offset + sigmoid(a + b))`` (or ``a * b``), saving ``x``, ``a`` and ``b``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, a: Tensor, b: Tensor, product: bool, offset: float
    ) -> Tensor:
        ctx.save_for_backward(x, a, b)
        ctx.product, ctx.offset = product, offset
        return _sigmoid_gated(product, offset, x, a, b)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, a, b = ctx.saved_tensors
        s = torch.sigmoid(a * b if ctx.product else a + b)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _reduce_to(grad * (s + ctx.offset if ctx.offset else s), x)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_logits = grad * x * (1 - s) * s
            if ctx.needs_input_grad[1]:
                grad_a = _reduce_to(grad_logits * b if ctx.product else grad_logits, a)
            if ctx.needs_input_grad[2]:
                grad_b = _reduce_to(grad_logits * a if ctx.product else grad_logits, b)
        return grad_x, grad_a, grad_b, None, None


def _sigmoid_factor(a: Tensor, b: Tensor, product: bool, offset: float) -> Tensor:
    s = torch.sigmoid(a * b if product else a + b)
    return offset + s if offset else s


def sigmoid_gate(
    x: Tensor, a: Tensor, b: Tensor, product: bool = False, offset: float = 0.0
) -> Tensor:
    """``x * (offset + sigmoid(a + b))`` (``a * b`` with ``product``), keeping ``x``, ``a`` and
    ``b`` for backward, not the full-size logits, sigmoid and factor.

    BAM's ``x * (1 + sigmoid(M_c + M_s))`` and bilinear attention's
    ``x * sigmoid(g_global * g_local)`` are of this form.

    Args:
        x: ``(N, C, *spatial)``.
        a: broadcastable to ``x``, e.g. channel logits ``(N, C, 1, ...)``.
        b: broadcastable to ``x``, e.g. spatial logits ``(N, 1, *spatial)``.
        product: combine ``a`` and ``b`` by product instead of sum.
        offset: added to the sigmoid (0 adds nothing).
    """
    if not lean_enabled() or not torch.is_grad_enabled():
        return _sigmoid_gated(product, offset, x, a, b)
    out = _SigmoidGate.apply(x, a, b, product, float(offset))
    compute = functools.partial(_sigmoid_gated, product, float(offset))
    return _record(out, compute, (x, a, b))


def gate_product(x: Tensor, *gates: Tensor, relu: bool = False) -> Tensor:
    """``x * gates[0] * gates[1] * ...`` (then ``relu`` if asked), keeping only ``x`` and the
    gates for the backward pass.

    Args:
        x: ``(N, C, *spatial)``.
        *gates: one or more tensors broadcastable to ``x`` (channel gates ``(N, C, 1, ...)``,
            spatial gates ``(N, 1, *spatial)``, per-axis strips, or full size).
        relu: apply ``relu`` to the product (its mask is recomputed in the backward pass).

    Returns:
        The product, the same tensor plain autograd would give.
    """
    if not gates:
        raise ValueError("gate_product needs at least one gate")
    if not lean_enabled() or not torch.is_grad_enabled():
        return _gated(relu, x, *gates)
    out = _GateProduct.apply(x, relu, *gates)
    return _record(out, functools.partial(_gated, relu), (x, *gates))


def gate_sum_product(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``x * (a + b)`` keeping ``x``, ``a`` and ``b`` (not the broadcast sum) for backward.

    Args:
        x: ``(N, C, *spatial)``.
        a: broadcastable to ``x``, e.g. a channel gate ``(N, C, 1, ...)``.
        b: broadcastable to ``x``, e.g. a spatial gate ``(N, 1, *spatial)``.
    """
    if not lean_enabled() or not torch.is_grad_enabled():
        return _sum_gated(x, a, b)
    return _record(_GateSumProduct.apply(x, a, b), _sum_gated, (x, a, b))


def gate_max(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``max(x * a, x * b)`` keeping ``x``, ``a`` and ``b`` (not the two products) for backward.

    Args:
        x: ``(N, C, *spatial)``.
        a: broadcastable to ``x``.
        b: broadcastable to ``x``.
    """
    if not lean_enabled() or not torch.is_grad_enabled():
        return _max_gated(x, a, b)
    return _record(_GateMax.apply(x, a, b), _max_gated, (x, a, b))


def channel_gated_pool(x: Tensor, g: Tensor) -> Tensor:
    """CBAM's channel pooling of the channel-gated input, ``[mean_c(x*g), max_c(x*g)]``,
    keeping ``x``, ``g`` and the ``(N, 1, *spatial)`` maximum (not ``x * g``) for backward.

    Args:
        x: ``(N, C, *spatial)``.
        g: channel gate ``(N, C, 1, ..., 1)`` (any shape broadcastable to ``x``).

    Returns:
        ``(N, 2, *spatial)``: channel mean, then channel maximum.
    """
    if not lean_enabled() or not torch.is_grad_enabled():
        refined = x * g
        return torch.cat(
            (refined.mean(dim=1, keepdim=True), refined.amax(dim=1, keepdim=True)), dim=1
        )
    return _ChannelGatedPool.apply(x, g)  # type: ignore[no-any-return]
