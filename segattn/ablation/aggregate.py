"""Collect the cells' results into ``cases.csv`` (long format) and ``runs.csv``.

``cases.csv``: one row per finished cell x case x structure; one column per axis named by its
dotted key (values as in :func:`segattn.ablation.grid.format_value`), then ``case``,
``structure`` and one column per metric (``nan`` where a structure is absent from prediction and
label, or not annotated).

``runs.csv``: one row per cell of the grid: the axis columns, ``cell`` (folder name),
``status`` (``done``, ``failed`` or ``pending``), ``error``, ``epochs``, ``steps``,
``train_seconds``, ``seconds_per_step``, ``peak_memory_mb`` (peak resident memory of the training
process), ``peak_gpu_memory_mb``, ``n_parameters``, ``best_val_dice``, ``test_mean_dice`` (mean
over test cases of the per-case mean Dice over structures) and ``resumed_from_step``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from segattn.ablation.cell import CASES_CSV, ERROR_TXT, RESULT_JSON, cell_dir, is_done
from segattn.ablation.grid import Cell, GridSpec, format_value
from segattn.fileio import atomic_path

CASES = "cases.csv"
RUNS = "runs.csv"
RUN_COLUMNS = (
    "cell",
    "status",
    "error",
    "epochs",
    "steps",
    "train_seconds",
    "seconds_per_step",
    "peak_memory_mb",
    "peak_gpu_memory_mb",
    "n_parameters",
    "best_val_dice",
    "test_mean_dice",
    "resumed_from_step",
)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` to ``path`` atomically (``nan`` for missing numbers, 6 decimals)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, na_rep="nan", float_format="%.6f")


def read_csv(path: Path, text_columns: Sequence[str]) -> pd.DataFrame:
    """A CSV written by :func:`write_csv`, ``text_columns`` kept as strings."""
    return pd.read_csv(
        path, dtype={c: str for c in text_columns}, keep_default_na=False, na_values=["nan"]
    )


def aggregate(out: Path, spec: GridSpec, cells: Sequence[Cell]) -> tuple[Path, Path]:
    """Write ``out/cases.csv`` and ``out/runs.csv`` from the cell folders.

    Returns:
        the two paths.
    """
    axes = list(spec.axes)
    metrics = list(spec.metrics)
    frames, runs = [], []
    for cell in cells:
        folder = cell_dir(out, cell)
        values = {k: format_value(v) for k, v in cell.params.items()}
        run: dict[str, Any] = {**values, **{c: math.nan for c in RUN_COLUMNS}}
        run.update(cell=cell.name, status="pending", error="")
        if is_done(folder, cell.digest):
            result = json.loads((folder / RESULT_JSON).read_text())
            run.update({k: result[k] for k in RUN_COLUMNS if k in result})
            run.update(status="done", error="")
            cases = read_csv(folder / CASES_CSV, ["case", "label"])
            cases = cases.rename(columns={"label": "structure"})[["case", "structure", *metrics]]
            for key in reversed(axes):
                cases.insert(0, key, values[key])
            frames.append(cases)
        elif (folder / ERROR_TXT).is_file():
            run.update(status="failed", error=(folder / ERROR_TXT).read_text().strip())
        runs.append(run)
    columns = [*axes, "case", "structure", *metrics]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    write_csv(table[columns], out / CASES)
    write_csv(pd.DataFrame(runs, columns=[*axes, *RUN_COLUMNS]), out / RUNS)
    return out / CASES, out / RUNS
