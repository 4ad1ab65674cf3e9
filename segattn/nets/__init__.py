"""Segmentation networks by name, each taking an ``attention`` name (no Lightning, no I/O).

``segattn.nets.available()`` lists ``fcdensenet``, ``quicknat``, ``sdnet`` and ``unet``;
``segattn.nets.create(name, spatial_dims, in_channels, num_classes, attention=None,
attention_kwargs=None, **options)`` builds one. Every network has ``attention_modules()`` (one
module per block, forward order, keys ``encoder.<i>``, ``bottleneck``, ``decoder.<j>``) and a
``config`` that rebuilds it.
"""

from __future__ import annotations

from segattn.nets.base import SegmentationNet
from segattn.nets.blocks import ConvBlock, ConvNormAct
from segattn.nets.dense import DenseLayers, QuickNATDenseBlock
from segattn.nets.fcdensenet import FCDenseNet
from segattn.nets.quicknat import QuickNAT
from segattn.nets.registry import NetInfo, available, create, info, register
from segattn.nets.sdnet import SDNet
from segattn.nets.unet import ATTENTION_POSITIONS, UNet

__all__ = [
    "ATTENTION_POSITIONS",
    "ConvBlock",
    "ConvNormAct",
    "DenseLayers",
    "FCDenseNet",
    "NetInfo",
    "QuickNAT",
    "QuickNATDenseBlock",
    "SDNet",
    "SegmentationNet",
    "UNet",
    "available",
    "create",
    "info",
    "register",
]
