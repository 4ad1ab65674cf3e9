"""Inference: checkpoints -> label maps on the input scans' own grids (see :class:`Predictor`)."""

from __future__ import annotations

from segattn.inference.checkpoint import CheckpointInfo, load_checkpoint
from segattn.inference.inputs import CaseError, InputCase, collect_cases
from segattn.inference.predictor import CaseResult, Predictor

__all__ = [
    "CaseError",
    "CaseResult",
    "CheckpointInfo",
    "InputCase",
    "Predictor",
    "collect_cases",
    "load_checkpoint",
]
