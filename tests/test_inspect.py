"""The attention lens: gates equal independent computations, blocks match, output is kept."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import segattn.nets as nets
from segattn.attention import available
from segattn.attention._gate import ChannelGated, Gated, SpatialGated
from segattn.inspect import attention_hooks, capture_attention, to_image_grid
from segattn.nets import UNet

SIZES = {2: (21, 23), 3: (9, 11, 13)}
NO_GATE = {"sk", "enc"}


def _unet(spatial_dims: int, attention: str | None, **kwargs: Any) -> UNet:
    torch.manual_seed(0)
    return UNet(spatial_dims, 1, 3, features=(16, 32), attention=attention, **kwargs)


def _networks() -> list[str]:
    # the network registry (unet, sdnet, ...) when present, else the U-Net alone
    return list(nets.available()) if hasattr(nets, "available") else ["unet"]


def _build(name: str, spatial_dims: int, attention: str) -> nn.Module:
    if name == "unet":
        return _unet(spatial_dims, attention)
    torch.manual_seed(0)
    return nets.create(name, spatial_dims, 1, 3, attention=attention)  # type: ignore[attr-defined]


def _block_io(net: nn.Module, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Each attention module's (input, output) from plain hooks, independent of the lens."""
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []
    for key, module in net.attention_modules().items():

        def hook(m: nn.Module, args: tuple[Tensor], out: Tensor, key: str = key) -> None:
            seen[key] = (args[0].detach().clone(), out.detach().clone())

        handles.append(module.register_forward_hook(hook))
    net.eval()
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return seen


