"""soca: second-order channel attention (SAN) -- meaning, float32 under autocast, memory."""

from __future__ import annotations

import pytest
import torch
from largest_tensor import LargestTensor

from segattn.attention import SecondOrderChannelAttention, create
from segattn.attention.covariance import channel_covariance


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_gate_is_a_channel_gate_in_the_open_unit_interval(spatial_dims: int) -> None:
    soca = create("soca", 16, spatial_dims).eval()
    x = torch.randn(2, 16, *(9, 10, 11)[:spatial_dims])
    with torch.no_grad():
        gate = soca.gate(x)
        out = soca(x)
    assert gate.shape == (2, 16, *[1] * spatial_dims)
    assert gate.min() > 0.0 and gate.max() < 1.0
    torch.testing.assert_close(out, x * gate)


def test_descriptor_is_the_column_mean_of_the_covariance_square_root() -> None:
    soca = SecondOrderChannelAttention(4, iterations=5)
    x = torch.randn(2, 4, 30, 31) * torch.tensor([1.0, 1.5, 2.0, 2.5]).view(1, 4, 1, 1)
    cov = channel_covariance(x).double()
    eig, vec = torch.linalg.eigh(cov)
    root = (vec * eig.sqrt()[:, None, :]) @ vec.transpose(1, 2)
    torch.testing.assert_close(soca.descriptor(x).double(), root.mean(1), rtol=5e-3, atol=5e-3)


def test_gate_sees_second_order_statistics_only() -> None:
    """Unlike SE, shifting channel means or permuting positions leaves the gate unchanged."""
    soca = create("soca", 8, 3).eval()
    x = torch.randn(2, 8, 5, 6, 7)
    shifted = x + torch.randn(1, 8, 1, 1, 1) * 5
    permuted = x.flatten(2)[:, :, torch.randperm(5 * 6 * 7)].view_as(x)
    with torch.no_grad():
        gate = soca.gate(x)
        torch.testing.assert_close(soca.gate(shifted), gate, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(soca.gate(permuted), gate, rtol=1e-4, atol=1e-5)
        # ... but scaling one channel changes the descriptor
        scaled = x.clone()
        scaled[:, 0] *= 3.0
        assert not torch.allclose(soca.descriptor(scaled), soca.descriptor(x), atol=1e-3)


def test_second_order_path_runs_in_float32_under_autocast() -> None:
    soca = create("soca", 16, 2).eval()
    x = torch.randn(2, 16, 17, 19).bfloat16()
    with torch.no_grad():
        reference = soca.gate(x.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            descriptor = soca.descriptor(x)
            gate = soca.gate(x)
            out = soca(x)
    assert descriptor.dtype == torch.float32
    torch.testing.assert_close(descriptor, soca.descriptor(x.float()))  # bit for bit
    torch.testing.assert_close(gate.float(), reference, rtol=0, atol=2e-2)  # bf16 linear layers
    assert out.dtype == torch.bfloat16


def test_memory_does_not_grow_with_positions_squared() -> None:
    soca = create("soca", 8, 3)
    x = torch.randn(1, 8, 16, 16, 16, requires_grad=True)  # M = 4096
    with LargestTensor() as rec:
        soca(x).sum().backward()
    assert rec.numel <= 2 * x.numel(), rec.shape


def test_single_position_trains() -> None:
    soca = create("soca", 8, 3).train()
    x = torch.randn(1, 8, 1, 1, 1, requires_grad=True)
    soca(x).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in soca.parameters() if p.grad is not None)
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "kwargs", [{"iterations": 0}, {"reduction": 0}, {"min_channels": 0}, {"act": "nope"}]
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        create("soca", 8, 2, **kwargs)
