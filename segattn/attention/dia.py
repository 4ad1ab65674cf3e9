"""Dense-and-implicit attention (DIANet): ``dia``.

Huang, Liang, Liang, Wang, Zhou, Bai, "DIANet: Dense-and-Implicit Attention Network", AAAI 2020,
https://arxiv.org/abs/1905.10671; authors' code https://github.com/gbup-group/DIANet.

Math: one LSTM-like cell is shared by all blocks of a stage. Block ``t`` feeds ``s_t = GAP(x_t)``;
``[i, f, g, o] = W_ih(s_t) + W_hh(h_{t-1})`` where each ``W`` is ``Linear(C, C/4) -> ReLU ->
Linear(C/4, 4C)``; ``c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)``;
``h_t = sigmoid(o) * sigmoid(c_t)`` (DIANet's modification: a sigmoid instead of the LSTM's tanh,
so ``h`` is a gate in (0, 1)); ``out = x_t * h_t``. In the authors' ResNets the residual is added
afterwards; here the module follows a plain conv block, so ``out = x * h``.

Sharing: ``DenseImplicitAttention(C)`` created alone owns its cell and runs one step from the zero
state on every call, i.e. a gate that depends on this block only. A network shares one cell among
several modules by building it with :meth:`DenseImplicitAttention.shared_group` and passing it as
``shared=``; such modules step the cell's state in call order, and the network must call
``reset_state()`` on the cell before (and preferably after) each forward pass.
:class:`segattn.nets.UNet` does this generically for any attention class with a ``shared_group``
hook: one cell per level (the encoder and decoder blocks of a width; the bottleneck alone), reset
at the start and end of every forward pass. The state is a plain attribute, never a buffer, so it
is not in ``state_dict`` and never leaks from one batch into the next.

Departures: the hidden width is ``max(C // reduction, min_channels)`` with ``reduction=4`` (the
authors' CIFAR code; their ImageNet ResNet-50 uses 20), clamped so small ``C`` builds; the
authors' one-layer cell has no dropout, so there is none.

Example:
    >>> import torch
    >>> dia = DenseImplicitAttention(channels=16, spatial_dims=3)
    >>> dia(torch.randn(2, 16, 5, 6, 7)).shape
    torch.Size([2, 16, 5, 6, 7])
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import ChannelGate, as_channel_gate
from segattn.attention.registry import register
from segattn.layers import ChannelMLP, check_spatial_dims, hidden_channels, reduce_dims

__all__ = ["DIACell", "DenseImplicitAttention"]


class DIACell(nn.Module):
    """DIANet's modified LSTM cell on ``(N, C)`` channel descriptors, with its running state.

    Parameters: ``2*(5*C*h + h + 4*C)``: two gate MLPs ``Linear(C, h) -> ReLU -> Linear(h, 4C)``
    with biases (input-to-gates and hidden-to-gates), ``h = max(C // reduction, min_channels)``.

    Args:
        channels: descriptor width ``C``.
        reduction: ``h = C // reduction`` before clamping.
        min_channels: lower bound of ``h``.

    Raises:
        ValueError: non-positive ``channels``, ``reduction`` or ``min_channels``.
    """

    def __init__(self, channels: int, reduction: int = 4, min_channels: int = 4) -> None:
        super().__init__()
        self.hidden = hidden_channels(channels, reduction, min_channels)
        self.channels = channels
        self.input_gates = ChannelMLP(channels, self.hidden, 4 * channels)
        self.hidden_gates = ChannelMLP(channels, self.hidden, 4 * channels)
        self._state: tuple[Tensor, Tensor] | None = None

    @property
    def state(self) -> tuple[Tensor, Tensor] | None:
        """``(h, c)`` after the latest :meth:`step`, or None after :meth:`reset_state`."""
        return self._state

    def reset_state(self) -> None:
        """Forget the state: the next :meth:`step` starts from ``h = c = 0``."""
        self._state = None

    def forward(
        self, s: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """One step of the cell, without touching the stored state.

        Args:
            s: ``(N, C)`` input descriptor.
            state: ``(h, c)``, each ``(N, C)``; None means zeros.

        Returns:
            ``(h, c)``, each ``(N, C)``; ``h`` is in (0, 1).
        """
        if state is None:
            h = c = torch.zeros_like(s)
        else:
            h, c = state
        i, f, g, o = (self.input_gates(s) + self.hidden_gates(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.sigmoid(c), c

    def step(self, s: Tensor) -> Tensor:
        """Advance the stored state by one step with input ``s: (N, C)`` and return ``h``.

        Raises:
            ValueError: the stored state belongs to a batch of another size (a forward pass
                that did not call :meth:`reset_state` first).
        """
        if self._state is not None and self._state[0].shape != s.shape:
            raise ValueError(
                f"shared DIA state has shape {tuple(self._state[0].shape)} but the input "
                f"descriptor has {tuple(s.shape)}; call reset_state() before each forward pass"
            )
        self._state = self(s, self._state)
        return self._state[0]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}"


@register("dia", paper="Huang et al., AAAI 2020", url="https://arxiv.org/abs/1905.10671")
class DenseImplicitAttention(ChannelGate):
    """DIANet channel attention for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``2*(5*C*h + h + 4*C)`` with ``h = max(C // reduction, min_channels)`` (the
    :class:`DIACell`); modules sharing a cell share these parameters (``parameters()`` of a
    network lists them once).

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3 (validated for uniformity; the math is the same).
        reduction: hidden width ``C // reduction`` of the gate MLPs (4).
        min_channels: lower bound of that width.
        shared: a cell from :meth:`shared_group` to share with other modules (stepping its
            state); None builds a private cell that starts from the zero state on every call.

    Raises:
        ValueError: non-positive ``channels``/widths, bad ``spatial_dims``, or a ``shared`` cell
            that is not a :class:`DIACell` of width ``channels``.

    Example:
        >>> import torch
        >>> cell = DenseImplicitAttention.shared_group(8)
        >>> first = DenseImplicitAttention(8, shared=cell)
        >>> second = DenseImplicitAttention(8, shared=cell)
        >>> cell.reset_state()
        >>> y = second(first(torch.randn(2, 8, 9, 10)))  # second continues first's state
        >>> y.shape
        torch.Size([2, 8, 9, 10])
    """

    gate_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 4,
        min_channels: int = 4,
        shared: DIACell | None = None,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if shared is None:
            self.cell = DIACell(channels, reduction, min_channels)
        else:
            if not isinstance(shared, DIACell):
                raise ValueError(
                    f"shared must be a DIACell from shared_group(), got {type(shared).__name__}"
                )
            hidden = hidden_channels(channels, reduction, min_channels)
            if (shared.channels, shared.hidden) != (channels, hidden):
                raise ValueError(
                    f"shared cell has channels={shared.channels}, hidden={shared.hidden}; this "
                    f"module needs channels={channels}, hidden={hidden}"
                )
            self.cell = shared
        self.channels = channels
        self.is_shared = shared is not None

    @classmethod
    def shared_group(
        cls,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 4,
        min_channels: int = 4,
        **_other_options: Any,
    ) -> DIACell:
        """A cell to pass as ``shared=`` to every module of one stage (same options).

        Options other than the cell's are ignored here (``__init__`` validates them).
        """
        check_spatial_dims(spatial_dims)
        return DIACell(channels, reduction, min_channels)

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``h`` of the cell for ``GAP(x)``; a shared cell's state advances.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (0, 1).
        """
        s = x.mean(dim=reduce_dims(x.ndim))
        h = self.cell.step(s) if self.is_shared else self.cell(s)[0]
        return as_channel_gate(h, x.ndim)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, shared={self.is_shared}, spatial_dims={self.spatial_dims}"
        )
