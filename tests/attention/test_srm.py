"""Meaning of srm: 0.5 at initialisation, style statistics, channel gate, batch-1 norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segattn.attention import StyleRecalibration, create
from segattn.attention.srm import ChannelAffine, style_pool

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def randomise(module: StyleRecalibration) -> StyleRecalibration:
    with torch.no_grad():
        module.cfc.normal_(0.0, 1.0)
        for param in module.norm.parameters():
            param.normal_(0.5, 0.5)
    return module


def styled_input(channels: int, spatial_dims: int, batch: int = 2) -> torch.Tensor:
    """Channels with different means and spreads, so both style statistics matter."""
    shape = (batch, channels, *[1] * spatial_dims)
    return torch.randn(batch, channels, *SPATIAL[spatial_dims]) * (torch.rand(shape) * 2 + 0.1) + (
        torch.randn(shape)
    )


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_gate_is_one_half_at_initialisation(spatial_dims: int, batch: int) -> None:
    module = StyleRecalibration(8, spatial_dims).train()
    x = styled_input(8, spatial_dims, batch)
    assert torch.equal(module.gate(x), torch.full((batch, 8, *[1] * spatial_dims), 0.5))
    torch.testing.assert_close(module(x), 0.5 * x)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_matches_style_pooling_and_integration(spatial_dims: int) -> None:
    module = randomise(StyleRecalibration(8, spatial_dims))
    x = styled_input(8, spatial_dims)
    flat = x.reshape(2, 8, -1).double()
    mu = flat.mean(-1)
    sigma = ((flat - mu[..., None]) ** 2).mean(-1).add(1e-5).sqrt()  # population variance
    cfc = module.cfc.detach().double()
    z = cfc[:, 0] * mu + cfc[:, 1] * sigma
    assert isinstance(module.norm, ChannelAffine)
    z = z * module.norm.weight.detach().double() + module.norm.bias.detach().double()
    expected = torch.sigmoid(z).float().view(2, 8, *[1] * spatial_dims)
    torch.testing.assert_close(module.gate(x), expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_channel_gate_is_constant_over_positions(spatial_dims: int) -> None:
    module = randomise(StyleRecalibration(8, spatial_dims))
    x = torch.rand(2, 8, *SPATIAL[spatial_dims]) * torch.rand(2, 8, *[1] * spatial_dims) + 0.5
    gate = module.gate(x)
    realised = module(x) / x
    torch.testing.assert_close(realised, gate.expand_as(x))
    assert realised.min() > 0 and realised.max() < 1
    assert gate.std() > 0.01, "weak test: the gate ignores its input"
    torch.testing.assert_close(module.channel_gate(x), gate)


def test_gate_depends_on_the_spread_not_only_the_mean() -> None:
    """Same channel means, different standard deviations -> different gates (unlike SE)."""
    module = StyleRecalibration(4, 2)
    with torch.no_grad():
        module.cfc.copy_(torch.tensor([[0.0, 1.0]] * 4))
    x = torch.randn(1, 4, 16, 16)
    x = x - x.mean(dim=(2, 3), keepdim=True)
    assert not torch.allclose(module.gate(x), module.gate(3 * x))


def test_single_position_is_finite_with_gradients() -> None:
    """A 1x1x1 bottleneck: the unbiased variance would be NaN; the population one is 0."""
    mu, sigma = style_pool(torch.randn(1, 4, 1, 1, 1))
    torch.testing.assert_close(sigma, torch.full((1, 4), 1e-5**0.5))
    module = randomise(StyleRecalibration(4, 3)).train()
    x = torch.randn(1, 4, 1, 1, 1, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert module.cfc.grad is not None and torch.isfinite(module.cfc.grad).all()


def test_batch_norm_option_is_the_authors_layer() -> None:
    module = create("srm", 8, 2, norm="batch").train()
    assert isinstance(module.norm, nn.BatchNorm1d)
    assert sum(p.numel() for p in module.parameters()) == 4 * 8
    x = styled_input(8, 2, batch=4)
    module(x).sum().backward()  # trains with batches of 2 or more
    assert module.cfc.grad is not None


@pytest.mark.parametrize("channels", [1, 4, 64])
def test_parameter_count(channels: int) -> None:
    assert sum(p.numel() for p in StyleRecalibration(channels, 3).parameters()) == 4 * channels


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"norm": "group"}, "group"), ({"eps": -1.0}, "eps")]
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StyleRecalibration(8, 2, **kwargs)  # type: ignore[arg-type]
