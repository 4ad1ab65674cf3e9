"""Turn command-line style inputs into cases to predict (see :mod:`segattn.imageio.discover`,
shared with ``explain``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from segattn.imageio.discover import CaseError, InputCase, discover_inputs

__all__ = ["CaseError", "InputCase", "collect_cases", "discover_inputs"]


def collect_cases(
    inputs: Iterable[str | Path],
    in_channels: int,
    series: str | None = None,
    output_format: str = "same",
) -> tuple[list[InputCase], list[CaseError]]:
    """Expand files and folders into cases (:func:`segattn.imageio.discover_inputs`)."""
    return discover_inputs(inputs, in_channels, series=series, output_format=output_format)
