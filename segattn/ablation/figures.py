"""Figures of an ablation (matplotlib, Agg): box plots per configuration, per-structure Dice
change against the baseline, Dice against parameters and against step time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segattn.ablation.stats import CONFIGURATION, config_axes, label, seed_averaged
from segattn.fileio import atomic_path

TITLES = {"dice": "Dice", "hd95": "HD95 (mm)", "nsd": "NSD"}


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def boxplots(cases: pd.DataFrame, grid: Mapping[str, Any], path: Path) -> Path:
    """One panel per metric: per configuration, the per-case mean over structures (averaged
    over seeds) of every test case."""
    import matplotlib.pyplot as plt

    metrics = list(grid["metrics"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        values = seed_averaged(cases, grid, metric)
        names = list(dict.fromkeys(values[CONFIGURATION]))
        data = [values.loc[values[CONFIGURATION] == n, metric].dropna().to_numpy() for n in names]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"per-case mean {TITLES[metric]}")
        ax.set_title(TITLES[metric])
    return _save(fig, path)


def delta_heatmap(cases: pd.DataFrame, grid: Mapping[str, Any], path: Path) -> Path | None:
    """Mean Dice per structure (over cases, then seeds) minus the baseline's, one row per
    non-baseline configuration; None without a baseline."""
    import matplotlib.pyplot as plt

    keys, baseline = config_axes(grid), dict(grid["baseline"])
    if not baseline or cases.empty:
        return None
    per_cell = cases.groupby([*grid["axes"], "structure"], sort=False, as_index=False)["dice"]
    per_config = per_cell.mean().groupby([*keys, "structure"], sort=False)["dice"].mean()
    table = per_config.unstack("structure")
    structures = list(dict.fromkeys(cases["structure"]))
    table = table[structures]
    rows, names = [], []
    for index in table.index:
        setting = dict(zip(keys, index if isinstance(index, tuple) else (index,), strict=True))
        if all(setting[k] == v for k, v in baseline.items()):
            continue
        ref_key = tuple({**setting, **baseline}[k] for k in keys)
        ref_index = ref_key if len(keys) > 1 else ref_key[0]
        if ref_index not in table.index:
            continue
        rows.append(table.loc[index].to_numpy(float) - table.loc[ref_index].to_numpy(float))
        names.append(label(setting, keys))
    if not rows:
        return None
    delta = np.vstack(rows).T  # structures x configurations
    limit = float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 1.0
    limit = limit or 1.0
    size = (3.2 + 0.9 * len(names), 1.6 + 0.24 * len(structures))
    fig, ax = plt.subplots(figsize=size)
    image = ax.imshow(delta, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(structures)), structures, fontsize=7)
    ax.set_title("Δ Dice against " + label(baseline, list(baseline)), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.08)
    return _save(fig, path)


def scatter(runs: pd.DataFrame, grid: Mapping[str, Any], column: str, path: Path) -> Path | None:
    """Each finished cell's test mean Dice against ``column`` of ``runs.csv``, coloured by
    configuration; None when no cell has both numbers."""
    import matplotlib.pyplot as plt

    keys = config_axes(grid)
    done = runs[(runs["status"] == "done")].dropna(subset=[column, "test_mean_dice"])
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for values, group in done.groupby(keys, sort=False) if keys else [((), done)]:
        setting = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        ax.scatter(group[column], group["test_mean_dice"], label=label(setting, keys), s=28)
    ax.set_xlabel({"n_parameters": "parameters", "seconds_per_step": "seconds per step"}[column])
    ax.set_ylabel("test mean Dice")
    ax.legend(fontsize=7)
    return _save(fig, path)