def _channel(gate: Tensor, ndim: int) -> Tensor:
    return gate.view(*gate.shape, *[1] * (ndim - 2))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sse_map_is_sigmoid_of_the_1x1_conv_of_the_block_input(spatial_dims: int) -> None:
    net = _unet(spatial_dims, "sse")
    x = torch.randn(2, 1, *SIZES[spatial_dims])
    io = _block_io(net, x)
    records = capture_attention(net, x)
    assert [r.block for r in records] == list(net.attention_modules())
    for record in records:
        block_in, _ = io[record.block]
        conv = net.attention_modules()[record.block].conv
        weight = conv.weight.reshape(1, -1, *[1] * spatial_dims)
        expected = torch.sigmoid((block_in * weight).sum(dim=1, keepdim=True) + conv.bias)
        assert record.name == "sse" and record.channel is None
        assert record.spatial is not None
        torch.testing.assert_close(record.spatial, expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", ["cse", "se", "rcan"])
def test_cse_vector_is_the_module_gate_of_the_block_input(
    spatial_dims: int, attention: str
) -> None:
    net = _unet(spatial_dims, attention)
    x = torch.randn(2, 1, *SIZES[spatial_dims])
    io = _block_io(net, x)
    records = capture_attention(net, x)
    for record in records:
        block_in, block_out = io[record.block]
        module = net.attention_modules()[record.block]
        assert record.name == attention and record.spatial is None
        assert record.channel is not None and record.channel.shape == block_in.shape[:2]
        torch.testing.assert_close(record.channel, module.gate(block_in).flatten(1))
        # and it is what the block applied
        torch.testing.assert_close(block_out, block_in * _channel(record.channel, x.ndim))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", sorted(set(available()) - NO_GATE))
def test_recorded_gates_reproduce_each_block_output(spatial_dims: int, attention: str) -> None:
    """The record is the factor applied: out == x * channel * spatial (sum for scse 'add')."""
    if attention == "bam":
        pytest.skip("bam's records are its branches alone; see test_bam_records_the_branches")
    net = _unet(spatial_dims, attention)
    x = torch.randn(2, 1, *SIZES[spatial_dims])
    io = _block_io(net, x)
    for record in capture_attention(net, x):
        block_in, block_out = io[record.block]
        ndim = block_in.ndim
        if record.spatial is not None:
            assert record.spatial.shape[2:] == block_in.shape[2:]
            assert record.spatial.shape[1] in (1, block_in.shape[1])
        if attention == "scse":
            assert record.channel is not None and record.spatial is not None
            factor = _channel(record.channel, ndim) + record.spatial
        else:
            factor = torch.ones(())
            if record.channel is not None:
                factor = factor * _channel(record.channel, ndim)
            if record.spatial is not None:
                factor = factor * record.spatial
        torch.testing.assert_close(block_out, block_in * factor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", sorted(NO_GATE))
def test_modules_without_a_gate_give_empty_records(attention: str) -> None:
    net = _unet(2, attention)
    module = next(iter(net.attention_modules().values()))
    assert not isinstance(module, Gated | ChannelGated | SpatialGated)
    records = capture_attention(net, torch.randn(1, 1, 16, 16))
    assert [r.block for r in records] == list(net.attention_modules())
    assert all(r.spatial is None and r.channel is None and r.name == attention for r in records)


def test_every_gated_module_conforms_to_the_protocol() -> None:
    for name in sorted(set(available()) - NO_GATE):
        module = next(iter(_unet(2, name).attention_modules().values()))
        assert isinstance(module, Gated), name
    for name in ("scse", "cbam", "bam"):
        module = next(iter(_unet(2, name).attention_modules().values()))
        assert isinstance(module, ChannelGated) and isinstance(module, SpatialGated), name


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_bam_records_the_branches(spatial_dims: int) -> None:
    net = _unet(spatial_dims, "bam")
    x = torch.randn(2, 1, *SIZES[spatial_dims])
    io = _block_io(net, x)
    for record in capture_attention(net, x):
        block_in, block_out = io[record.block]
        module = net.attention_modules()[record.block]
        assert record.channel is not None and record.spatial is not None
        m_c = module.channel_attention(block_in)
        m_s = module.spatial_attention(block_in)
        torch.testing.assert_close(record.channel, torch.sigmoid(m_c).flatten(1))
        torch.testing.assert_close(record.spatial, torch.sigmoid(m_s))
        torch.testing.assert_close(block_out, block_in * (1 + torch.sigmoid(m_c + m_s)))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("network", _networks())
def test_blocks_and_shapes_match_every_network(network: str, spatial_dims: int) -> None:
    net = _build(network, spatial_dims, "scse")
    # sizes every network takes (several pool four or five times without padding)
    x = torch.randn(2, 1, *((32, 64) if spatial_dims == 2 else (32, 32, 32)))
    io = _block_io(net, x)
    records = capture_attention(net, x)
    assert [r.block for r in records] == list(net.attention_modules())
    for record in records:
        block_in, _ = io[record.block]
        assert record.name == "scse"
        assert record.spatial is not None and record.channel is not None
        assert record.spatial.shape == (2, 1, *block_in.shape[2:])
        assert record.channel.shape == block_in.shape[:2]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_capturing_leaves_output_modes_and_hooks_unchanged(spatial_dims: int) -> None:
    net = _unet(spatial_dims, "dia")  # shared cells: the hardest case for "no side effect"
    x = torch.randn(2, 1, *SIZES[spatial_dims])
    net.eval()
    with torch.no_grad():
        before = net(x)
        with attention_hooks(net) as records:
            during = net(x)
        after = net(x)
    assert len(records) == len(net.attention_modules())
    torch.testing.assert_close(during, before, rtol=0, atol=0)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    net.train()
    net.decoder.eval()  # a mixed state must come back as it was
    capture_attention(net, x)
    assert net.training and net.encoder.training and not net.decoder.training
    assert all(not m._forward_hooks for m in net.modules())


def test_hooks_are_removed_on_error_and_bad_blocks_raise() -> None:
    net = _unet(2, "scse")
    with pytest.raises(ValueError, match="expected input"):
        capture_attention(net, torch.randn(1, 2, 16, 16))
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(ValueError, match="unknown block"):
        capture_attention(net, torch.randn(1, 1, 16, 16), blocks=["nope"])
    first = next(iter(net.attention_modules()))
    only = capture_attention(net, torch.randn(1, 1, 16, 16), blocks=[first])
    assert [r.block for r in only] == [first]
    with pytest.raises(ValueError, match="attention_modules"):
        capture_attention(nn.Conv2d(1, 1, 1), torch.randn(1, 1, 4, 4))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_to_image_grid_inverts_pooling_of_a_linear_ramp(spatial_dims: int) -> None:
    """A ramp average-pooled by 4 comes back exactly (away from the far edge) on the image grid."""
    size = SIZES[spatial_dims]
    padded = [s + (-s % 4) for s in size]
    coords = torch.arange(padded[0], dtype=torch.float32)
    ramp = coords.view(1, 1, -1, *[1] * (spatial_dims - 1)).expand(1, 1, *padded).contiguous()
    pool = (nn.AvgPool2d, nn.AvgPool3d)[spatial_dims - 2](4)
    up = to_image_grid(pool(ramp), size)
    assert up.shape == (1, 1, *size)
    inner = (slice(None), slice(None), slice(2, size[0] - 2))
    torch.testing.assert_close(up[inner], ramp[(..., *(slice(0, s) for s in size))][inner])
    with pytest.raises(ValueError, match="spatial axes"):
        to_image_grid(torch.rand(1, 1, 4, 4), (8, 8, 8))


def test_to_image_grid_brings_every_block_to_the_image_size() -> None:
    net = _unet(3, "scse")
    x = torch.randn(1, 1, 17, 19, 21)  # three levels below
    for record in capture_attention(net, x):
        assert record.spatial is not None
        up = to_image_grid(record.spatial, x.shape[2:])
        assert up.shape == (1, 1, 17, 19, 21)
        assert up.min() >= record.spatial.min() - 1e-6 and up.max() <= record.spatial.max() + 1e-6
