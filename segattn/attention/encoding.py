"""Context encoding (EncNet): ``enc``.

Zhang, Dana, Shi, Zhang, Wang, Tyagi, Agrawal, "Context Encoding for Semantic Segmentation",
CVPR 2018, https://arxiv.org/abs/1803.08904; authors' code
https://github.com/zhanghang1989/PyTorch-Encoding (``EncModule``, ``nn.Encoding``).

Math: the features (after ``relu(norm(conv1x1(x)))``) are a set of ``M`` vectors ``x_i`` in
``R^C``. ``K`` learnable codewords ``c_k`` with smoothing factors ``s_k`` (negative) soft-assign
every position, ``a_ik = softmax_k(s_k |x_i - c_k|^2)``, and aggregate the residuals,
``e_k = (1/M) sum_i a_ik (x_i - c_k)``. Each ``e_k`` is normalised and rectified, the codewords
are averaged into ``e`` (``C`` numbers), and ``gamma = sigmoid(W e + b)`` rescales the channels:
``out = relu(x + x * gamma) = relu(x * (1 + gamma))``, a factor in (1, 2) before the ReLU.

The residual tensor ``(N, M, K, C)`` is never built: ``|x_i - c_k|^2 = |x_i|^2 - 2 x_i.c_k +
|c_k|^2`` and ``sum_i a_ik (x_i - c_k) = (A^T X)_k - (sum_i a_ik) c_k`` are matrix products, so
the largest intermediate is the ``(N, K, M)`` assignment (``K = 32`` channels' worth).

Paper vs code, and our choices:

- Over codewords the paper sums (``e = sum_k phi(e_k)``); the authors' code averages
  (``Mean(dim=1)``). Default ``codeword_reduce="mean"`` (the code; independent of ``K``),
  ``"sum"`` is the paper.
- Over positions both sum; we average (``1/M``) so the encoding does not scale with the patch size
  (2D slices vs 3D patches). The per-codeword normalisation that follows makes the two identical up
  to its epsilon.
- The code normalises the ``(N, K, C)`` encodings with ``BatchNorm1d(K)``, whose statistics couple
  the samples of a batch and fail for ``C = 1`` at batch 1. We normalise each codeword's residual
  over its ``C`` entries per sample (a ``GroupNorm(K, K)``), exactly what that BatchNorm computes at
  batch size 1, with the same ``2K`` affine parameters.
- The projection's norm normalises each sample over channels and positions (a ``GroupNorm(1, C)``)
  instead of BatchNorm2d, for batch-1 training on 1x1x1 bottlenecks.
- Both are written with ``layer_norm`` (see :class:`SampleNorm`), which unlike ``GroupNorm`` does
  not refuse to train on a single value (``C = 1`` at batch 1).
- The distances and aggregation run in float32 even under autocast (they subtract large, nearly
  equal numbers).

Memory (training): the output ``relu(x * (1 + gamma))`` is a custom autograd function keeping
only ``x`` and the channel factor (:func:`segattn.attention.lean.gate_product`), but the
Encoding layer itself keeps full-size maps for backward: the projection's conv, norm and ReLU
outputs, a contiguous copy made by the batched matrix product, and the ``(N, K, M)`` distances
and soft assignments (``K / C`` copies of the input each): 9x the input at ``C = 16`` with
``K = 32`` (measured by ``tests/attention/test_saved_memory.py``). Going lower means recomputing
the assignments in backward.

SE-loss: EncNet also predicts which classes are present from ``e`` (a linear head, binary
cross-entropy). The head and the loss belong to the training system
(``SegmentationSystem(se_loss_weight=...)``); set ``record_encoding = True`` and this module keeps
the encoding of its latest training-mode forward pass in ``last_encoding``.

Example:
    >>> import torch
    >>> enc = ContextEncoding(channels=16, spatial_dims=3)
    >>> enc(torch.randn(2, 16, 5, 6, 7)).shape
    torch.Size([2, 16, 5, 6, 7])
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segattn.attention.lean import gate_product
from segattn.attention.registry import register
from segattn.layers import check_positive_int, check_spatial_dims, conv_type

__all__ = ["CODEWORD_REDUCTIONS", "ContextEncoding", "SampleNorm", "aggregate_residuals"]

CODEWORD_REDUCTIONS = ("mean", "sum")
_ACTS = ("relu", "none")


def aggregate_residuals(x: Tensor, codewords: Tensor, scale: Tensor) -> Tensor:
    """The Encoding layer: soft-assigned residuals averaged over positions, without ``(N,M,K,C)``.

    Args:
        x: ``(N, C, M)`` features, one column per position.
        codewords: ``(K, C)``.
        scale: ``(K,)`` smoothing factors (negative: closer codewords get larger weights).

    Returns:
        ``(N, K, C)`` with ``e[n, k] = mean_i a_nik (x_ni - c_k)`` and
        ``a_nik = softmax_k(scale_k |x_ni - c_k|^2)``.
    """
    m = x.shape[2]
    cross = torch.matmul(codewords, x)  # (N, K, M): c_k . x_i
    dist = x.square().sum(1, keepdim=True) - 2.0 * cross + codewords.square().sum(1)[:, None]
    assign = torch.softmax(scale[:, None] * dist, dim=1)  # (N, K, M), softmax over codewords
    weighted = torch.bmm(assign, x.transpose(1, 2))  # (N, K, C): sum_i a_ik x_i
    return (weighted - assign.sum(2, keepdim=True) * codewords) / m


class SampleNorm(nn.Module):
    """Per-sample normalisation over the axes from ``start_dim`` on, then an affine map per index
    of axis 1 (``weight``/``bias`` of ``channels`` entries, initialised to 1/0).

    ``start_dim=1`` on ``(N, C, *spatial)`` is ``GroupNorm(1, C)``; ``start_dim=2`` on
    ``(N, K, C)`` is ``GroupNorm(K, K)``. Unlike ``GroupNorm`` it trains on single values too
    (their normalised value is 0, so the output is the bias).

    Args:
        channels: size of axis 1.
        start_dim: first normalised axis (1 or more).
        eps: added to the variance.
    """

    def __init__(self, channels: int, start_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, channels, ...) -> same shape``."""
        y = F.layer_norm(x, x.shape[self.start_dim :], eps=self.eps)
        shape = (-1, *[1] * (x.ndim - 2))
        return y * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"channels={self.weight.numel()}, start_dim={self.start_dim}, eps={self.eps}"


