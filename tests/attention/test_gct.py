"""Meaning of gct: identity at initialisation, the paper's formula, range, weight-decay helper."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from segattn.attention import GatedChannelTransform, create

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def randomise(module: GatedChannelTransform) -> GatedChannelTransform:
    """Moderate random parameters so the gate is not the identity."""
    with torch.no_grad():
        module.alpha.uniform_(0.5, 1.5)
        module.gamma.normal_(0.0, 1.0)
        module.beta.normal_(0.0, 0.5)
    return module


def reference_gate(x: Tensor, module: GatedChannelTransform, eps: float = 1e-5) -> Tensor:
    """Independent l2 GCT: flatten all spatial axes, the formulas of Yang et al. (Eq. 1-3)."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1).double()
    alpha, gamma, beta = (p.detach().double() for p in (module.alpha, module.gamma, module.beta))
    s = alpha * torch.sqrt((flat**2).sum(-1) + eps)
    norm = gamma * torch.rsqrt((s**2).mean(1, keepdim=True) + eps)
    return (1 + torch.tanh(s * norm + beta)).float()


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("mode", ["l2", "l1"])
def test_identity_at_initialisation(spatial_dims: int, mode: str) -> None:
    module = GatedChannelTransform(8, spatial_dims, mode=mode)
    x = 3 * torch.randn(2, 8, *SPATIAL[spatial_dims])
    assert torch.equal(module(x), x)
    assert torch.equal(module.gate(x), torch.ones(2, 8, *[1] * spatial_dims))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_matches_the_papers_formula(spatial_dims: int) -> None:
    module = randomise(GatedChannelTransform(8, spatial_dims))
    x = torch.randn(2, 8, *SPATIAL[spatial_dims]) * torch.rand(1, 8, *[1] * spatial_dims) * 3
    expected = reference_gate(x, module).view(2, 8, *[1] * spatial_dims)
    torch.testing.assert_close(module.gate(x), expected)
    torch.testing.assert_close(module(x), x * expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("mode", ["l2", "l1"])
def test_channel_gate_is_constant_over_positions_and_in_0_2(spatial_dims: int, mode: str) -> None:
    module = randomise(GatedChannelTransform(16, spatial_dims, mode=mode))
    x = torch.rand(2, 16, *SPATIAL[spatial_dims]) * torch.rand(1, 16, *[1] * spatial_dims) + 0.1
    gate = module.gate(x)
    assert gate.shape == (2, 16, *[1] * spatial_dims)
    realised = module(x) / x
    torch.testing.assert_close(realised, gate.expand_as(x))
    assert realised.min() > 0 and realised.max() < 2
    assert gate.min() < 1 < gate.max(), "weak test: the gate neither damps nor amplifies"
    torch.testing.assert_close(module.channel_gate(x), gate)


def test_gate_is_invariant_to_the_scale_of_the_input() -> None:
    """The channel normalisation divides out a global scale (up to eps)."""
    module = randomise(GatedChannelTransform(8, 3))
    x = torch.randn(2, 8, 5, 6, 7)
    torch.testing.assert_close(module.gate(10 * x), module.gate(x), rtol=1e-4, atol=1e-4)


def test_embedding_sums_over_every_spatial_axis_in_3d() -> None:
    module = randomise(GatedChannelTransform(8, 3))
    x = torch.randn(2, 8, 5, 6, 7)
    y = x.clone()
    y[:, :4, -1] *= 4.0  # only the last depth slice of half the channels
    assert not torch.allclose(module.gate(x), module.gate(y))


def test_float16_volume_does_not_overflow() -> None:
    """sum(x^2) over 66k voxels of value 2 exceeds float16's range: computed in float32."""
    module = randomise(GatedChannelTransform(4, 3))
    x = torch.full((1, 4, 40, 40, 41), 2.0) * torch.tensor([1.0, 0.5, 1.5, 1.0]).view(1, 4, 1, 1, 1)
    gate16 = module.gate(x.half())
    assert gate16.dtype == torch.float16
    assert torch.isfinite(gate16).all()
    torch.testing.assert_close(gate16.float(), module.gate(x), rtol=1e-3, atol=1e-3)


def test_all_zero_channel_has_finite_gradients() -> None:
    """A dead (all-zero) channel after a ReLU must not give NaN gradients."""
    module = randomise(GatedChannelTransform(4, 2))
    x = torch.randn(1, 4, 9, 11)
    x[:, 0] = 0.0
    x.requires_grad_(True)
    module(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for param in module.parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all()


def test_no_weight_decay_names_the_gating_bias() -> None:
    module = create("gct", 8, 3)
    names = dict(module.named_parameters())
    assert module.no_weight_decay() == {"beta"}
    assert set(module.no_weight_decay()) <= set(names)


@pytest.mark.parametrize("channels", [1, 4, 64])
def test_parameter_count(channels: int) -> None:
    module = GatedChannelTransform(channels, 3)
    assert sum(p.numel() for p in module.parameters()) == 3 * channels


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "l3"}, "l3"), ({"eps": 0}, "eps")])
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GatedChannelTransform(8, 2, **kwargs)  # type: ignore[arg-type]
