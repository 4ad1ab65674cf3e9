"""Per-configuration summaries and paired tests against the baseline, from ``cases.csv``.

- A *configuration* is a combination of the non-seed axes; its cells differ only in seeds.
- Per-case value of a cell: the mean over structures of a metric (NaN structures left out).
- Summary: mean and sample std (``ddof=1``, NaN for one seed) over seeds of the cells' means over
  cases; the same per structure.
- Statistics (Wilcoxon, "Individual comparisons by ranking methods", 1945; Benjamini and
  Hochberg, "Controlling the false discovery rate", 1995): each configuration against its
  baseline (the configuration with the baseline axes set to the baseline values, the other axes
  equal). Each case's per-case mean Dice is first averaged over seeds; the two configurations
  are paired by case; ``scipy.stats.wilcoxon`` (two-sided, zero differences dropped) gives the
  p-value; Benjamini-Hochberg (``scipy.stats.false_discovery_control``) adjusts over all rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

CONFIGURATION = "configuration"
MEAN_ROW = "(mean)"


def config_axes(grid: Mapping[str, Any]) -> list[str]:
    """The non-seed axes of a ``grid.json`` record, in axis order."""
    return [k for k in grid["axes"] if k not in grid["seed_axes"]]


def label(values: Mapping[str, str], keys: Sequence[str]) -> str:
    """``"attention=cse, net=unet"``: short key names (last dotted part) and values."""
    if not keys:
        return "all"
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={values[k]}" for k in keys)


def with_configuration(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``frame`` with a ``configuration`` label column first."""
    frame = frame.copy()
    labels = [label(row, keys) for row in frame[list(keys)].to_dict("records")]
    frame.insert(0, CONFIGURATION, labels if keys else ["all"] * len(frame))
    return frame


def cell_case_means(cases: pd.DataFrame, axes: Sequence[str], metric: str) -> pd.DataFrame:
    """One row per cell and case: the mean of ``metric`` over structures (NaNs left out)."""
    return cases.groupby([*axes, "case"], sort=False, as_index=False)[metric].mean()


def seed_averaged(
    cases: pd.DataFrame, grid: Mapping[str, Any], metric: str = "dice"
) -> pd.DataFrame:
    """One row per configuration and case: the per-case mean over structures, averaged over
    the configuration's seeds."""
    keys = config_axes(grid)
    per_cell = cell_case_means(cases, list(grid["axes"]), metric)
    per_config = per_cell.groupby([*keys, "case"], sort=False, as_index=False)[metric].mean()
    return with_configuration(per_config, keys)


def summarise(cases: pd.DataFrame, grid: Mapping[str, Any]) -> pd.DataFrame:
    """``summary.csv``: per configuration the row ``structure = "(mean)"`` (per-case mean over
    structures, then mean over cases) and one row per structure; for each metric the mean and
    std over seeds of those cell values, and ``n_seeds``."""
    axes, keys, metrics = list(grid["axes"]), config_axes(grid), list(grid["metrics"])
    rows = []
    per_case = cases.groupby([*axes, "case"], sort=False, as_index=False)[metrics].mean()
    overall = per_case.groupby(axes, sort=False, as_index=False)[metrics].mean()
    overall.insert(len(axes), "structure", MEAN_ROW)
    per_structure = cases.groupby([*axes, "structure"], sort=False, as_index=False)[metrics].mean()
    for frame in (overall, per_structure):
        grouped = frame.groupby([*keys, "structure"], sort=False)[metrics]
        summary = grouped.agg(["mean", "std"])
        summary.columns = [f"{m}_{s}" for m, s in summary.columns]
        summary.insert(0, "n_seeds", frame.groupby([*keys, "structure"], sort=False).size())
        rows.append(summary.reset_index())
    table = pd.concat(rows, ignore_index=True)
    return with_configuration(table, keys)


def paired_tests(cases: pd.DataFrame, grid: Mapping[str, Any]) -> pd.DataFrame:
    """``stats.csv``: one row per non-baseline configuration with its axis columns,
    ``baseline`` (its label), ``n_cases``, ``median_diff`` (configuration - baseline, per-case
    mean Dice), ``p_value`` and ``p_adjusted`` (Benjamini-Hochberg over all rows)."""
    keys, baseline = config_axes(grid), dict(grid["baseline"])
    columns = [
        CONFIGURATION,
        *keys,
        "baseline",
        "n_cases",
        "median_diff",
        "p_value",
        "p_adjusted",
    ]
    if not baseline or cases.empty:
        return pd.DataFrame(columns=columns)
    values = seed_averaged(cases, grid, "dice")
    by_config = {
        tuple(name if isinstance(name, tuple) else (name,)): group.set_index("case")["dice"]
        for name, group in values.groupby(keys, sort=False)
    }
    rows = []
    for config, series in by_config.items():
        setting = dict(zip(keys, config, strict=True))
        if all(setting[k] == v for k, v in baseline.items()):
            continue
        reference = by_config.get(tuple({**setting, **baseline}[k] for k in keys))
        if reference is None:
            continue
        paired = pd.concat([series, reference], axis=1, join="inner").dropna()
        x, y = paired.iloc[:, 0].to_numpy(), paired.iloc[:, 1].to_numpy()
        rows.append(
            {
                CONFIGURATION: label(setting, keys),
                **setting,
                "baseline": label({**setting, **baseline}, keys),
                "n_cases": len(x),
                "median_diff": float(np.median(x - y)) if len(x) else math.nan,
                "p_value": wilcoxon_p(x, y),
            }
        )
    table = pd.DataFrame(rows, columns=columns[:-1])
    table["p_adjusted"] = bh_adjust(table["p_value"].to_numpy(dtype=float))
    return table[columns]


def wilcoxon_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value; NaN when scipy cannot test (no pairs,
    or every difference zero)."""
    if len(x) == 0:
        return math.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(scipy_stats.wilcoxon(x, y).pvalue)
    except ValueError:
        return math.nan


def bh_adjust(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the finite entries; NaN stays NaN."""
    adjusted = np.full(len(p_values), math.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        adjusted[finite] = scipy_stats.false_discovery_control(p_values[finite], method="bh")
    return adjusted
