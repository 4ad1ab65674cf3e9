"""Parameter counts of every registered attention module, as each docstring states them.

``FORMULAS[name](channels, spatial_dims)`` is the count with the registered defaults, written from
the docstring's formula (not from the layers), so ``test_param_counts`` catches a layer that
drifts from its documentation. Every name in ``available()`` must have an entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def _hidden(channels: int, reduction: int, min_channels: int = 4) -> int:
    return max(channels // reduction, min_channels)


def _se(reduction: int) -> Callable[[int, int], int]:
    def count(c: int, dims: int) -> int:
        h = _hidden(c, reduction)
        return 2 * c * h + h + c

    return count


def _eca_k(channels: int) -> int:
    """ECA's adaptive kernel size: int(|(log2 C + 1) / 2|), rounded up to odd."""
    t = int(abs((math.log2(channels) + 1) / 2))
    return t if t % 2 else t + 1


FORMULAS: dict[str, Callable[[int, int], int]] = {
    "se": _se(16),
    "cse": _se(2),
    "sse": lambda c, dims: c + 1,
    "scse": lambda c, dims: _se(2)(c, dims) + c + 1,
    # --- group A (cbam, bam, sk, coord, eca) ---
    "cbam": lambda c, dims: _se(16)(c, dims) + 2 * 7**dims + 1,
    "bam": lambda c, dims: (
        _se(16)(c, dims)
        + c * _hidden(c, 16)
        + 2 * _hidden(c, 16)
        + 2 * (_hidden(c, 16) ** 2 * 3**dims + 2 * _hidden(c, 16))
        + _hidden(c, 16)
        + 1
    ),
    "sk": lambda c, dims: (
        2 * (c * (c // math.gcd(c, 32)) * 3**dims + 2 * c)
        + c * _hidden(c, 16, 32)
        + _hidden(c, 16, 32)
        + 2 * (_hidden(c, 16, 32) * c + c)
    ),
    "coord": lambda c, dims: (
        c * _hidden(c, 32, 8) + 3 * _hidden(c, 32, 8) + dims * (_hidden(c, 32, 8) * c + c)
    ),
    "eca": lambda c, dims: _eca_k(c),
    # --- group B (gct, srm, fca, rcan, pe, bilinear) ---
    "gct": lambda c, dims: 3 * c,
    "srm": lambda c, dims: 4 * c,
    "fca": lambda c, dims: 2 * c * _hidden(c, 16),
    "rcan": _se(16),
    "pe": _se(2),
    "bilinear": lambda c, dims: (
        c * _hidden(c, 16)
        + 3 * _hidden(c, 16)
        + 2 * c * (_hidden(c, 16) * (_hidden(c, 16) + 1) // 2)
        + 6 * c
    ),
    # --- group C (enc, gsop, soca, dia) ---
    "enc": lambda c, dims: 2 * c * c + 3 * c + 32 * c + 3 * 32,
    "gsop": lambda c, dims: (
        5 * c * min(128, _hidden(c, 4))
        + 4 * min(128, _hidden(c, 4)) ** 2
        + 9 * min(128, _hidden(c, 4))
        + c
    ),
    "soca": _se(16),
    "dia": lambda c, dims: 2 * (5 * c * _hidden(c, 4) + _hidden(c, 4) + 4 * c),
}
