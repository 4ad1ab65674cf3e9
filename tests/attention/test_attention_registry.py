"""The registry itself: names, None, classes, partials, errors and registration."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from segattn import attention
from segattn.attention import (
    ChannelSpatialSqueezeExcitation,
    SqueezeExcitation,
    available,
    create,
    register,
    registry,
)


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register names without leaking them into the other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_available_is_sorted_and_has_the_se_family() -> None:
    names = available()
    assert names == sorted(names)
    assert {"se", "cse", "sse", "scse"} <= set(names)
    assert "none" not in names


@pytest.mark.parametrize("name", [None, "none", "None", " NONE "])
def test_none_gives_identity(name: str | None) -> None:
    assert isinstance(create(name, 8), nn.Identity)


def test_names_are_case_insensitive() -> None:
    assert isinstance(create("SE", 8), SqueezeExcitation)
    assert isinstance(create("ScSe", 8, spatial_dims=3), ChannelSpatialSqueezeExcitation)


def test_unknown_name_lists_valid_names_and_closest_match() -> None:
    with pytest.raises(ValueError, match="did you mean 'scse'") as info:
        create("scsee", 8)
    message = str(info.value)
    for name in available():
        assert repr(name) in message


def test_class_is_called_with_channels_and_spatial_dims() -> None:
    module = create(SqueezeExcitation, 32, 3, reduction=4)
    assert isinstance(module, SqueezeExcitation)
    assert module.hidden == 8
    assert module.spatial_dims == 3


def test_partial_is_accepted() -> None:
    factory = functools.partial(ChannelSpatialSqueezeExcitation, aggregation="max")
    module = create(factory, 8, spatial_dims=3)
    assert isinstance(module, ChannelSpatialSqueezeExcitation)
    assert module.aggregation == "max"
    assert module(torch.randn(2, 8, 3, 4, 5)).shape == (2, 8, 3, 4, 5)


@pytest.mark.parametrize("bad", [42, 1.5, ["se"], nn.ReLU()])
def test_other_types_raise_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        create(bad, 8)  # type: ignore[arg-type]


def test_cse_is_se_with_reduction_two_and_kwargs_override() -> None:
    cse = create("cse", 64)
    se = create("se", 64)
    assert type(cse) is type(se) is SqueezeExcitation
    assert cse.hidden == 32
    assert se.hidden == 4
    assert create("cse", 64, reduction=8).hidden == 8


@pytest.mark.usefixtures("scratch_registry")
def test_register_adds_a_name_with_defaults() -> None:
    @register("Half_SE", reduction=2)
    @register("quarter_se", reduction=4)
    class Tiny(SqueezeExcitation):
        pass

    assert "half_se" in available()
    assert "quarter_se" in available()
    assert create("half_se", 16).hidden == 8
    assert create("quarter_se", 16).hidden == 4
    assert create("quarter_se", 16, reduction=1).hidden == 16


@pytest.mark.usefixtures("scratch_registry")
def test_register_refuses_taken_and_reserved_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("se")(SqueezeExcitation)
    with pytest.raises(ValueError, match="none"):
        register("none")
    with pytest.raises(ValueError):
        register("  ")


def test_package_exports() -> None:
    for name in ("create", "available", "register", "SqueezeExcitation"):
        assert name in attention.__all__
