"""Ablation runner: a grid of `segattn train` runs (networks x attention modules x seeds ...),
each predicted and evaluated on a test set, with per-case tables, paired statistics and figures.

Example::

    spec = load_grid("configs/ablation_malc_phantom.yaml")
    outcomes = run_grid(spec, Path("runs/ablation"), jobs=2)
    build_report(Path("runs/ablation"))     # tables and figures from the CSVs alone
"""

from __future__ import annotations

from segattn.ablation.grid import Cell, GridSpec, format_value, is_seed_axis, load_grid
from segattn.ablation.report import build_report
from segattn.ablation.runner import CellOutcome, run_grid

__all__ = [
    "Cell",
    "CellOutcome",
    "GridSpec",
    "build_report",
    "format_value",
    "is_seed_axis",
    "load_grid",
    "run_grid",
]
