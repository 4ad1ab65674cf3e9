"""Bilinear attention: ``bilinear``.

Fang, Zhou, Roy, Petersson, Harandi, "Bilinear Attention Networks for Person Retrieval",
ICCV 2019 (CVF open access, no arXiv version):
https://openaccess.thecvf.com/content_ICCV_2019/html/Fang_Bilinear_Attention_Networks_for_Person_Retrieval_ICCV_2019_paper.html
Authors' code https://github.com/PengfeiFANGanu/Attention-in-Attention-Networks
(``BilinearAttention`` in ``models/bilinear_baseline_AIA.py``).

Math (the authors' code), with ``block(.) = relu(norm(conv1x1(.)))``:

- ``z = block_1(x)``, ``C -> C'`` with ``C' = C // 16`` (clamped below by ``min_channels``);
- second-order features ``B``: at every position the products ``z_i z_j`` for ``i <= j``, i.e.
  the upper triangle of the outer product ``z z^T``, ``P = C'(C'+1)/2`` channels;
- global path ``g_global = block_3(GAP(B))``, ``(N, C, 1, ..., 1)``;
- local path ``g_local = block_2(B)``, ``(N, C, *spatial)``;
- ``out = x * sigmoid(g_global * g_local)``.

Both paths end in a ReLU, so their product is >= 0 and the gate lies in [0.5, 1) (``gate_range``
``(0.5, 1.0)``): the module can only damp features, by at most half.

Departures from the authors' code:

- norm: their blocks use BatchNorm, which cannot train at batch size 1 on the pooled global path
  (one value per channel). By default (``norm="layer"``) every block uses ``GroupNorm(1, .)``:
  per-sample normalisation over channels and positions, the same parameter count, works at batch
  size 1 and on a 1x1x1 bottleneck. ``norm="batch"`` restores BatchNorm; ``"none"`` drops it.
- ``B`` is built diagonal by diagonal (``z_i z_{i+k}``, k = 0, 1, ..., the authors' channel order)
  directly into one ``(N, P, *spatial)`` tensor: the ``(N, C', C', *spatial)`` outer product is
  never formed.

Memory: ``B`` has ``P = C'(C'+1)/2`` channels, about ``C^2 / 512`` for ``C' = C/16``, so its size
relative to the input grows with ``P / C ~ C / 512``: 10/64 at ``C = 64`` (``C' = 4``), 136/256 at
``C = 256``, 528/512 at ``C = 512``; the local path also holds a full ``(N, C, *spatial)`` map.

Memory (training): ``x * sigmoid(g_global * g_local)`` runs as a custom autograd function
(:func:`segattn.attention.lean.sigmoid_gate`) that keeps ``x``, ``g_global`` and ``g_local``, not
the product and its sigmoid. The local path is a full-size ``C``-channel map by design: its conv
output (kept by its norm) and its ReLU output (``g_local``) are two copies of the input, plus
``z`` and ``B`` (``2 C' / C + P / C``), 4.1x the input at ``C = 16`` and more for larger ``C``
(``P / C`` grows, see above). Going lower means recomputing the paths in backward.

Example:
    >>> import torch
    >>> att = BilinearAttention(channels=64, spatial_dims=3)
    >>> att.hidden, att.pairs
    (4, 10)
    >>> att(torch.randn(2, 64, 5, 6, 7)).shape
    torch.Size([2, 64, 5, 6, 7])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from segattn.attention._gate import GatedAttention
from segattn.attention.lean import sigmoid_gate
from segattn.attention.registry import register
from segattn.layers import conv_type, hidden_channels, norm_layer, reduce_dims

__all__ = ["BilinearAttention", "second_order"]

NORMS = ("layer", "batch", "none")


def second_order(z: Tensor) -> Tensor:
    """Upper-triangular per-position products ``z_i z_j`` (``i <= j``), diagonal by diagonal.

    Args:
        z: ``(N, K, *spatial)``.

    Returns:
        ``(N, K(K+1)/2, *spatial)``: first the ``K`` squares ``z_i^2``, then the ``K - 1``
        products ``z_i z_{i+1}``, ..., finally ``z_0 z_{K-1}``.
    """
    k = z.shape[1]
    out = z.new_empty(z.shape[0], k * (k + 1) // 2, *z.shape[2:])
    start = 0
    for offset in range(k):
        width = k - offset
        out[:, start : start + width] = z[:, :width] * z[:, offset:]
        start += width
    return out


def _block(in_channels: int, out_channels: int, spatial_dims: int, norm: str) -> nn.Sequential:
    """1x1 convolution (with bias) + norm + ReLU, the authors' ``ConvBlock``."""
    if norm == "layer":
        normalisation = norm_layer("group", spatial_dims, out_channels, groups=1)
    else:
        normalisation = norm_layer(norm, spatial_dims, out_channels)
    return nn.Sequential(
        conv_type(spatial_dims)(in_channels, out_channels, kernel_size=1),
        normalisation,
        nn.ReLU(inplace=True),
    )


