"""Encoder-decoder segmentation networks taking an ``attention`` name (no Lightning, no I/O)."""

from __future__ import annotations

from segattn.nets.blocks import ConvBlock, ConvNormAct
from segattn.nets.unet import ATTENTION_POSITIONS, UNet

__all__ = ["ATTENTION_POSITIONS", "ConvBlock", "ConvNormAct", "UNet"]
