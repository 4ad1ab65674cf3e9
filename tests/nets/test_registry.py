"""Every registered network x every attention name: build, train a step at batch 1 in 2D and 3D,
odd sizes back at the input size, one distinct attention module per block, config rebuilds."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from segattn import nets
from segattn.attention import available as attention_names
from segattn.attention import info as attention_info

SPATIAL = {2: (13, 11), 3: (7, 6, 5)}  # odd, non-cubic, padded to multiples of 4

# tiny widths per network; every width a multiple of 16 (fca needs it); depth 2 keeps 3D cheap
TINY: dict[str, dict[str, Any]] = {
    "unet": {"features": [16, 32, 32]},
    "sdnet": {"features": 16, "kernel_size": 3, "depth": 2},
    "quicknat": {"features": 16, "kernel_size": 3, "depth": 2},
    "fcdensenet": {
        "growth_rate": 16,
        "down_layers": [1, 1],
        "bottleneck_layers": 1,
        "stem_features": 16,
    },
}
BLOCKS = {"unet": 5, "sdnet": 5, "quicknat": 5, "fcdensenet": 5}
KEYS = ["encoder.0", "encoder.1", "bottleneck", "decoder.0", "decoder.1"]


def test_registry_names() -> None:
    assert nets.available() == ["fcdensenet", "quicknat", "sdnet", "unet"]
    assert set(TINY) == set(nets.available())  # a new network must be added to these tests


def build(name: str, spatial_dims: int, attention: str | None, **extra: Any) -> nn.Module:
    return nets.create(name, spatial_dims, 2, 3, attention=attention, **{**TINY[name], **extra})


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", attention_names())
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_net_with_every_attention_trains_a_step(
    name: str, attention: str, spatial_dims: int
) -> None:
    assert int(getattr(attention_info(attention).cls, "channel_multiple", 1)) <= 16
    net = build(name, spatial_dims, attention)
    modules = net.attention_modules()
    assert list(modules) == KEYS
    assert len({id(m) for m in modules.values()}) == BLOCKS[name]  # never a shared instance
    assert not any(isinstance(m, nn.Identity) for m in modules.values())
    x = torch.randn(1, 2, *SPATIAL[spatial_dims])
    target = torch.randint(0, 3, (1, *SPATIAL[spatial_dims]))
    net.train()
    out = net(x)
    assert out.shape == (1, 3, *SPATIAL[spatial_dims])
    loss = nn.functional.cross_entropy(out, target)
    loss.backward()
    assert torch.isfinite(loss)
    before = [p.detach().clone() for p in net.parameters()]
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_is_json_and_rebuilds_the_same_network(name: str) -> None:
    net = build(name, 2, "scse").eval()
    config = json.loads(json.dumps(net.config))
    for rebuilt in (nets.create(name, **config), type(net)(**config)):
        rebuilt.load_state_dict(net.state_dict())  # same architecture: strict load
        rebuilt.eval()
        x = torch.randn(2, 2, 35, 37)
        with torch.no_grad():
            assert torch.allclose(rebuilt(x), net(x))
    assert type(net).net_name == name  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["sdnet", "quicknat", "fcdensenet"])
def test_attention_order_widths_and_resolutions(name: str) -> None:
    """Record every attention call: one per block, encoder -> bottleneck -> decoder, at the
    resolution of its level (input padded to a multiple of 4)."""
    calls: list[tuple[int, tuple[int, ...]]] = []

    class Recorder(nn.Module):
        def __init__(self, channels: int, spatial_dims: int = 2) -> None:
            super().__init__()
            self.channels = channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append((x.shape[1], tuple(x.shape[2:])))
            return x

    net = nets.create(name, 2, 1, 3, attention=Recorder, **TINY[name]).eval()
    with torch.no_grad():
        net(torch.randn(1, 1, 33, 37))  # padded to 36 x 40
    sizes = [(36, 40), (18, 20), (9, 10), (18, 20), (36, 40)]
    assert [c[1] for c in calls] == sizes
    widths = [m.channels for m in net.attention_modules().values()]
    assert [c[0] for c in calls] == widths
    if name == "fcdensenet":  # stem 16, +16 per layer; bottleneck and up blocks: new maps only
        assert widths == [32, 48, 16, 16, 16 + 32 + 16]
    else:
        assert widths == [16] * 5


@pytest.mark.parametrize("name", ["sdnet", "quicknat"])
def test_unpooling_puts_values_back_at_the_pooled_maxima(name: str) -> None:
    """The decoder's unpooled input is zero except where the encoder's pool took its maxima."""
    net = nets.create(name, 2, 1, 2, **TINY[name]).eval()
    pooled: list[tuple[torch.Tensor, torch.Tensor]] = []  # (input, output values)
    unpooled: list[tuple[torch.Tensor, torch.Tensor]] = []  # (input values, output)

    def on_pool(module: nn.Module, args: Any, out: Any) -> None:
        pooled.append((args[0], out[0]))

    def on_unpool(module: nn.Module, args: Any, out: Any) -> None:
        unpooled.append((args[0], out))

    net.pool.register_forward_hook(on_pool)
    net.unpool.register_forward_hook(on_unpool)
    with torch.no_grad():
        net(torch.randn(1, 1, 16, 16))
    # decoder 0 unpools the bottleneck output with the indices of the deepest pooling (encoder 1)
    deep_in, _ = pooled[1]
    values, out = unpooled[0]
    assert out.shape == deep_in.shape == (1, 16, 8, 8)
    # every 2x2 window holds its value at the window's argmax in the pooled tensor, zeros elsewhere
    windows = deep_in.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 16, 4, 4, 4)
    out_windows = out.unfold(2, 2, 2).unfold(3, 2, 2).reshape(1, 16, 4, 4, 4)
    where = windows.argmax(-1, keepdim=True)
    expected = torch.zeros_like(out_windows).scatter_(-1, where, values[..., None])
    assert torch.equal(out_windows, expected)


def test_quicknat_matches_the_authors_parameter_count() -> None:
    """2D, 1 channel, 33 classes, 64 filters, 5x5: the authors' code has 3,517,296 parameters;
    cse (reduction 2) after the nine blocks adds 9 * (64*32 + 32 + 32*64 + 64) = 37,728."""

    def count(net: nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    plain = count(nets.create("quicknat", 2, 1, 33))
    assert abs(plain - 3_517_296) <= 0.01 * 3_517_296
    with_cse = nets.create("quicknat", 2, 1, 33, attention="cse")
    assert len(with_cse.attention_modules()) == 9
    assert count(with_cse) - plain == 9 * (64 * 32 + 32 + 32 * 64 + 64)


@pytest.mark.parametrize(("preset", "millions"), [("fcdensenet67", 3.5), ("fcdensenet103", 9.4)])
def test_fcdensenet_presets_match_the_paper_size(preset: str, millions: float) -> None:
    """The Tiramisu paper's Table 2 (CamVid: 3 channels, 11 classes): 3.5M and 9.4M."""
    net = nets.create("fcdensenet", 2, 3, 11, preset=preset)
    assert abs(sum(p.numel() for p in net.parameters()) / 1e6 - millions) < 0.02 * millions
    assert len(net.down_blocks) == 5
    assert [len(b.layers) for b in net.down_blocks] == list(nets.fcdensenet.PRESETS[preset][1])


def test_bad_options_give_one_clear_line() -> None:
    with pytest.raises(ValueError, match=r"unknown network 'quiknat' \(did you mean 'quicknat'"):
        nets.create("quiknat", 2, 1, 2)
    with pytest.raises(ValueError, match=r"unknown FC-DenseNet preset 'fcdensenet57'.*presets:"):
        nets.create("fcdensenet", 2, 1, 2, preset="fcdensenet57")
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['feature'\]; its options"):
        nets.create("sdnet", 2, 1, 2, feature=8)
    net = nets.create("quicknat", 3, 1, 2, features=8, kernel_size=3)
    with pytest.raises(
        ValueError, match=r"too small for quicknat of depth 4.*at least 2\*\*4 = 16"
    ):
        net(torch.randn(1, 1, 15, 32, 32))
    with pytest.raises(ValueError, match="unknown attention"):
        nets.create("quicknat", 2, 1, 2, attention="scsee")
    with pytest.raises(ValueError, match="dropout"):
        nets.create("quicknat", 2, 1, 2, dropout=1.5)
