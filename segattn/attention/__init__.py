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

from segattn.attention.bam import BottleneckAttention
from segattn.attention.bilinear import BilinearAttention
from segattn.attention.cbam import ConvolutionalBlockAttention
from segattn.attention.coordinate import CoordinateAttention
from segattn.attention.dia import DenseImplicitAttention, DIACell
from segattn.attention.eca import EfficientChannelAttention
from segattn.attention.encoding import ContextEncoding
from segattn.attention.fca import FrequencyChannelAttention
from segattn.attention.gct import GatedChannelTransform
from segattn.attention.gsop import GlobalSecondOrderPooling
from segattn.attention.project_excite import ProjectExcite
from segattn.attention.registry import (
    AttentionInfo,
    AttentionSpec,
    available,
    create,
    info,
    register,
)
from segattn.attention.scse import ChannelSpatialSqueezeExcitation
from segattn.attention.selective_kernel import SelectiveKernel
from segattn.attention.soca import SecondOrderChannelAttention
from segattn.attention.spatial_se import SpatialSqueezeExcitation
from segattn.attention.squeeze_excitation import SqueezeExcitation
from segattn.attention.srm import StyleRecalibration

__all__ = [
    "AttentionInfo",
    "AttentionSpec",
    "BilinearAttention",
    "BottleneckAttention",
    "ChannelSpatialSqueezeExcitation",
    "ContextEncoding",
    "ConvolutionalBlockAttention",
    "CoordinateAttention",
    "DIACell",
    "DenseImplicitAttention",
    "EfficientChannelAttention",
    "FrequencyChannelAttention",
    "GatedChannelTransform",
    "GlobalSecondOrderPooling",
    "ProjectExcite",
    "SecondOrderChannelAttention",
    "SelectiveKernel",
    "SpatialSqueezeExcitation",
    "SqueezeExcitation",
    "StyleRecalibration",
    "available",
    "create",
    "info",
    "register",
]
