"""Second-order helpers shared by gsop and soca: covariance without M x M, float32, matrix root."""

from __future__ import annotations

import pytest
import torch
from largest_tensor import LargestTensor

from segattn.attention.covariance import channel_covariance, newton_schulz_sqrt


def _spd(c: int, n: int = 2, condition: float = 4.0) -> torch.Tensor:
    """Random SPD matrices with eigenvalues spread over [1, condition]."""
    q, _ = torch.linalg.qr(torch.randn(n, c, c, dtype=torch.float64))
    eig = torch.linspace(1.0, condition, c, dtype=torch.float64)
    return (q * eig) @ q.transpose(1, 2)


def test_covariance_matches_the_centering_matrix_definition() -> None:
    x = torch.randn(2, 5, 7, 6, 3)
    flat = x.reshape(2, 5, -1).double()
    m = flat.shape[2]
    centering = torch.eye(m, dtype=torch.float64) - torch.full((m, m), 1.0 / m, dtype=torch.float64)
    expected = flat @ centering @ flat.transpose(1, 2) / m  # the authors' M x M formulation
    cov = channel_covariance(x)
    assert cov.dtype == torch.float32
    torch.testing.assert_close(cov.double(), expected, rtol=1e-5, atol=1e-5)


def test_covariance_of_a_single_position_is_zero() -> None:
    assert torch.count_nonzero(channel_covariance(torch.randn(2, 4, 1, 1, 1))) == 0


def test_covariance_is_float32_under_bf16_autocast() -> None:
    x = torch.randn(2, 8, 9, 10).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cov = channel_covariance(x)
    assert cov.dtype == torch.float32
    torch.testing.assert_close(cov, channel_covariance(x.float()))


def test_covariance_memory_does_not_grow_with_positions_squared() -> None:
    x = torch.randn(1, 4, 16, 16, 16, requires_grad=True)  # M = 4096, M^2 = 16.8M
    with LargestTensor() as rec:
        channel_covariance(x).sum().backward()
    assert rec.numel <= 2 * x.numel(), rec.shape


def test_largest_tensor_detector_catches_an_m_by_m_matrix() -> None:
    """The detector used above can fail: the authors' centering-matrix formulation trips it."""
    x = torch.randn(1, 4, 16, 16, 16)
    flat = x.reshape(1, 4, -1)
    m = flat.shape[2]
    with LargestTensor() as rec:
        centering = torch.eye(m) - 1.0 / m
        flat @ centering @ flat.transpose(1, 2)
    assert rec.numel >= m * m


@pytest.mark.parametrize(("c", "iterations"), [(2, 5), (4, 5), (8, 8)])
def test_newton_schulz_root_squares_back_to_a_well_conditioned_matrix(
    c: int, iterations: int
) -> None:
    # trace normalisation puts the eigenvalues near 1/c: wider matrices need more iterations
    a = _spd(c).float()
    root = newton_schulz_sqrt(a, iterations=iterations)
    torch.testing.assert_close(root @ root, a, rtol=2e-3, atol=2e-3)
    exact = _exact_sqrt(a.double()).float()
    torch.testing.assert_close(root, exact, rtol=2e-3, atol=2e-3)


def test_newton_schulz_is_trace_normalised_and_scaled_back() -> None:
    """sqrt(s A) = sqrt(s) sqrt(A): the iteration sees A / tr(A) whatever the scale."""
    a = _spd(6).float()
    torch.testing.assert_close(
        newton_schulz_sqrt(100.0 * a), 10.0 * newton_schulz_sqrt(a), rtol=1e-4, atol=1e-4
    )


def test_newton_schulz_more_iterations_converge_on_wider_spectra() -> None:
    a = _spd(16, condition=50.0).float()
    err5 = (newton_schulz_sqrt(a, 5) @ newton_schulz_sqrt(a, 5) - a).abs().max()
    err15 = (newton_schulz_sqrt(a, 15) @ newton_schulz_sqrt(a, 15) - a).abs().max()
    assert err15 < 1e-3 * a.abs().max() < err5


def test_newton_schulz_of_zero_is_zero_and_float32_under_autocast() -> None:
    zeros = torch.zeros(2, 3, 3)
    assert torch.count_nonzero(newton_schulz_sqrt(zeros)) == 0
    a = _spd(4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        root = newton_schulz_sqrt(a)
    assert root.dtype == torch.float32
    torch.testing.assert_close(root, newton_schulz_sqrt(a.float()))


def test_newton_schulz_needs_an_iteration() -> None:
    with pytest.raises(ValueError, match="iterations"):
        newton_schulz_sqrt(_spd(3).float(), iterations=0)


def _exact_sqrt(a: torch.Tensor) -> torch.Tensor:
    eig, vec = torch.linalg.eigh(a)
    return (vec * eig.clamp_min(0).sqrt()[:, None, :]) @ vec.transpose(1, 2)
