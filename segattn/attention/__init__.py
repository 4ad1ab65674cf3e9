"""Channel and spatial attention modules for ``(N, C, *spatial)`` tensors, created by name.

>>> import torch
>>> from segattn import attention
>>> att = attention.create("scse", channels=8, spatial_dims=3, aggregation="max")
>>> att(torch.randn(2, 8, 17, 19, 21)).shape
torch.Size([2, 8, 17, 19, 21])

To add a mechanism: write one file here whose class is decorated with ``@register("name")`` and
import that file below; ``available()`` then lists it and the registry-driven tests cover it.
"""

from __future__ import annotations

from segattn.attention.registry import (
    AttentionInfo,
    AttentionSpec,
    available,
    create,
    info,
    register,
)
from segattn.attention.scse import ChannelSpatialSqueezeExcitation
from segattn.attention.spatial_se import SpatialSqueezeExcitation
from segattn.attention.squeeze_excitation import SqueezeExcitation

__all__ = [
    "AttentionInfo",
    "AttentionSpec",
    "ChannelSpatialSqueezeExcitation",
    "SpatialSqueezeExcitation",
    "SqueezeExcitation",
    "available",
    "create",
    "info",
    "register",
]
