"""The U-Net hands attention outputs to the next layer without keeping them twice: same values
and gradients as the plain composition, and (issue 14) a U-Net with scSE keeps at most 1.10x
the plain U-Net's bytes for backward."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from segattn.attention import create
from segattn.attention.lean import call_with_recipe, gate_product, plain_autograd
from segattn.layers import SavedTensorMeter
from segattn.nets import UNet
from segattn.nets.base import crop_to, pad_to_multiple
from segattn.nets.handoff import attend, feed, pool

SHAPES = {2: (2, 1, 33, 37), 3: (2, 1, 9, 11, 13)}
ACTS = ("relu", "leakyrelu", "prelu", "gelu", "silu", "elu", "none")


def composed_forward(net: UNet, x: Tensor) -> Tensor | list[Tensor]:
    """The U-Net's forward written as plain calls ``layer(attention(block(x)))``."""
    spatial = tuple(x.shape[2:])
    skips = []
    for block, attention in zip(net.encoder, net.encoder_attention, strict=True):
        x = attention(block(x))
        skips.append(x)
        x = net.pool(pad_to_multiple(x, 2))
    x = net.bottleneck_attention(net.bottleneck(x))
    decoded = []
    for up, block, attention, skip in zip(
        net.upsample, net.decoder, net.decoder_attention, reversed(skips), strict=True
    ):
        x = attention(block(torch.cat([crop_to(up(x), tuple(skip.shape[2:])), skip], dim=1)))
        decoded.append(x)
    logits = crop_to(net.head(x), spatial, 1)
    if not net.deep_supervision:
        return logits
    aux = [crop_to(h(decoded[-1 - i]), spatial, 2**i) for i, h in enumerate(net.aux_heads, 1)]
    return [logits, *aux]


def run(net: UNet, x: Tensor, forward: str) -> tuple[list[Tensor], list[Tensor], int]:
    """Outputs, gradients (input, then every parameter) and bytes saved for backward."""
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    with SavedTensorMeter(exclude=[net]) as meter:
        if forward == "plain":
            with plain_autograd():
                out = net(x)
        else:
            out = composed_forward(net, x) if forward == "composed" else net(x)
    outs = out if isinstance(out, list) else [out]
    generator = torch.Generator().manual_seed(1)
    sum((o * torch.randn(o.shape, generator=generator)).sum() for o in outs).backward()
    grads = [x.grad, *[p.grad for p in net.parameters()]]
    return [o.detach() for o in outs], grads, meter.total_bytes


def assert_same(a: list[Tensor], b: list[Tensor]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("act", ACTS)
def test_scse_unet_equals_plain_for_every_activation(spatial_dims: int, act: str) -> None:
    net = UNet(spatial_dims, 1, 3, features=(4, 8, 16), attention="scse", act=act).train()
    x = torch.randn(SHAPES[spatial_dims])
    # against the plain expressions in float64: scSE's fused backward sums in another order, and
    # float32 rounding differences of ~1e-7 grow through the network to ~1e-6
    for dtype, reference in ((torch.float32, "composed"), (torch.float64, "plain")):
        net, x = net.to(dtype), x.to(dtype)
        out, grads, saved = run(net, x, "lean")
        ref_out, ref_grads, ref_saved = run(net, x, reference)
        assert_same(out, ref_out)
        assert_same(grads, ref_grads)
        assert saved < ref_saved
    assert run(net, x, "lean")[0][0].equal(out[0])  # deterministic


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("attention", ["cse", "sse", "eca", "cbam", "coord", "bam", "sk", "enc"])
def test_other_modules_equal_the_composed_forward(spatial_dims: int, attention: str) -> None:
    net = UNet(spatial_dims, 1, 3, features=(8, 16), attention=attention).train()
    x = torch.randn(SHAPES[spatial_dims])
    out, grads, saved = run(net, x, "lean")
    ref_out, ref_grads, ref_saved = run(net, x, "composed")
    assert_same(out, ref_out)
    assert_same(grads, ref_grads)
    assert saved <= ref_saved


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_deep_supervision_heads_recompute_too(spatial_dims: int) -> None:
    net = UNet(
        spatial_dims, 1, 3, features=(4, 8, 16), attention="scse", deep_supervision=True
    ).train()
    x = torch.randn(SHAPES[spatial_dims])
    out, grads, saved = run(net, x, "lean")
    ref_out, ref_grads, ref_saved = run(net, x, "composed")
    assert len(out) == 2
    assert_same(out, ref_out)
    assert_same(grads, ref_grads)
    assert saved < ref_saved


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("attention", "bound"), [("scse", 1.10), ("cse", 1.10)])
def test_saved_bytes_ratio_to_the_plain_unet(spatial_dims: int, attention: str, bound: float):
    # issue 14: U-Net + scSE keeps at most 1.10x the plain U-Net's bytes for backward
    shape = (2, 1, 64, 64) if spatial_dims == 2 else (1, 1, 24, 24, 24)
    features = (8, 16, 32, 64)
    x = torch.randn(shape)
    plain_net = UNet(spatial_dims, 1, 4, features=features).train()
    attention_net = UNet(spatial_dims, 1, 4, features=features, attention=attention).train()
    base = run(plain_net, x, "lean")[2]
    ratio = run(attention_net, x, "lean")[2] / base
    assert ratio <= bound
    # the meter sees what the handoff keeps: without it, the output copies come back
    assert run(attention_net, x, "composed")[2] / base > ratio + 0.1
    # ... and so do the plain autograd expressions (1.19x for cSE, 1.39x for scSE)
    assert run(attention_net, x, "plain")[2] / run(plain_net, x, "plain")[2] > 1.15


