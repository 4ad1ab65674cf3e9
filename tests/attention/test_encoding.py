"""enc: EncNet's context encoding -- residual aggregation without (N, M, K, C), factor, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from largest_tensor import LargestTensor

from segattn.attention import ContextEncoding, create
from segattn.attention.encoding import SampleNorm, aggregate_residuals


def _naive(x: torch.Tensor, codewords: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The paper's formula with the full (N, M, K, C) residual tensor."""
    feats = x.transpose(1, 2)  # (N, M, C)
    residuals = feats[:, :, None, :] - codewords[None, None]  # (N, M, K, C)
    assign = torch.softmax(scale * residuals.square().sum(-1), dim=2)  # (N, M, K)
    return (assign[..., None] * residuals).sum(1) / x.shape[2]  # (N, K, C)


def test_matmul_aggregation_equals_the_naive_residual_tensor() -> None:
    x = torch.randn(2, 5, 13, dtype=torch.float64)
    codewords = torch.randn(7, 5, dtype=torch.float64)
    scale = -torch.rand(7, dtype=torch.float64)
    torch.testing.assert_close(
        aggregate_residuals(x, codewords, scale), _naive(x, codewords, scale)
    )


def test_module_encoding_equals_the_naive_computation() -> None:
    enc = ContextEncoding(6, spatial_dims=3, num_codes=5).double()
    x = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    z = enc.project(x).flatten(2)
    codes = F.relu(enc.code_norm(_naive(z, enc.codewords, enc.scale)))
    torch.testing.assert_close(enc.encoding(x), codes.mean(1))


def test_no_intermediate_as_large_as_the_residual_tensor() -> None:
    enc = create("enc", 8, 3)  # K = 32
    x = torch.randn(1, 8, 16, 16, 16, requires_grad=True)  # M = 4096
    n, c, m, k = 1, 8, 4096, 32
    with LargestTensor() as rec:
        enc(x).sum().backward()
    assert rec.numel <= n * k * m < n * m * k * c, rec.shape  # the (N, K, M) assignment at most


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_channel_factor_is_constant_over_positions_in_one_to_two(spatial_dims: int) -> None:
    enc = create("enc", 16, spatial_dims).eval()
    x = torch.randn(2, 16, *(9, 10, 11)[:spatial_dims])
    with torch.no_grad():
        factor = enc.channel_factor(x)
        out = enc(x)
    assert factor.shape == (2, 16, *[1] * spatial_dims)
    assert factor.min() > 1.0 and factor.max() < 2.0
    torch.testing.assert_close(out, F.relu(x * factor))
    torch.testing.assert_close(out, F.relu(x) * factor)  # the factor is positive
    assert not hasattr(enc, "gate")
    assert enc.gate_range == (1.0, 2.0) and enc.gate_note


def test_without_relu_forward_is_x_times_factor() -> None:
    enc = create("enc", 8, 2, act="none").eval()
    x = torch.randn(2, 8, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), x * enc.channel_factor(x))
    assert (enc(x) < 0).any()


def test_codeword_sum_is_k_times_mean() -> None:
    mean = create("enc", 8, 2, num_codes=4).eval()
    total = create("enc", 8, 2, num_codes=4, codeword_reduce="sum").eval()
    total.load_state_dict(mean.state_dict())
    x = torch.randn(2, 8, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(total.encoding(x), 4 * mean.encoding(x))


def test_encoding_does_not_scale_with_the_number_of_positions() -> None:
    """Averaging over positions: a patch tiled twice encodes like the patch itself."""
    enc = create("enc", 8, 3).eval()
    x = torch.randn(2, 8, 5, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(
            enc.encoding(torch.cat([x, x], dim=2)), enc.encoding(x), rtol=1e-4, atol=1e-5
        )


def test_encoding_is_recorded_only_when_asked_and_only_in_training() -> None:
    enc = create("enc", 8, 2)
    x = torch.randn(2, 8, 9, 10)
    enc.train()(x)
    assert enc.last_encoding is None  # off by default
    enc.record_encoding = True
    enc(x)
    assert enc.last_encoding is not None and enc.last_encoding.shape == (2, 8)
    torch.testing.assert_close(enc.last_encoding, enc.encoding(x))
    assert enc.last_encoding.requires_grad  # the SE-loss trains through it
    enc.eval()(x)
    assert enc.last_encoding is None


@pytest.mark.parametrize("spatial", [(9, 10, 11), (1, 1, 1)])
def test_one_channel_trains_at_batch_one(spatial: tuple[int, ...]) -> None:
    enc = create("enc", 1, 3).train()
    x = torch.randn(1, 1, *spatial, requires_grad=True)
    enc(x).sum().backward()
    for name, param in enc.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_sample_norm_matches_group_norm() -> None:
    x = torch.randn(2, 6, 5, 4)
    torch.testing.assert_close(SampleNorm(6, start_dim=1)(x), torch.nn.GroupNorm(1, 6)(x))
    e = torch.randn(2, 6, 9)
    torch.testing.assert_close(SampleNorm(6, start_dim=2)(e), torch.nn.GroupNorm(6, 6)(e))


def test_distances_run_in_float32_under_autocast() -> None:
    enc = create("enc", 16, 2).eval()
    x = torch.randn(2, 16, 17, 19)
    with torch.no_grad():
        reference = enc.channel_factor(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            factor = enc.channel_factor(x)
    torch.testing.assert_close(factor.float(), reference, rtol=0, atol=2e-2)


@pytest.mark.parametrize(
    "kwargs", [{"num_codes": 0}, {"codeword_reduce": "max"}, {"act": "gelu"}, {"num_codes": 2.5}]
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        create("enc", 8, 2, **kwargs)
