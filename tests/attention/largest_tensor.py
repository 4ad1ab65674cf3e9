"""Record the largest tensor any ATen operation produces (forward and backward), to test that a
module never materialises an intermediate it promises to avoid (``M x M`` over positions,
``(N, M, K, C)`` residuals, ...). Imported by bare name from the attention tests."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LargestTensor(TorchDispatchMode):
    """``with LargestTensor() as rec: ...`` then ``rec.numel`` / ``rec.shape`` of the largest
    tensor produced by an operation inside the block (views count with their own shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0
        self.shape: tuple[int, ...] = ()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, Tensor) and item.numel() > self.numel:
                self.numel = item.numel()
                self.shape = tuple(item.shape)
        return out
