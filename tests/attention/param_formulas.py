"""Parameter counts of every registered attention module, as each docstring states them.

``FORMULAS[name](channels, spatial_dims)`` is the count with the registered defaults, written from
the docstring's formula (not from the layers), so ``test_param_counts`` catches a layer that
drifts from its documentation. Every name in ``available()`` must have an entry here.
"""

from __future__ import annotations

from collections.abc import Callable


def _hidden(channels: int, reduction: int, min_channels: int = 4) -> int:
    return max(channels // reduction, min_channels)


def _se(reduction: int) -> Callable[[int, int], int]:
    def count(c: int, dims: int) -> int:
        h = _hidden(c, reduction)
        return 2 * c * h + h + c

    return count


FORMULAS: dict[str, Callable[[int, int], int]] = {
    "se": _se(16),
    "cse": _se(2),
    "sse": lambda c, dims: c + 1,
    "scse": lambda c, dims: _se(2)(c, dims) + c + 1,
    # --- group A (cbam, bam, sk, coord, eca) ---
    # --- group B (gct, srm, fca, rcan, pe, bilinear) ---
    # --- group C (enc, gsop, soca, dia) ---
}
