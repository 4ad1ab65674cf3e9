"""Dimension-agnostic building blocks: operator lookups by ``spatial_dims`` and small helpers."""

from __future__ import annotations

from segattn.layers.factories import (
    act_layer,
    avg_pool_type,
    check_positive_int,
    check_spatial_dims,
    conv_transpose_type,
    conv_type,
    gate_shape,
    hidden_channels,
    make_divisible,
    max_pool_type,
    norm_layer,
    reduce_dims,
)
from segattn.layers.lean_input import (
    conv_recomputing_input,
    max_pool_indices_only,
    recomputable_conv,
)
from segattn.layers.memory import SavedTensor, SavedTensorMeter
from segattn.layers.mlp import ChannelMLP
from segattn.layers.squeeze import spatial_mean

__all__ = [
    "ChannelMLP",
    "SavedTensor",
    "SavedTensorMeter",
    "act_layer",
    "avg_pool_type",
    "check_positive_int",
    "check_spatial_dims",
    "conv_recomputing_input",
    "conv_transpose_type",
    "conv_type",
    "gate_shape",
    "hidden_channels",
    "make_divisible",
    "max_pool_indices_only",
    "max_pool_type",
    "norm_layer",
    "recomputable_conv",
    "reduce_dims",
    "spatial_mean",
]
