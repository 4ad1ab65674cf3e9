"""PolyLR: polynomial decay that ends with the run."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from segattn.training.schedules import PolyLR
from segattn.training.system import SegmentationSystem


def _lrs(scheduler: PolyLR, epochs: int) -> list[float]:
    opt = scheduler.optimizer
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def _optimizer(lr: float = 0.01) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=lr)


def test_values_follow_the_formula() -> None:
    lrs = _lrs(PolyLR(_optimizer(), total_iters=8, power=0.9), 10)
    expected = [0.01 * (1 - min(e, 8) / 8) ** 0.9 for e in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert lrs[-1] == 0.0


def test_equals_torch_polynomial_lr_for_a_fixed_length() -> None:
    ours = PolyLR(_optimizer(), total_iters=6, power=0.9)
    theirs = torch.optim.lr_scheduler.PolynomialLR(_optimizer(), total_iters=6, power=0.9)
    assert _lrs(ours, 8) == pytest.approx(_lrs(theirs, 8), rel=1e-9, abs=1e-15)


def test_state_round_trip_continues_the_schedule() -> None:
    first = PolyLR(_optimizer(), total_iters=5)
    _lrs(first, 2)
    second = PolyLR(_optimizer())
    second.load_state_dict(first.state_dict())
    second.optimizer.param_groups[0]["lr"] = first.optimizer.param_groups[0]["lr"]
    assert second.total_iters == 5
    assert _lrs(second, 3) == pytest.approx(_lrs(first, 3))


def test_bad_arguments() -> None:
    for kwargs in ({"total_iters": 0}, {"total_iters": True}, {"power": 0.0}):
        with pytest.raises(ValueError):
            PolyLR(_optimizer(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_epochs", [3, 8])
def test_the_system_ends_the_schedule_with_max_epochs(max_epochs: int) -> None:
    system = SegmentationSystem(
        spatial_dims=2, features=[4, 8], lr_scheduler=lambda opt: PolyLR(opt, power=1.0)
    )
    trainer = pl.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False)
    system.trainer = trainer
    config = system.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    assert scheduler.total_iters == max_epochs
    lrs = _lrs(scheduler, max_epochs + 1)
    assert lrs[-2] == pytest.approx(1e-3 / max_epochs) and lrs[-1] == 0.0


def test_the_system_refuses_an_open_ended_run() -> None:
    system = SegmentationSystem(spatial_dims=2, features=[4, 8], lr_scheduler=PolyLR)
    system.trainer = pl.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="max_epochs"):
        system.configure_optimizers()
