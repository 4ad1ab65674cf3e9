"""dia: DIANet's shared LSTM-like cell -- one-step gate alone, recurrent state when shared."""

from __future__ import annotations

import pytest
import torch

from segattn.attention import DenseImplicitAttention, DIACell, create


def _manual_step(cell: DIACell, s: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    gates = cell.input_gates(s) + cell.hidden_gates(h)
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.sigmoid(c), c


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_alone_it_is_a_one_step_cell_from_zero_state(spatial_dims: int) -> None:
    dia = create("dia", 16, spatial_dims).eval()
    x = torch.randn(2, 16, *(9, 10, 11)[:spatial_dims])
    s = x.mean(dim=tuple(range(2, x.ndim)))
    zeros = torch.zeros_like(s)
    with torch.no_grad():
        gate = dia.gate(x)
        expected, _ = _manual_step(dia.cell, s, zeros, zeros)
        torch.testing.assert_close(gate.flatten(1), expected)
        assert gate.shape == (2, 16, *[1] * spatial_dims)
        assert gate.min() > 0.0 and gate.max() < 1.0
        torch.testing.assert_close(dia(x), x * gate)
        torch.testing.assert_close(dia.gate(x), gate)  # no state carried between calls
    assert dia.cell.state is None


def test_shared_cell_carries_state_between_modules_in_call_order() -> None:
    cell = DenseImplicitAttention.shared_group(8)
    first = DenseImplicitAttention(8, shared=cell).eval()
    second = DenseImplicitAttention(8, spatial_dims=3, shared=cell).eval()
    x1, x2 = torch.randn(2, 8, 9, 10), torch.randn(2, 8, 3, 4, 5)
    s1, s2 = x1.mean((2, 3)), x2.mean((2, 3, 4))
    zeros = torch.zeros_like(s1)
    with torch.no_grad():
        h1, c1 = _manual_step(cell, s1, zeros, zeros)
        h2, _ = _manual_step(cell, s2, h1, c1)
        cell.reset_state()
        torch.testing.assert_close(first.gate(x1).flatten(1), h1)
        torch.testing.assert_close(second.gate(x2).flatten(1), h2)
        assert not torch.allclose(h2, _manual_step(cell, s2, zeros, zeros)[0], atol=1e-4)
        cell.reset_state()
        torch.testing.assert_close(
            second.gate(x2).flatten(1), _manual_step(cell, s2, zeros, zeros)[0]
        )


def test_shared_parameters_are_the_same_tensors_and_state_is_not_saved() -> None:
    cell = DenseImplicitAttention.shared_group(8)
    a, b = DenseImplicitAttention(8, shared=cell), DenseImplicitAttention(8, shared=cell)
    assert all(p is q for p, q in zip(a.parameters(), b.parameters(), strict=True))
    both = torch.nn.ModuleList([a, b])
    assert sum(p.numel() for p in both.parameters()) == sum(p.numel() for p in a.parameters())
    a(torch.randn(2, 8, 5, 5))
    assert cell.state is not None
    assert set(a.state_dict()) == {n for n, _ in a.named_parameters()}
    assert list(a.buffers()) == []


def test_stale_state_from_another_batch_size_is_refused() -> None:
    cell = DenseImplicitAttention.shared_group(4)
    dia = DenseImplicitAttention(4, shared=cell)
    dia(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="reset_state"):
        dia(torch.randn(3, 4, 5, 5))
    cell.reset_state()
    assert dia(torch.randn(3, 4, 5, 5)).shape == (3, 4, 5, 5)


def test_shared_group_takes_the_module_options() -> None:
    cell = DenseImplicitAttention.shared_group(16, 3, reduction=2, min_channels=1)
    assert (cell.channels, cell.hidden) == (16, 8)
    DenseImplicitAttention(16, 3, reduction=2, min_channels=1, shared=cell)
    with pytest.raises(ValueError, match="spatial_dims"):
        DenseImplicitAttention.shared_group(16, 4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reduction": 0},
        {"min_channels": 0},
        {"shared": torch.nn.Linear(8, 8)},
        {"shared": DIACell(16)},  # another width
        {"shared": DIACell(8, reduction=8, min_channels=1)},  # another hidden width
    ],
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        create("dia", 8, 2, **kwargs)
