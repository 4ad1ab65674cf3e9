"""Tiny lookups that pick 1D/2D/3D operators by ``spatial_dims``, plus shape helpers.

Every layer, block and net in segattn takes ``spatial_dims`` and asks these functions for its
operators, so one implementation serves 2D ``(N, C, H, W)`` and 3D ``(N, C, D, H, W)`` tensors.
"""

from __future__ import annotations

from torch import nn

_NORMS = ("instance", "batch", "group", "none")
_ACTS = ("relu", "leakyrelu", "prelu", "gelu", "silu", "elu")


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 1, 2 or 3, else raise ``ValueError``."""
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv_type(spatial_dims: int) -> type[nn.Conv1d] | type[nn.Conv2d] | type[nn.Conv3d]:
    """``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d``."""
    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[check_spatial_dims(spatial_dims) - 1]


def conv_transpose_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.ConvTranspose1d``, ``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    return (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[
        check_spatial_dims(spatial_dims) - 1
    ]


def max_pool_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.MaxPool1d``, ``nn.MaxPool2d`` or ``nn.MaxPool3d``."""
    return (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[check_spatial_dims(spatial_dims) - 1]


def avg_pool_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.AvgPool1d``, ``nn.AvgPool2d`` or ``nn.AvgPool3d``."""
    return (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[check_spatial_dims(spatial_dims) - 1]


def norm_layer(name: str | None, spatial_dims: int, channels: int, groups: int = 8) -> nn.Module:
    """Build a normalisation layer by name.

    Args:
        name: ``"instance"`` (affine), ``"batch"``, ``"group"`` or ``"none"``/``None``.
        spatial_dims: 1, 2 or 3.
        channels: number of feature channels.
        groups: groups for ``"group"``; reduced to the largest divisor of ``channels``.

    Raises:
        ValueError: unknown name.
    """
    key = "none" if name is None else str(name).lower()
    if key not in _NORMS:
        raise ValueError(f"unknown norm {name!r}; choose one of {list(_NORMS)}")
    if key == "none":
        return nn.Identity()
    if key == "group":
        g = max(1, min(groups, channels))
        while channels % g:
            g -= 1
        return nn.GroupNorm(g, channels)
    dim = check_spatial_dims(spatial_dims) - 1
    if key == "batch":
        return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dim](channels)
    return (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[dim](channels, affine=True)


def act_layer(name: str | None, inplace: bool = True) -> nn.Module:
    """Build an activation by name: relu, leakyrelu (slope 0.01), prelu, gelu, silu, elu, none."""
    key = "none" if name is None else str(name).lower()
    if key == "none":
        return nn.Identity()
    if key not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(_ACTS) + ['none']}")
    if key == "relu":
        return nn.ReLU(inplace=inplace)
    if key == "leakyrelu":
        return nn.LeakyReLU(0.01, inplace=inplace)
    if key == "prelu":
        return nn.PReLU()
    if key == "gelu":
        return nn.GELU()
    if key == "silu":
        return nn.SiLU(inplace=inplace)
    return nn.ELU(inplace=inplace)


def make_divisible(value: float, divisor: int = 1, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, at least ``min_value`` (or divisor).

    Never returns less than 90% of ``value`` (timm's rule), and never 0.
    """
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return max(1, new)


def reduce_dims(x_ndim: int) -> tuple[int, ...]:
    """The spatial axes of an ``(N, C, *spatial)`` tensor: ``tuple(range(2, ndim))``."""
    return tuple(range(2, x_ndim))


def gate_shape(batch: int, channels: int, x_ndim: int) -> tuple[int, ...]:
    """Shape ``(N, C, 1, ..., 1)`` that broadcasts a per-channel gate over all spatial axes."""
    return (batch, channels, *([1] * (x_ndim - 2)))


def check_positive_int(label: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` >= 1 (not a bool), else raise ``ValueError``.

    Args:
        label: the argument's name, echoed in the message.
        value: the value to check.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")
    return value


def hidden_channels(channels: int, reduction: int, min_channels: int = 1) -> int:
    """Bottleneck width ``max(channels // reduction, min_channels)``, never 0.

    Attention modules use it for their reduced hidden layers so that small ``channels`` (1..4)
    still build.

    Raises:
        ValueError: any of the three is not a positive integer.
    """
    check_positive_int("channels", channels)
    check_positive_int("reduction", reduction)
    check_positive_int("min_channels", min_channels)
    return max(channels // reduction, min_channels)
