"""``rcan`` is SE with reduction 16 (RCAN's CALayer: 1x1 convolutions on the pooled tensor)."""

from __future__ import annotations

import pytest
import torch
from test_squeeze_excitation import reference_se

from segattn.attention import SqueezeExcitation, create, info

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_rcan_is_se_with_reduction_16(spatial_dims: int) -> None:
    module = create("rcan", 64, spatial_dims)
    assert isinstance(module, SqueezeExcitation)
    assert module.hidden == 64 // 16
    assert info("rcan").paper.startswith("Zhang")
    x = torch.randn(2, 64, *SPATIAL[spatial_dims]) + 2 * torch.randn(2, 64, *[1] * spatial_dims)
    torch.testing.assert_close(module(x), reference_se(x, module))


def test_rcan_weights_load_from_the_conv_layout() -> None:
    """RCAN stores (h, C, 1, 1) conv weights: the same numbers as our (h, C) linear weights."""
    module = create("rcan", 32, 2)
    conv1 = torch.nn.Conv2d(32, 4, 1)
    conv2 = torch.nn.Conv2d(4, 32, 1)
    with torch.no_grad():
        module.mlp.fc1.weight.copy_(conv1.weight.flatten(1))
        module.mlp.fc1.bias.copy_(conv1.bias)
        module.mlp.fc2.weight.copy_(conv2.weight.flatten(1))
        module.mlp.fc2.bias.copy_(conv2.bias)
    x = torch.randn(2, 32, 9, 11)
    pooled = x.mean((-2, -1), keepdim=True)
    expected = x * torch.sigmoid(conv2(torch.relu(conv1(pooled))))
    torch.testing.assert_close(module(x), expected)
