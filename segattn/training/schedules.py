"""Learning-rate schedules."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler


class PolyLR(LRScheduler):
    """Polynomial decay to zero at the end of training: ``lr = base_lr * (1 - t / T) ** power``.

    Stepped once per epoch (``t`` is the epoch), it is nnU-Net's schedule. ``total_iters=None``
    means "the run's last epoch": :class:`segattn.training.system.SegmentationSystem` sets ``T``
    to the trainer's ``max_epochs`` before the first step, so ``--trainer.max_epochs 8`` anneals
    over 8 epochs instead of stopping part-way down a schedule written for another length (as
    ``torch.optim.lr_scheduler.PolynomialLR`` with a fixed ``total_iters`` does). ``T`` is kept
    in the scheduler's state, so a resumed run continues the same schedule.

    Args:
        optimizer: the wrapped optimiser.
        total_iters: ``T``, epochs to reach zero; ``None`` to take the trainer's ``max_epochs``.
        power: the exponent (0.9 in nnU-Net and the scSE paper's QuickNAT code).

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = PolyLR(opt, total_iters=4, power=1.0)
        >>> lrs = []
        >>> for _ in range(4):
        ...     lrs.append(opt.param_groups[0]["lr"]); opt.step(); sched.step()
        >>> lrs
        [1.0, 0.75, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_iters: int | None = None,
        power: float = 0.9,
        last_epoch: int = -1,
    ) -> None:
        if total_iters is not None and (isinstance(total_iters, bool) or int(total_iters) < 1):
            raise ValueError(f"total_iters must be None or an integer >= 1, got {total_iters!r}")
        if not float(power) > 0:
            raise ValueError(f"power must be > 0, got {power!r}")
        self.total_iters = None if total_iters is None else int(total_iters)
        self.power = float(power)
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The multiplier of the base learning rates at ``epoch`` (1 until ``T`` is known)."""
        if self.total_iters is None:
            return 1.0
        return (1.0 - min(epoch, self.total_iters) / self.total_iters) ** self.power

    def get_lr(self) -> list[float]:  # type: ignore[override]
        f = self.factor(self.last_epoch)
        return [float(base) * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[Any]:
        return self.get_lr()