@register(
    "bilinear",
    paper="Fang et al., ICCV 2019",
    url="https://openaccess.thecvf.com/content_ICCV_2019/html/"
    "Fang_Bilinear_Attention_Networks_for_Person_Retrieval_ICCV_2019_paper.html",
)
class BilinearAttention(GatedAttention):
    """Bilinear (second-order) attention for ``(N, C, *spatial)`` tensors in 1D, 2D or 3D.

    Parameters, with ``C' = max(C // reduction, min_channels)`` and ``P = C'(C'+1)/2``:
    ``C*C' + C'`` (reducing convolution) ``+ 2*(P*C + C)`` (local and global convolutions)
    plus the norms' affine parameters ``2*C' + 4*C`` (``"layer"`` or ``"batch"``; 0 for
    ``"none"``): ``C*C' + 3*C' + 2*P*C + 6*C`` by default.

    Args:
        channels: input channels ``C``.
        spatial_dims: 1, 2 or 3; picks the convolutions and norms.
        reduction: ratio in ``C' = C // reduction`` (16 in the authors' code).
        min_channels: lower bound of ``C'``.
        norm: ``"layer"`` (default, ``GroupNorm(1, .)``), ``"batch"`` (authors' code; batch >= 2
            to train) or ``"none"``.

    Raises:
        ValueError: non-positive ``channels``, ``reduction`` or ``min_channels``, bad
            ``spatial_dims`` or an unknown ``norm``.

    Example:
        >>> import torch
        >>> att = BilinearAttention(channels=16)
        >>> g = att.gate(torch.randn(2, 16, 33, 37))
        >>> g.shape, bool(g.min() >= 0.5)
        (torch.Size([2, 16, 33, 37]), True)
    """

    gate_range: ClassVar[tuple[float, float]] = (0.5, 1.0)

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        reduction: int = 16,
        min_channels: int = 4,
        norm: str = "layer",
    ) -> None:
        super().__init__()
        self.hidden = hidden_channels(channels, reduction, min_channels)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
        self.channels = channels
        self.spatial_dims = spatial_dims
        self.pairs = self.hidden * (self.hidden + 1) // 2
        self.reduce = _block(channels, self.hidden, spatial_dims, norm)
        self.local_path = _block(self.pairs, channels, spatial_dims, norm)
        self.global_path = _block(self.pairs, channels, spatial_dims, norm)

    def gate(self, x: Tensor) -> Tensor:
        """Full gate ``sigmoid(g_global * g_local)``.

        Args:
            x: ``(N, C, *spatial)``.

        Returns:
            ``(N, C, *spatial)`` with values in [0.5, 1).
        """
        g_global, g_local = self._paths(x)
        return torch.sigmoid(g_global * g_local)

    def _paths(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``g_global`` ``(N, C, 1, ..., 1)`` and ``g_local`` ``(N, C, *spatial)``."""
        b = second_order(self.reduce(x))
        g_global = self.global_path(b.mean(dim=reduce_dims(b.ndim), keepdim=True))
        return g_global, self.local_path(b)

    def forward(self, x: Tensor) -> Tensor:
        """``x * gate(x)``: ``(N, C, *spatial) -> (N, C, *spatial)``; backward keeps ``g_local``
        (kept by its ReLU anyway) and ``g_global``, not the product and its sigmoid."""
        g_global, g_local = self._paths(x)
        return sigmoid_gate(x, g_global, g_local, product=True)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, hidden={self.hidden}, pairs={self.pairs}, "
            f"spatial_dims={self.spatial_dims}"
        )
