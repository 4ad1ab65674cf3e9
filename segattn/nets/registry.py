"""The network registry: one dict filled by a decorator, read by ``create`` and ``available``.

A network registers itself in its own file::

    @register("quicknat", paper="Roy et al., NeuroImage 2019", url="https://arxiv.org/abs/1801.04161")
    class QuickNAT(SegmentationNet):
        def __init__(self, spatial_dims, in_channels, num_classes, attention=None,
                     attention_kwargs=None, **options): ...

and becomes available by name once ``segattn.nets`` imports that file. Every registered class
takes ``spatial_dims, in_channels, num_classes, attention, attention_kwargs`` plus its own options,
has ``attention_modules()`` and a ``config``: ``create(net.net_name, **net.config)`` (or
``type(net)(**net.config)``) rebuilds it; the decorator sets the class attribute ``net_name``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from segattn.attention import AttentionSpec

__all__ = ["NetInfo", "available", "create", "info", "register"]

T = TypeVar("T", bound=type[nn.Module])

#: Arguments every network takes; the rest of its signature are its own options.
COMMON_ARGS = ("spatial_dims", "in_channels", "num_classes", "attention", "attention_kwargs")


@dataclass(frozen=True)
class NetInfo:
    """What the registry knows about one network name.

    Attributes:
        name: registry name.
        cls: the network class.
        paper: short citation, e.g. ``"Roy et al., NeuroImage 2019"``.
        url: the paper's link.
    """

    name: str
    cls: type[nn.Module]
    paper: str = ""
    url: str = ""

    def options(self) -> list[str]:
        """The network's own options (its constructor arguments beyond :data:`COMMON_ARGS`)."""
        params = inspect.signature(self.cls).parameters
        return [p for p in params if p not in ("self", *COMMON_ARGS)]


_REGISTRY: dict[str, NetInfo] = {}


def register(name: str, *, paper: str = "", url: str = "") -> Callable[[T], T]:
    """Class decorator that registers a network under ``name`` (stored lower-case).

    Raises:
        ValueError: the name is empty or already registered.
    """
    key = str(name).strip().lower()
    if not key:
        raise ValueError(f"cannot register a network under the name {name!r}")

    def decorator(cls: T) -> T:
        if key in _REGISTRY:
            taken = _REGISTRY[key].cls
            raise ValueError(
                f"network name {key!r} is already registered to "
                f"{taken.__module__}.{taken.__qualname__}"
            )
        _REGISTRY[key] = NetInfo(key, cls, paper, url)
        cls.net_name = key  # type: ignore[attr-defined]
        return cls

    return decorator


def available() -> list[str]:
    """Sorted list of registered network names."""
    return sorted(_REGISTRY)


def info(name: str) -> NetInfo:
    """The registry entry of ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid names and the closest match).
    """
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ValueError(_unknown_name_message(str(name)))
    return _REGISTRY[key]


def create(
    name: str,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    attention: AttentionSpec = None,
    attention_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered network.

    Args:
        name: a name from :func:`available` (case-insensitive).
        spatial_dims: 1, 2 or 3.
        in_channels: input channels (image modalities).
        num_classes: output channels (logits, background included).
        attention: the module after every block, a name of ``segattn.attention.available()``,
            ``None``/``"none"``, a class or a ``functools.partial``.
        attention_kwargs: options of every attention module.
        **options: the network's own options, e.g. ``features=[32, 64, 128]`` for ``unet`` or
            ``preset="fcdensenet67"`` for ``fcdensenet``.

    Returns:
        The network; it maps ``(N, in_channels, *spatial)`` to logits ``(N, num_classes,
        *spatial)``.

    Raises:
        ValueError: unknown name (with the closest match), an option the network does not take
            (with its options), or an invalid value (raised by the network).

    Example:
        >>> import torch
        >>> net = create("quicknat", 2, 1, 4, attention="scse", features=16)
        >>> net(torch.randn(2, 1, 33, 37)).shape
        torch.Size([2, 4, 33, 37])
        >>> rebuilt = create(net.net_name, **net.config)
    """
    entry = info(name)
    valid = entry.options()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"network {entry.name!r} takes no option(s) {unknown}; its options: {valid}"
        )
    return entry.cls(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        attention_kwargs=attention_kwargs,
        **options,
    )


def _unknown_name_message(name: str) -> str:
    names = available()
    close = difflib.get_close_matches(name.strip().lower(), names, n=2, cutoff=0.4)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown network {name!r}{hint}; valid names: {names}"
