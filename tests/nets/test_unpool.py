"""Index unpooling (SD-Net, QuickNAT): equal to ``nn.MaxUnpoolNd``, and deterministic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segattn.nets.unpool import IndexedPool, IndexedUnpool

SIZES = {1: (6,), 2: (6, 4), 3: (6, 4, 8)}


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_unpool_equals_max_unpool(spatial_dims: int) -> None:
    x = torch.randn(2, 3, *SIZES[spatial_dims])
    pooled, indices = IndexedPool(spatial_dims)(x)
    size = tuple(x.shape[2:])
    reference = (nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)[spatial_dims - 1](2, 2)
    expected = reference(pooled, indices, output_size=size)
    assert torch.equal(IndexedUnpool(spatial_dims)(pooled, indices, size), expected)
    # every pooled maximum is back at its own position, the rest is zero
    unpooled = IndexedUnpool(spatial_dims)(pooled, indices, size)
    assert int((unpooled != 0).sum()) == pooled.numel()
    assert torch.equal(unpooled[unpooled != 0], x[unpooled != 0])


def test_unpool_trains_under_deterministic_algorithms() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        x = torch.randn(2, 3, 6, 4, 8, requires_grad=True)
        pooled, indices = IndexedPool(3)(x)
        out = IndexedUnpool(3)(pooled * 2, indices, tuple(x.shape[2:]))
        out.sum().backward()
        assert x.grad is not None
        # d(sum)/dx is 2 at each window's argmax and 0 elsewhere
        assert torch.equal(x.grad, (out != 0).float() * 2)
    finally:
        torch.use_deterministic_algorithms(before)