@register("enc", paper="Zhang et al., CVPR 2018", url="https://arxiv.org/abs/1803.08904")
class ContextEncoding(nn.Module):
    """EncNet's context encoding module for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters: ``2*C^2 + 3*C + K*C + 3*K`` with ``project=True`` (projection ``C^2`` without
    bias and its norm ``2*C``; codewords ``K*C``, smoothing factors ``K``, codeword
    norm ``2*K``; output layer ``C^2 + C``); ``project=False`` drops ``C^2 + 2*C``.

    ``forward`` is ``relu(x * channel_factor(x))``, not a pure product, so there is no ``gate``;
    ``channel_factor`` returns ``1 + gamma`` in (1, 2). With ``act="none"`` the ReLU is dropped and
    ``forward(x) == x * channel_factor(x)``.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3; picks the projection convolution.
        num_codes: number of codewords ``K`` (32 in EncNet).
        codeword_reduce: ``"mean"`` (authors' code) or ``"sum"`` (paper) over codewords.
        project: apply EncNet's ``relu(norm(conv1x1(x)))`` before encoding.
        act: ``"relu"`` (EncNet) or ``"none"`` after ``x * (1 + gamma)``.

    Attributes:
        record_encoding: when True, every forward pass overwrites ``last_encoding`` with its
            encoding ``e`` ``(N, C)`` in training mode and with None in eval mode.
        last_encoding: that encoding, or None.

    Raises:
        ValueError: non-positive ``channels`` or ``num_codes``, unknown ``codeword_reduce`` or
            ``act``, or bad ``spatial_dims``.

    Example:
        >>> import torch
        >>> enc = ContextEncoding(channels=8)
        >>> enc.channel_factor(torch.randn(2, 8, 33, 37)).shape
        torch.Size([2, 8, 1, 1])
    """

    gate_range: ClassVar[tuple[float, float]] = (1.0, 2.0)
    gate_note: ClassVar[str] = "relu(x*(1+γ)), γ∈(0,1)"

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        num_codes: int = 32,
        codeword_reduce: str = "mean",
        project: bool = True,
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channels = check_positive_int("channels", channels)
        self.num_codes = check_positive_int("num_codes", num_codes)
        if codeword_reduce not in CODEWORD_REDUCTIONS:
            raise ValueError(
                f"codeword_reduce must be one of {list(CODEWORD_REDUCTIONS)}, "
                f"got {codeword_reduce!r}"
            )
        if act not in _ACTS:
            raise ValueError(f"act must be one of {list(_ACTS)}, got {act!r}")
        self.codeword_reduce = codeword_reduce
        self.act = act

        self.project: nn.Module = nn.Identity()
        if project:
            self.project = nn.Sequential(
                conv_type(spatial_dims)(channels, channels, kernel_size=1, bias=False),
                SampleNorm(channels, start_dim=1),
                nn.ReLU(inplace=True),
            )
        self.codewords = nn.Parameter(torch.empty(num_codes, channels))
        self.scale = nn.Parameter(torch.empty(num_codes))
        self.code_norm = SampleNorm(num_codes, start_dim=2)
        self.fc = nn.Linear(channels, channels)
        self.reset_encoding_parameters()

        self.record_encoding = False
        self.last_encoding: Tensor | None = None

    def reset_encoding_parameters(self) -> None:
        """The authors' initialisation: codewords ``U(+-1/sqrt(K*C))``, smoothing ``U(-1, 0)``."""
        bound = 1.0 / math.sqrt(self.num_codes * self.channels)
        nn.init.uniform_(self.codewords, -bound, bound)
        nn.init.uniform_(self.scale, -1.0, 0.0)

    def encoding(self, x: Tensor) -> Tensor:
        """The context encoding ``e``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C)``: the normalised, rectified codeword residuals averaged (or summed) over
            codewords.
        """
        n, c = x.shape[:2]
        z = self.project(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            residuals = aggregate_residuals(
                z.reshape(n, c, -1).float(), self.codewords.float(), self.scale.float()
            )
        codes = F.relu(self.code_norm(residuals.to(self.fc.weight.dtype)))  # (N, K, C)
        return codes.mean(1) if self.codeword_reduce == "mean" else codes.sum(1)

    def factor_from_encoding(self, e: Tensor, x_ndim: int) -> Tensor:
        """``1 + sigmoid(W e + b)`` shaped ``(N, C, 1, ..., 1)`` for an input of ``x_ndim`` dims."""
        gamma = torch.sigmoid(self.fc(e))
        return (1.0 + gamma).view(*e.shape, *[1] * (x_ndim - 2))

    def channel_factor(self, x: Tensor) -> Tensor:
        """Channel factor ``1 + gamma``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, 1, ..., 1)`` with values in (1, 2).
        """
        return self.factor_from_encoding(self.encoding(x), x.ndim)

    def forward(self, x: Tensor) -> Tensor:
        """``relu(x * (1 + gamma))`` (no ReLU with ``act="none"``): ``(N, C, *S) -> (N, C, *S)``."""
        e = self.encoding(x)
        if self.record_encoding:
            self.last_encoding = e if self.training else None
        # the product and its ReLU keep only x and the factor for backward (no full-size output)
        return gate_product(x, self.factor_from_encoding(e, x.ndim), relu=self.act == "relu")

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_codes={self.num_codes}, "
            f"codeword_reduce={self.codeword_reduce!r}, act={self.act!r}, "
            f"spatial_dims={self.spatial_dims}"
        )
