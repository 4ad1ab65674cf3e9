"""The attention registry: one dict filled by a decorator, read by ``create`` and ``available``.

A mechanism registers itself in its own file::

    @register("se")
    class SqueezeExcitation(nn.Module):
        def __init__(self, channels: int, spatial_dims: int = 2, reduction: int = 16): ...

and becomes available by name once ``segattn.attention`` imports that file. Stacking decorators
registers one class under several names with different defaults, e.g.
``@register("cse", reduction=2)``, so a variant is never a twin class.

Contract for registered classes (the tests in ``tests/attention`` check it for every name):

- ``__init__(self, channels, spatial_dims=2, **options)``, validating options with ``ValueError``;
- ``forward`` maps ``(N, C, *spatial)`` to the same shape for ``spatial_dims`` 1, 2 and 3;
- a module that rescales its input exposes ``gate(x)`` returning the broadcastable factor ``g``
  with ``forward(x) == x * g``, and may set the class attribute ``gate_range = (low, high)``
  (open interval, default ``(0.0, 1.0)``).
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

__all__ = ["AttentionInfo", "AttentionSpec", "available", "create", "info", "register"]

T = TypeVar("T", bound=type[nn.Module])

#: What ``create`` accepts as ``name``: a registered name, ``None``, a class or a partial.
AttentionSpec = str | type[nn.Module] | functools.partial | None


@dataclass(frozen=True)
class AttentionInfo:
    """What the registry knows about one name (shown by ``segattn modules``).

    Attributes:
        name: registry name.
        cls: the module class.
        defaults: options applied before the caller's.
        paper: short citation, e.g. ``"Woo et al., ECCV 2018"``.
        url: the paper's link (arXiv where there is one).
    """

    name: str
    cls: type[nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    url: str = ""


_REGISTRY: dict[str, AttentionInfo] = {}
_NONE_NAMES = ("none",)


def register(name: str, *, paper: str = "", url: str = "", **defaults: Any) -> Callable[[T], T]:
    """Class decorator that registers an attention module under ``name``.

    Args:
        name: registry name, stored lower-case; must not be taken yet.
        paper: short citation (authors, venue, year) listed by ``segattn modules``.
        url: link to the paper (arXiv where there is one).
        **defaults: keyword arguments applied before the caller's own, so one class can be
            registered under several names with different defaults.

    Returns:
        The decorator; it returns the class unchanged.

    Raises:
        ValueError: the name is empty, reserved (``"none"``) or already registered.

    Example::

        @register("my_gate", paper="Doe et al., MICCAI 2030", url="https://arxiv.org/abs/...")
        class MyGate(nn.Module):
            def __init__(self, channels: int, spatial_dims: int = 2) -> None: ...

        create("my_gate", channels=8, spatial_dims=3)  # -> MyGate(channels=8, spatial_dims=3)
    """
    key = str(name).strip().lower()
    if not key or key in _NONE_NAMES:
        raise ValueError(f"cannot register an attention module under the name {name!r}")

    def decorator(cls: T) -> T:
        if key in _REGISTRY:
            taken = _REGISTRY[key].cls
            raise ValueError(
                f"attention name {key!r} is already registered to "
                f"{taken.__module__}.{taken.__qualname__}"
            )
        _REGISTRY[key] = AttentionInfo(key, cls, dict(defaults), paper, url)
        return cls

    return decorator


def _check_options(name: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming options that ``cls`` does not take (a config typo, or the
    options of another module left behind after switching ``attention``)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p not in ("self", "channels", "spatial_dims")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"attention {name!r} takes no option(s) {unknown}; its options: {valid}")


def available() -> list[str]:
    """Sorted list of registered attention names (``"none"`` is always accepted too)."""
    return sorted(_REGISTRY)


def info(name: str) -> AttentionInfo:
    """The registry entry of ``name`` (class, defaults, paper).

    Raises:
        ValueError: unknown name.
    """
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ValueError(_unknown_name_message(str(name)))
    return _REGISTRY[key]


def create(name: AttentionSpec, channels: int, spatial_dims: int = 2, **kwargs: Any) -> nn.Module:
    """Build an attention module.

    Args:
        name: a registered name (case-insensitive), ``None`` or ``"none"`` for ``nn.Identity``,
            an ``nn.Module`` subclass or a ``functools.partial`` of one; classes and partials are
            called as ``name(channels=channels, spatial_dims=spatial_dims, **kwargs)``.
        channels: feature channels ``C`` of the input ``(N, C, *spatial)``.
        spatial_dims: 1, 2 or 3.
        **kwargs: module options; they override a registered name's defaults.

    Returns:
        The module; it maps ``(N, C, *spatial)`` to the same shape.

    Raises:
        ValueError: unknown name (the message lists the valid names and the closest match), or
            invalid options (raised by the module).
        TypeError: ``name`` is neither a string, ``None``, a class nor a partial.

    Example:
        >>> import torch
        >>> att = create("scse", channels=8, spatial_dims=3)
        >>> att(torch.randn(2, 8, 5, 6, 7)).shape
        torch.Size([2, 8, 5, 6, 7])
    """
    if name is None:
        return nn.Identity()
    if isinstance(name, str):
        key = name.strip().lower()
        if key in _NONE_NAMES:
            return nn.Identity()
        if key not in _REGISTRY:
            raise ValueError(_unknown_name_message(name))
        entry = _REGISTRY[key]
        _check_options(key, entry.cls, kwargs)
        return entry.cls(
            channels=channels, spatial_dims=spatial_dims, **{**entry.defaults, **kwargs}
        )
    if isinstance(name, functools.partial) or (
        isinstance(name, type) and issubclass(name, nn.Module)
    ):
        module = name(channels=channels, spatial_dims=spatial_dims, **kwargs)
        if not isinstance(module, nn.Module):
            raise TypeError(f"attention factory {name!r} returned {type(module).__name__}")
        return module
    raise TypeError(
        "attention must be a registered name, None, an nn.Module subclass or a functools.partial, "
        f"got {type(name).__name__}: {name!r}"
    )


def _unknown_name_message(name: str) -> str:
    names = available()
    close = difflib.get_close_matches(name.strip().lower(), names, n=1, cutoff=0.0)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown attention {name!r}{hint}; valid names: {['none', *names]}"
