"""Count the bytes autograd keeps for the backward pass (``saved_tensors_hooks``).

Every tensor an operation saves for its backward pass goes through the pack hook; the meter
records the storage behind it once (a tensor saved by several operations, or a view of it, is
counted once) and leaves out parameters and buffers of the modules you name, which exist whether
or not you train. What remains is the activation memory of the forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["SavedTensor", "SavedTensorMeter"]


@dataclass(frozen=True)
class SavedTensor:
    """One storage kept for backward.

    Attributes:
        shape: shape of the first tensor saved from this storage.
        dtype: its dtype.
        nbytes: bytes of the whole storage (what stays allocated).
    """

    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int

    @property
    def elements(self) -> int:
        """Elements of the storage in units of the saved dtype."""
        return self.nbytes // max(1, torch.empty((), dtype=self.dtype).element_size())


@dataclass
class SavedTensorMeter:
    """Context manager recording what autograd saves inside the ``with`` block.

    Args:
        exclude: modules whose parameters and buffers are not counted.

    Example:
        >>> import torch
        >>> x = torch.randn(4, 8, requires_grad=True)
        >>> with SavedTensorMeter() as meter:
        ...     y = (x * x.sigmoid()).sum()
        >>> meter.total_bytes == 2 * x.nbytes  # x and sigmoid(x)
        True
    """

    exclude: Iterable[nn.Module] = ()
    saved: dict[tuple[Any, int], SavedTensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._skip = {
            t.untyped_storage().data_ptr()
            for m in self.exclude
            for t in [*m.parameters(), *m.buffers()]
        }
        self._hooks: Any = None

    def _pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._skip:
            key = (t.device, ptr)
            if key not in self.saved:
                self.saved[key] = SavedTensor(tuple(t.shape), t.dtype, storage.nbytes())
        return t

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    @property
    def total_bytes(self) -> int:
        """Bytes of all distinct storages saved inside the block."""
        return sum(s.nbytes for s in self.saved.values())
