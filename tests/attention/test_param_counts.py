"""Every registered module's parameter count equals the formula its docstring states."""

from __future__ import annotations

import pytest
from param_formulas import FORMULAS

from segattn.attention import available, create


def test_every_registered_name_has_a_formula() -> None:
    missing = sorted(set(available()) - set(FORMULAS))
    assert not missing, f"add the docstring's parameter formula to param_formulas.py: {missing}"


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("channels", [16, 64, 96])
@pytest.mark.parametrize("name", available())
def test_param_count_matches_docstring_formula(name: str, channels: int, spatial_dims: int) -> None:
    module = create(name, channels, spatial_dims)
    counted = sum(p.numel() for p in module.parameters())
    assert counted == FORMULAS[name](channels, spatial_dims)
