"""The contract every registered attention module keeps, driven by ``available()``.

A module registered tomorrow is tested here the day it is registered.
"""

from __future__ import annotations

import pytest
import torch

from segattn.attention import available, create, info

NAMES = available()
#: Odd, non-cubic spatial sizes per ``spatial_dims``.
SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}


def channel_multiple(name: str) -> int:
    """Channels must be a multiple of this (class attribute ``channel_multiple``, default 1)."""
    return int(getattr(info(name).cls, "channel_multiple", 1))


def valid_channels(name: str, channels: int) -> int:
    """The smallest valid channel count >= ``channels`` (e.g. 16 for ``fca`` asked for 4)."""
    m = channel_multiple(name)
    return -(-channels // m) * m


def build(name: str, channels: int, spatial_dims: int) -> torch.nn.Module:
    return create(name, valid_channels(name, channels), spatial_dims)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 4, 8])
@pytest.mark.parametrize("name", NAMES)
def test_shape_is_preserved(name: str, channels: int, spatial_dims: int) -> None:
    module = build(name, channels, spatial_dims)
    x = torch.randn(2, valid_channels(name, channels), *SPATIAL[spatial_dims])
    for mode in (True, False):
        module.train(mode)
        out = module(x)
        assert out.shape == x.shape
        assert out.dtype == x.dtype
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_gate_is_broadcastable_in_range_and_used_by_forward(name: str, spatial_dims: int) -> None:
    module = build(name, 8, spatial_dims).eval()
    if not hasattr(module, "gate"):
        pytest.skip(f"{name} exposes no single multiplicative gate")
    x = torch.randn(2, valid_channels(name, 8), *SPATIAL[spatial_dims])
    with torch.no_grad():
        gate = module.gate(x)
        out = module(x)
    assert gate.ndim == x.ndim
    assert torch.broadcast_shapes(gate.shape, x.shape) == x.shape
    low, high = getattr(module, "gate_range", (0.0, 1.0))
    # sigmoid saturates to exactly 0 or 1 in float32; open-interval claims are checked per module
    assert gate.min() >= low
    assert gate.max() <= high
    torch.testing.assert_close(out, x * gate)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_batch_independent(name: str, spatial_dims: int) -> None:
    module = build(name, 8, spatial_dims).eval()
    x = torch.randn(3, valid_channels(name, 8), *SPATIAL[spatial_dims])
    with torch.no_grad():
        batched = module(x)
        for i in range(x.shape[0]):
            torch.testing.assert_close(batched[i : i + 1], module(x[i : i + 1]))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_batch_size_one_trains(name: str, spatial_dims: int) -> None:
    module = build(name, 4, spatial_dims).train()
    x = torch.randn(1, valid_channels(name, 4), *SPATIAL[spatial_dims], requires_grad=True)
    out = module(x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    for pname, param in module.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {pname}"
    optimiser = torch.optim.SGD(module.parameters(), lr=0.1)
    optimiser.step()
    assert torch.isfinite(module(x)).all()


@pytest.mark.parametrize("bad_channels", [0, -3, 2.5, "8", True])
@pytest.mark.parametrize("name", NAMES)
def test_bad_channels_raise_value_error(name: str, bad_channels: object) -> None:
    with pytest.raises(ValueError, match="channels"):
        create(name, bad_channels, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_dims", [0, 4])
@pytest.mark.parametrize("name", NAMES)
def test_bad_spatial_dims_raise_value_error(name: str, bad_dims: int) -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        create(name, 8, bad_dims)


@pytest.mark.parametrize("name", [n for n in NAMES if channel_multiple(n) > 1])
def test_channel_multiple_is_enforced_with_a_clear_message(name: str) -> None:
    m = channel_multiple(name)
    with pytest.raises(ValueError, match=str(m)):
        create(name, m + 1 if m > 2 else 3, 2)


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_cites_a_paper(name: str) -> None:
    entry = info(name)
    assert entry.paper and entry.url.startswith("https://")


@pytest.mark.parametrize("size", [(1, 1, 1), (2, 2, 2), (1, 3, 1)])
@pytest.mark.parametrize("name", NAMES)
def test_trains_at_batch_one_on_bottleneck_sizes(name: str, size: tuple[int, ...]) -> None:
    """A 3D U-Net bottleneck can be 1-2 voxels wide and train at batch 1."""
    module = build(name, 8, 3).train()
    x = torch.randn(1, valid_channels(name, 8), *size, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), f"{name}: {pname}"
