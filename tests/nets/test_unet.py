"""UNet: shapes on odd sizes, attention placement and count, depths, deep supervision, config."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from torch import Tensor, nn

from segattn.attention import DenseImplicitAttention, SqueezeExcitation, available, info
from segattn.nets import UNet

SPATIAL = {1: (29,), 2: (33, 37), 3: (17, 19, 21)}
TINY = (4, 8, 16)


def tiny(spatial_dims: int = 2, **kwargs: object) -> UNet:
    options: dict[str, object] = {"in_channels": 1, "num_classes": 3, "features": TINY}
    options.update(kwargs)
    return UNet(spatial_dims, **options)  # type: ignore[arg-type]


def as_tensor(out: Tensor | list[Tensor]) -> Tensor:
    assert isinstance(out, Tensor)
    return out


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("attention", [None, "scse"])
def test_output_matches_odd_input_size(spatial_dims: int, attention: str | None) -> None:
    net = tiny(spatial_dims, in_channels=2, attention=attention)
    x = torch.randn(2, 2, *SPATIAL[spatial_dims])
    for mode in (True, False):
        net.train(mode)
        out = as_tensor(net(x))
        assert out.shape == (2, 3, *SPATIAL[spatial_dims])
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", available())
def test_every_registered_attention_fits_every_block(attention: str, spatial_dims: int) -> None:
    # widths rounded up to the module's channel multiple (fca: 16), if it has one
    multiple = int(getattr(info(attention).cls, "channel_multiple", 1))
    features = tuple(-(-f // multiple) * multiple for f in TINY)
    net = tiny(spatial_dims, attention=attention, features=features).eval()
    modules = net.attention_modules()
    assert len(modules) == 2 * len(TINY) - 1
    assert not any(isinstance(m, nn.Identity) for m in modules.values())
    x = torch.randn(1, 1, *SPATIAL[spatial_dims])
    with torch.no_grad():
        assert as_tensor(net(x)).shape == (1, 3, *SPATIAL[spatial_dims])


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        (("encoder",), 2),
        (("bottleneck",), 1),
        (("decoder",), 2),
        (("encoder", "decoder"), 4),
        ("bottleneck", 1),
        ((), 0),
    ],
)
def test_attention_positions_restrict_placement(positions: tuple[str, ...], expected: int) -> None:
    net = tiny(attention="se", attention_positions=positions)
    modules = net.attention_modules()
    assert len(modules) == expected
    for name in modules:
        assert name.split(".")[0] in positions


def test_no_attention_means_no_modules() -> None:
    assert tiny().attention_modules() == {}
    assert tiny(attention="none").attention_modules() == {}


def test_attention_follows_each_block_in_forward_order_and_feeds_the_skip() -> None:
    """Record every attention call: order, width and resolution match the scSE placement."""
    calls: list[tuple[int, tuple[int, ...]]] = []

    class Recorder(nn.Module):
        def __init__(self, channels: int, spatial_dims: int = 2) -> None:
            super().__init__()
            self.channels = channels

        def forward(self, x: Tensor) -> Tensor:
            calls.append((x.shape[1], tuple(x.shape[2:])))
            return x

    net = tiny(attention=Recorder, features=(4, 8, 16, 32))
    assert [m.channels for m in net.attention_modules().values()] == [4, 8, 16, 32, 16, 8, 4]
    net(torch.randn(1, 1, 33, 37))  # odd sizes padded by one voxel before each pooling
    assert calls == [
        (4, (33, 37)),
        (8, (17, 19)),
        (16, (9, 10)),
        (32, (5, 5)),
        (16, (9, 10)),
        (8, (17, 19)),
        (4, (33, 37)),
    ]

    # The recalibrated tensor is the skip: zeroing the first encoder attention output changes the
    # decoder's full-resolution input, even though pooling follows the attention.
    class Zero(nn.Module):
        def __init__(self, channels: int, spatial_dims: int = 2) -> None:
            super().__init__()

        def forward(self, x: Tensor) -> Tensor:
            return torch.zeros_like(x)

    net = tiny(attention=Zero, attention_positions=("encoder",), features=(4, 8)).eval()
    seen: list[Tensor] = []
    net.decoder[-1].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    net(torch.randn(1, 1, 8, 8))
    skip_part = seen[0][:, 4:]  # concat order: [upsampled, skip]
    assert torch.count_nonzero(skip_part) == 0


@pytest.mark.parametrize("features", [(4, 8), (4, 8, 16), (4, 8, 16, 32)])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_depths(features: tuple[int, ...], spatial_dims: int) -> None:
    net = tiny(spatial_dims, features=features, attention="cse").eval()
    assert len(net.encoder) == len(net.decoder) == len(features) - 1
    assert len(net.attention_modules()) == 2 * len(features) - 1
    assert net.size_divisor == 2 ** (len(features) - 1)
    x = torch.randn(2, 1, *SPATIAL[spatial_dims])
    with torch.no_grad():
        assert as_tensor(net(x)).shape == (2, 3, *SPATIAL[spatial_dims])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_deep_supervision_list_in_train_tensor_in_eval(spatial_dims: int) -> None:
    features = (4, 8, 16, 32)
    net = tiny(spatial_dims, features=features, deep_supervision=True)
    spatial = SPATIAL[spatial_dims]
    x = torch.randn(2, 1, *spatial)
    outputs = net.train()(x)
    assert isinstance(outputs, list)
    assert len(outputs) == len(features) - 1
    for level, out in enumerate(outputs):
        expected = tuple(-(-s // 2**level) for s in spatial)
        assert out.shape == (2, 3, *expected)
    sum(o.square().mean() for o in outputs).backward()
    for head in net.aux_heads:
        assert head.weight.grad is not None
    with torch.no_grad():
        full = net.eval()(x)
    assert isinstance(full, Tensor)
    torch.testing.assert_close(full, net.train()(x)[0].detach())


def test_deep_supervision_off_returns_tensor_in_train() -> None:
    net = tiny().train()
    assert isinstance(net(torch.randn(2, 1, 16, 16)), Tensor)
    assert len(net.aux_heads) == 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradients_flow_to_every_parameter(spatial_dims: int) -> None:
    net = tiny(spatial_dims, attention="scse").train()
    x = torch.randn(1, 1, *SPATIAL[spatial_dims])
    target = torch.randint(0, 3, (1, *SPATIAL[spatial_dims]))
    loss = nn.functional.cross_entropy(as_tensor(net(x)), target)
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        if "attention" not in name:
            assert param.grad.abs().sum() > 0, name
    # A single ReLU layer inside a gate may be dead for one sample; the gate as a whole is not.
    for name, module in net.attention_modules().items():
        assert sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None) > 0, name


@pytest.mark.parametrize("norm", ["instance", "batch", "group", "none", None])
@pytest.mark.parametrize("act", ["relu", "leakyrelu", "prelu", "gelu"])
def test_norm_and_act_choices(norm: str | None, act: str) -> None:
    net = tiny(norm=norm, act=act, dropout=0.2)
    out = as_tensor(net.train()(torch.randn(2, 1, 13, 11)))
    assert out.shape == (2, 3, 13, 11)


def test_config_is_json_and_rebuilds_the_same_network() -> None:
    net = tiny(
        3,
        attention="scse",
        attention_kwargs={"aggregation": "max", "reduction": 4},
        attention_positions=("encoder", "decoder"),
        norm="group",
        dropout=0.1,
        deep_supervision=True,
    )
    config = json.loads(json.dumps(net.config))
    rebuilt = UNet(**config)
    assert rebuilt.config == net.config
    assert list(rebuilt.state_dict()) == list(net.state_dict())
    for key, value in net.state_dict().items():
        assert rebuilt.state_dict()[key].shape == value.shape
    rebuilt.load_state_dict(net.state_dict())
    x = torch.randn(1, 1, 9, 10, 11)
    with torch.no_grad():
        torch.testing.assert_close(as_tensor(rebuilt.eval()(x)), as_tensor(net.eval()(x)))


def test_config_is_a_copy() -> None:
    net = tiny(attention="se", attention_kwargs={"reduction": 2})
    config = net.config
    config["attention_kwargs"]["reduction"] = 99
    config["features"].append(64)
    assert net.config["attention_kwargs"] == {"reduction": 2}
    assert net.config["features"] == list(TINY)


def test_class_and_partial_attention() -> None:
    net = tiny(attention=functools.partial(SqueezeExcitation, reduction=1))
    assert all(isinstance(m, SqueezeExcitation) for m in net.attention_modules().values())
    assert [m.hidden for m in net.attention_modules().values()] == [4, 8, 16, 8, 4]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 4},
        {"in_channels": 0},
        {"num_classes": 0},
        {"num_classes": 2.0},
        {"features": ()},
        {"features": (8, 0)},
        {"features": "8,16"},
        {"features": 16},
        {"attention": "sqeeze"},
        {"attention": "se", "attention_kwargs": {"reduction": 0}},
        {"attention": "sqeeze", "attention_positions": ()},
        {"attention_positions": ("encoder", "middle")},
        {"attention_positions": "everywhere"},
        {"norm": "layer"},
        {"act": "tanhh"},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"dropout": "0.1"},
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict[str, object]) -> None:
    options: dict[str, object] = {"spatial_dims": 2, "in_channels": 1, "num_classes": 2}
    options.update(kwargs)
    with pytest.raises(ValueError):
        UNet(**options)  # type: ignore[arg-type]


def test_attention_name_is_validated_even_when_no_position_uses_it() -> None:
    assert tiny(attention="se", attention_positions=()).attention_modules() == {}
    with pytest.raises(ValueError, match="did you mean 'se'"):
        tiny(attention="see", attention_positions=())


def test_bad_attention_kwargs_type() -> None:
    with pytest.raises(TypeError):
        tiny(attention="se", attention_kwargs=[("reduction", 2)])


@pytest.mark.parametrize("shape", [(2, 2, 16, 16), (2, 1, 16, 16, 16), (2, 1, 16)])
def test_wrong_input_raises_value_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected input"):
        tiny()(torch.randn(*shape))


# -- attention modules that share state within a level (dia) --


def _dia_cells(net: UNet) -> list[nn.Module]:
    return [m.cell for m in net.attention_modules().values()]


def test_dia_shares_one_cell_per_level_counted_once() -> None:
    net = tiny(attention="dia")  # levels 4, 8 and the bottleneck 16
    enc, dec = net.encoder_attention, net.decoder_attention
    assert enc[0].cell is dec[1].cell and enc[1].cell is dec[0].cell
    cells = {id(c): c for c in _dia_cells(net)}
    assert len(cells) == len(TINY)
    assert net.bottleneck_attention.cell not in (enc[0].cell, enc[1].cell)
    # shared parameters are listed once: the attention parameters are three cells, not five
    attention_params = sum(p.numel() for n, p in net.named_parameters() if "attention" in n)
    assert attention_params == sum(sum(p.numel() for p in c.parameters()) for c in cells.values())
    names = [n for n, _ in net.named_parameters()]
    assert len(names) == len(set(names)) == len(list(net.parameters()))
    # the recurrent state is neither a buffer nor in the state dict, and none is left over
    net(torch.randn(2, 1, 16, 16))
    assert all(c.state is None for c in cells.values())
    assert not any("state" in key for key in net.state_dict())
    assert list(net.buffers()) == []


def test_dia_state_is_reset_every_forward() -> None:
    net = tiny(attention="dia").eval()
    a, b = torch.randn(2, 1, 16, 20), torch.randn(3, 1, 16, 20)
    with torch.no_grad():
        b_alone = as_tensor(net(b))
        torch.testing.assert_close(as_tensor(net(b)), b_alone)  # two identical passes agree
        net(a)  # another batch (of another size) first ...
        torch.testing.assert_close(as_tensor(net(b)), b_alone)  # ... changes nothing


def test_dia_decoder_gate_depends_on_the_encoder_call_of_its_level() -> None:
    net = tiny(attention="dia").eval()
    seen: dict[str, Tensor] = {}
    net.encoder_attention[0].register_forward_hook(lambda m, args, out: seen.update(enc_in=args[0]))
    net.decoder_attention[-1].register_forward_hook(
        lambda m, args, out: seen.update(dec_in=args[0], dec_out=out)
    )
    with torch.no_grad():
        net(torch.randn(2, 1, 16, 16))
        cell = net.decoder_attention[-1].cell
        cell.reset_state()
        alone = net.decoder_attention[-1](seen["dec_in"])  # the same block without the encoder
        cell.reset_state()
        net.encoder_attention[0](seen["enc_in"])  # replay: encoder step, then decoder step
        replayed = net.decoder_attention[-1](seen["dec_in"])
    torch.testing.assert_close(replayed, seen["dec_out"])
    assert not torch.allclose(alone, seen["dec_out"], atol=1e-4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dia_unet_is_batch_independent_in_eval(spatial_dims: int) -> None:
    net = tiny(spatial_dims, attention="dia").eval()
    x = torch.randn(3, 1, *SPATIAL[spatial_dims])
    with torch.no_grad():
        batched = as_tensor(net(x))
        for i in range(3):
            torch.testing.assert_close(batched[i : i + 1], as_tensor(net(x[i : i + 1])))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dia_unet_trains_one_step(spatial_dims: int) -> None:
    net = tiny(spatial_dims, attention="dia").train()
    x = torch.randn(1, 1, *SPATIAL[spatial_dims])
    target = torch.randint(0, 3, (1, *SPATIAL[spatial_dims]))
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    loss = nn.functional.cross_entropy(as_tensor(net(x)), target)
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    # both modules of a level feed gradients into the one cell they share
    optimiser.step()
    changed = [n for n, p in net.named_parameters() if not torch.equal(p, before[n])]
    assert any("attention" in n for n in changed)
    assert torch.isfinite(as_tensor(net(x))).all()


def test_shared_group_hook_works_for_classes_and_partials() -> None:
    for spec in (DenseImplicitAttention, functools.partial(DenseImplicitAttention, reduction=1)):
        net = tiny(attention=spec)
        assert net.encoder_attention[0].cell is net.decoder_attention[1].cell
    assert net.encoder_attention[1].cell.hidden == 8  # the partial's reduction=1 reached the cell
    net = tiny(attention="dia", attention_kwargs={"reduction": 1})
    assert net.encoder_attention[1].cell.hidden == 8
    # positions without attention get no shared object; the rest still share
    net = tiny(attention="dia", attention_positions=("decoder",))
    assert len(net.attention_modules()) == 2


@pytest.mark.parametrize("attention", ["dia", "enc", "gsop", "soca"])
def test_config_rebuild_with_shared_or_second_order_attention(attention: str) -> None:
    net = tiny(3, attention=attention).eval()
    rebuilt = UNet(**json.loads(json.dumps(net.config)))
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(1, 1, 9, 10, 11)
    with torch.no_grad():
        torch.testing.assert_close(as_tensor(rebuilt.eval()(x)), as_tensor(net(x)))
    if attention == "dia":  # the rebuilt net shares like the original
        assert rebuilt.encoder_attention[0].cell is rebuilt.decoder_attention[-1].cell


def test_attention_module_keys_follow_the_shared_convention() -> None:
    """Keys ``encoder.<i>`` (full resolution first), ``bottleneck``, ``decoder.<j>`` (deepest
    first) map to the submodules that keep their old names (state_dict keys unchanged)."""
    net = tiny(attention="cse")
    modules = net.attention_modules()
    assert list(modules) == [
        "encoder.0",
        "encoder.1",
        "bottleneck",
        "decoder.0",
        "decoder.1",
    ]
    assert modules["encoder.0"] is net.encoder_attention[0]
    assert modules["bottleneck"] is net.bottleneck_attention
    assert modules["decoder.0"] is net.decoder_attention[0]
    assert any(k.startswith("encoder_attention.0.") for k in net.state_dict())


def test_input_padding_keeps_the_earlier_sizes_and_both_schemes_agree_on_even_sizes() -> None:
    sizes: list[tuple[int, ...]] = []

    class Recorder(nn.Module):
        def __init__(self, channels: int, spatial_dims: int = 2) -> None:
            super().__init__()

        def forward(self, x: Tensor) -> Tensor:
            sizes.append(tuple(x.shape[2:]))
            return x

    net = tiny(attention=Recorder, features=(4, 8, 16, 32), padding="input").eval()
    assert net.config["padding"] == "input"
    with torch.no_grad():
        out = net(torch.randn(1, 1, 33, 37))
    assert out.shape[2:] == (33, 37)
    assert sizes == [(40, 40), (20, 20), (10, 10), (5, 5), (10, 10), (20, 20), (40, 40)]
    x = torch.randn(2, 1, 16, 24)  # divisible by 8: no padding in either scheme
    with torch.no_grad():
        level = net(x)
        net.padding = "level"
        assert net.config["padding"] == "level"
        assert torch.equal(net(x), level)
    with pytest.raises(ValueError):
        net.padding = "replicate"
    with pytest.raises(ValueError):
        tiny(padding="ceil")


def test_level_padding_is_ceil_mode_pooling() -> None:
    """The skip keeps the odd size; the pooled level is the ceil-mode max pool of it."""
    net = tiny(attention=None, features=(4, 8)).eval()
    seen: dict[str, Tensor] = {}
    net.encoder[0].register_forward_hook(lambda m, a, out: seen.__setitem__("skip", out))
    net.bottleneck.register_forward_hook(lambda m, a, out: seen.__setitem__("down", a[0]))
    with torch.no_grad():
        net(torch.randn(1, 1, 7, 9))
    expected = torch.nn.functional.max_pool2d(seen["skip"], 2, ceil_mode=True)
    assert seen["down"].shape[2:] == (4, 5)
    assert torch.equal(seen["down"], expected)
