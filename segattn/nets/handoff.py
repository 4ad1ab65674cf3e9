"""Hand an attention module's output to the next layer without keeping it twice for backward.

In a network with attention, every block ends in ``y = attention(a)``: a new full-size tensor
next to the activation ``a``. The module keeps ``a`` and its small gates for its backward pass
(``a`` is kept by the activation anyway), and the next layer -- a max pool, a transposed or a
head convolution -- would keep ``y`` for its own: one more full-size copy per block, which the
plain network does not have (there the next layer keeps ``a`` itself). The functions here avoid
that copy, for every attention module whose output comes from a product of
:mod:`segattn.attention.lean`:

- :func:`attend` runs the module and returns ``y`` with its recipe (``a`` and the gates);
- :func:`pool` max-pools keeping only the argmax indices (the pool's backward does not read
  ``y``'s values);
- :func:`feed` runs a convolution that keeps the recipe instead of ``y`` and recomputes ``y``
  (one elementwise pass) in its backward pass.

Values and gradients are those of ``layer(attention(a))``. Everything falls back to the plain
layers under :func:`segattn.attention.lean.plain_autograd`, without grad mode, under autocast
(the plain layers cast their inputs), and while ``torch.compile`` traces (the compiled graph
chooses what to keep).

Example:
    >>> import torch
    >>> from segattn.attention import create
    >>> scse, up = create("scse", 8), torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
    >>> a = torch.randn(2, 8, 6, 10, requires_grad=True)
    >>> y, recipe = attend(scse, a)
    >>> torch.allclose(feed(up, y, recipe), up(scse(a)))
    True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segattn.attention.lean import ProductRecipe, call_with_recipe, lean_enabled
from segattn.layers.lean_input import (
    conv_recomputing_input,
    max_pool_indices_only,
    recomputable_conv,
)

__all__ = ["attend", "feed", "pool"]

_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def _lean(y: Tensor) -> bool:
    # under autocast the plain layers cast their inputs and weights; the lean ones do not
    return (
        y.requires_grad
        and lean_enabled()
        and torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled(y.device.type)
    )


def attend(attention: nn.Module, x: Tensor) -> tuple[Tensor, ProductRecipe | None]:
    """``attention(x)`` and the recipe that recomputes it (None when there is none).

    Args:
        attention: any module ``(N, C, *spatial) -> (N, C, *spatial)`` (``nn.Identity`` too).
        x: ``(N, C, *spatial)``.
    """
    return call_with_recipe(attention, x)


def _uniform(value: int | tuple[int, ...]) -> int | None:
    values = {value} if isinstance(value, int) else set(value)
    return values.pop() if len(values) == 1 else None


def pool(layer: nn.Module, y: Tensor) -> Tensor:
    """``layer(y)``; a non-overlapping ``nn.MaxPoolNd`` keeps only its indices for backward.

    Args:
        layer: the pooling layer (any other layer is simply called).
        y: ``(N, C, *spatial)``.
    """
    if isinstance(layer, _MAX_POOLS) and _lean(y):
        kernel = _uniform(layer.kernel_size)
        plain_window = (
            kernel is not None
            and _uniform(layer.stride) == kernel
            and _uniform(layer.padding) == 0
            and _uniform(layer.dilation) == 1
            and not layer.ceil_mode
            and not layer.return_indices
        )
        if plain_window:
            return max_pool_indices_only(y, kernel)  # type: ignore[arg-type]
    return layer(y)  # type: ignore[no-any-return]


def feed(layer: nn.Module, y: Tensor, recipe: ProductRecipe | None) -> Tensor:
    """``layer(y)``; a convolution keeps ``recipe``'s tensors instead of ``y`` for backward.

    Args:
        layer: the layer after the attention module (a convolution benefits; any other layer
            is simply called).
        y: the attention module's output, ``(N, C, *spatial)``.
        recipe: from :func:`attend` for this ``y``, or None.
    """
    if recipe is not None and recomputable_conv(layer) and _lean(y):
        return conv_recomputing_input(y, layer, recipe.compute, recipe.tensors)
    return layer(y)  # type: ignore[no-any-return]
