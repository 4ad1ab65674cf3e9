"""Ensembles of checkpoints: compatibility checks, views and the weights of their probabilities.

Several checkpoints (2D models of different views, 3D models, or a mix) are combined by a weighted
average of their class probabilities on the input grid. Weights are given per checkpoint or by a
named preset:

- ``"quicknat"``: 0.4 axial, 0.4 coronal, 0.2 sagittal, assigned by each checkpoint's view. This is
  the three-view weighting our issue names after QuickNAT (Roy et al., NeuroImage 2019,
  https://arxiv.org/abs/1801.04161); we did not find it in QuickNAT's public PyTorch code, whose
  two-view evaluation sums coronal and axial probabilities with equal weights. It needs 2D
  checkpoints with distinct views; with fewer than three views the given ones are renormalised
  (coronal + axial -> 0.5 / 0.5).

A 2D checkpoint's view follows from its slicing axis in the oriented volume and the orientation
code it was trained with: with ``"RAS"``, axis 0 (L-R) gives sagittal slices, 1 (P-A) coronal and 2
(I-S) axial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from segattn.errors import InputFileError, SegattnError
from segattn.inference.checkpoint import CheckpointInfo

QUICKNAT_WEIGHTS = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
PRESETS = {"quicknat": QUICKNAT_WEIGHTS}

_VIEW_OF_LETTER = {
    "L": "sagittal",
    "R": "sagittal",
    "A": "coronal",
    "P": "coronal",
    "S": "axial",
    "I": "axial",
}


def view_of(info: CheckpointInfo) -> str | None:
    """``"sagittal"``, ``"coronal"`` or ``"axial"`` for a 2D checkpoint; None for 3D checkpoints
    and for 2D ones trained without a fixed orientation (their slices have no known view)."""
    if info.mode != "2d" or info.slice_axis is None:
        return None
    codes = info.preprocessing.get("orientation")
    if not codes or len(codes) != 3:
        return None
    return _VIEW_OF_LETTER.get(str(codes)[info.slice_axis].upper())


def check_compatible(infos: Sequence[CheckpointInfo]) -> None:
    """Raise one clear error naming both files if two checkpoints cannot be ensembled.

    Raises:
        InputFileError: different label sets (names or indices) or input channel counts.
    """
    first = infos[0]
    for other in infos[1:]:
        if other.labels != first.labels:
            raise InputFileError(
                other.path,
                f"labels differ from {first.path} ({_label_difference(first, other)}); "
                "cannot ensemble them",
            )
        if other.in_channels != first.in_channels:
            raise InputFileError(
                other.path,
                f"takes {other.in_channels} channel(s) but {first.path} takes "
                f"{first.in_channels}; cannot ensemble them",
            )


def resolve_weights(
    infos: Sequence[CheckpointInfo], weights: str | Sequence[float] | None
) -> list[float]:
    """One weight per checkpoint, positive and summing to 1.

    Args:
        infos: the checkpoints, in order.
        weights: None (equal weights), a preset name from :data:`PRESETS`, or one positive
            number per checkpoint (normalised to sum 1).

    Raises:
        SegattnError: wrong count, a non-positive or non-finite weight, an unknown preset, or a
            preset that does not fit the checkpoints (3D, unknown or repeated views).
    """
    n = len(infos)
    if weights is None:
        return [1.0 / n] * n
    if isinstance(weights, str):
        return _preset(infos, weights)
    values = [float(w) for w in weights]
    if len(values) != n:
        raise SegattnError(f"{len(values)} weight(s) given for {n} model(s); give one per model")
    bad = [w for w in values if not math.isfinite(w) or w <= 0]
    if bad:
        raise SegattnError(f"weights must be positive numbers, got {values}")
    total = sum(values)
    return [w / total for w in values]


def _preset(infos: Sequence[CheckpointInfo], name: str) -> list[float]:
    key = name.lower()
    if key not in PRESETS:
        raise SegattnError(f"unknown weights preset {name!r}; known: {sorted(PRESETS)}")
    table = PRESETS[key]
    seen: dict[str, CheckpointInfo] = {}
    for info in infos:
        view = view_of(info)
        if info.mode != "2d":
            raise InputFileError(
                info.path, f"is a 3D model; the {key!r} weights need 2D models of distinct views"
            )
        if view is None:
            raise InputFileError(
                info.path,
                f"2D model without a fixed orientation (its view is unknown); the {key!r} "
                "weights need it",
            )
        if view in seen:
            raise InputFileError(
                info.path,
                f"{view} view like {seen[view].path}; the {key!r} weights need distinct views",
            )
        seen[view] = info
    raw = [table[view_of(info) or ""] for info in infos]
    total = sum(raw)
    return [w / total for w in raw]


def _label_difference(a: CheckpointInfo, b: CheckpointInfo) -> str:
    if len(a.labels) != len(b.labels):
        return f"{len(b.labels)} classes vs {len(a.labels)}"
    names_a = {v: k for k, v in a.labels.items()}
    names_b = {v: k for k, v in b.labels.items()}
    diffs = [f"{i}: {names_b[i]!r} vs {names_a[i]!r}" for i in names_a if names_a[i] != names_b[i]]
    more = f", ... ({len(diffs)} in all)" if len(diffs) > 3 else ""
    return "class " + ", ".join(diffs[:3]) + more