def test_plain_autograd_and_no_grad_use_the_plain_layers() -> None:
    scse, up = create("scse", 4), nn.ConvTranspose2d(4, 2, 2, stride=2)
    a = torch.randn(2, 4, 6, 10, requires_grad=True)
    with plain_autograd():
        y, recipe = attend(scse, a)
        assert recipe is None
        assert type(pool(nn.MaxPool2d(2), y).grad_fn).__name__.startswith("MaxPool2D")
    y, recipe = attend(scse, a)
    assert recipe is not None
    assert type(feed(up, y, recipe).grad_fn).__name__ == "_ConvRecomputingInputBackward"
    assert type(pool(nn.MaxPool2d(2), y).grad_fn).__name__ == "_MaxPoolIndicesOnlyBackward"
    with torch.no_grad():
        assert attend(scse, a)[1] is None
        assert feed(up, y, recipe).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert feed(up, y, recipe).dtype == torch.bfloat16  # the plain, autocast layer


def test_unet_trains_under_bf16_autocast() -> None:
    net = UNet(2, 1, 3, features=(4, 8, 16), attention="scse").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 1, 33, 37))
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())


def test_recipe_only_for_the_products_own_output() -> None:
    a = torch.randn(2, 4, 6, 10, requires_grad=True)
    g = torch.rand(2, 4, 1, 1)
    y, recipe = call_with_recipe(lambda t: gate_product(t, g), a)
    assert recipe is not None and torch.equal(recipe.recompute(), y)
    # a view or a sum of the product is not the product: no recipe
    assert call_with_recipe(lambda t: gate_product(t, g)[:, :2], a)[1] is None
    assert call_with_recipe(lambda t: gate_product(t, g) + t, a)[1] is None
    assert call_with_recipe(nn.Identity(), a)[1] is None
    # overlapping pools are left to nn.MaxPool2d
    overlapping = nn.MaxPool2d(3, stride=2)
    assert torch.equal(pool(overlapping, y), overlapping(y))


@pytest.mark.slow  # compiling takes about 10 s
def test_compiled_unet_gives_the_eager_values() -> None:
    # while torch.compile traces, the handoff steps aside (the compiled graph chooses what to
    # keep); the compiled network must still give the eager outputs and gradients
    net = UNet(2, 1, 3, features=(4, 8), attention="scse").train()
    x = torch.randn(2, 1, 12, 10)
    out, grads, _ = run(net, x, "lean")
    torch._dynamo.reset()  # shapes seen by earlier compiled tests must not make this one dynamic
    compiled = torch.compile(net, dynamic=False)
    net.zero_grad(set_to_none=True)
    x_compiled = x.clone().requires_grad_(True)
    compiled_out = compiled(x_compiled)
    generator = torch.Generator().manual_seed(1)
    (compiled_out * torch.randn(compiled_out.shape, generator=generator)).sum().backward()
    torch.testing.assert_close(compiled_out.detach(), out[0], rtol=1e-5, atol=1e-5)
    compiled_grads = [x_compiled.grad, *[p.grad for p in net.parameters()]]
    for u, v in zip(compiled_grads, grads, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-5 * float(v.abs().max()))
