"""gsop: global second-order pooling channel attention -- meaning, row-wise conv, batch 1."""

from __future__ import annotations

import pytest
import torch
from largest_tensor import LargestTensor

from segattn.attention import GlobalSecondOrderPooling, create


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_gate_is_a_channel_gate_in_the_open_unit_interval(spatial_dims: int) -> None:
    gsop = create("gsop", 16, spatial_dims).eval()
    x = torch.randn(2, 16, *(9, 10, 11)[:spatial_dims])
    with torch.no_grad():
        gate = gsop.gate(x)
        out = gsop(x)
    assert gate.shape == (2, 16, *[1] * spatial_dims)
    assert gate.min() > 0.0 and gate.max() < 1.0
    torch.testing.assert_close(out, x * gate)


@pytest.mark.parametrize(
    ("channels", "kwargs", "dim"),
    [
        (1, {}, 4),
        (16, {}, 4),
        (64, {}, 16),
        (256, {}, 64),
        (1024, {}, 128),
        (64, {"dim": 128}, 128),
    ],
)
def test_reduced_width(channels: int, kwargs: dict, dim: int) -> None:
    assert GlobalSecondOrderPooling(channels, **kwargs).dim == dim


def test_row_conv_treats_every_covariance_row_separately() -> None:
    gsop = GlobalSecondOrderPooling(32)  # d = 8
    d = gsop.dim
    cov = torch.randn(1, d, d, 1)
    changed = cov.clone()
    changed[0, 3] += 1.0  # row 3 only
    with torch.no_grad():
        diff = (gsop.row_conv(changed) - gsop.row_conv(cov)).flatten()
    assert diff.shape == (4 * d,)
    assert torch.count_nonzero(diff[12:16]) == 4
    assert torch.count_nonzero(torch.cat([diff[:12], diff[16:]])) == 0


def test_gate_reads_the_covariance_of_the_reduced_features() -> None:
    gsop = create("gsop", 8, 2).eval()
    x = torch.randn(2, 8, 9, 10)
    with torch.no_grad():
        z = gsop.act(gsop.norm(gsop.reduce(x))).flatten(2)
        zc = z - z.mean(2, keepdim=True)
        torch.testing.assert_close(gsop.covariance(x), zc @ zc.transpose(1, 2) / z.shape[2])
        # positions are a set: permuting them changes nothing
        permuted = x.flatten(2)[:, :, torch.randperm(90)].view_as(x)
        torch.testing.assert_close(gsop.gate(permuted), gsop.gate(x), rtol=1e-4, atol=1e-5)


def test_default_is_batch_independent_in_training_too_but_row_batchnorm_is_not() -> None:
    x = torch.randn(3, 8, 9, 10)
    gsop = create("gsop", 8, 2).train()
    with torch.no_grad():
        batched = gsop(x)
        for i in range(3):
            torch.testing.assert_close(batched[i : i + 1], gsop(x[i : i + 1]))
    authors = create("gsop", 8, 2, row_norm="batch").train()
    with torch.no_grad():
        assert not torch.allclose(authors(x)[:1], authors(x[:1]), atol=1e-5)


@pytest.mark.parametrize("row_norm", ["group", "batch", "none"])
@pytest.mark.parametrize("spatial", [(7, 8, 9), (1, 1, 1)])
def test_batch_size_one_trains_in_3d(row_norm: str, spatial: tuple[int, ...]) -> None:
    gsop = create("gsop", 8, 3, row_norm=row_norm).train()
    x = torch.randn(1, 8, *spatial, requires_grad=True)
    (gsop(x) * torch.randn(1, 8, *spatial)).sum().backward()
    for name, param in gsop.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_covariance_is_float32_under_autocast() -> None:
    gsop = create("gsop", 16, 2).eval()
    x = torch.randn(2, 16, 17, 19)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cov = gsop.covariance(x)
        out = gsop(x)
    assert cov.dtype == torch.float32
    assert torch.isfinite(out).all()
    with torch.no_grad():
        torch.testing.assert_close(out, gsop(x), rtol=0.05, atol=0.05)


def test_memory_does_not_grow_with_positions_squared() -> None:
    gsop = create("gsop", 8, 3)
    x = torch.randn(1, 8, 16, 16, 16, requires_grad=True)  # M = 4096, d = 4
    with LargestTensor() as rec:
        gsop(x).sum().backward()
    assert rec.numel <= 2 * x.numel(), rec.shape


@pytest.mark.parametrize(
    "kwargs",
    [
        {"row_norm": "layer"},
        {"norm": "nope"},
        {"dim": 0},
        {"reduction": 0},
        {"max_channels": 2, "min_channels": 4},
    ],
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        create("gsop", 8, 2, **kwargs)
