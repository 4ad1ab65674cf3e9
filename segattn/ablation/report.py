"""Tables and figures of a grid folder from its CSVs: ``summary.csv``, ``summary.md``,
``stats.csv`` and ``figures/*.png``, rebuilt from ``cases.csv``, ``runs.csv`` and the grid record
``grid.json`` alone (no cell folder is read), so ``segattn ablate --report DIR`` works on a copied
folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from segattn.ablation.aggregate import CASES, RUNS, read_csv, write_csv
from segattn.ablation.figures import TITLES, boxplots, delta_heatmap, scatter
from segattn.ablation.stats import CONFIGURATION, MEAN_ROW, config_axes, paired_tests, summarise
from segattn.errors import InputFileError
from segattn.fileio import write_text_atomic

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
STATS_CSV = "stats.csv"
FIGURES = "figures"


def read_tables(out: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """``grid.json``, ``cases.csv`` and ``runs.csv`` of a grid folder.

    Raises:
        InputFileError: a file is missing or unreadable.
    """
    try:
        grid = json.loads((out / "grid.json").read_text())
    except FileNotFoundError as err:
        raise InputFileError(out / "grid.json", "no such file (not a grid folder?)") from err
    except (OSError, ValueError) as err:
        raise InputFileError(out / "grid.json", f"cannot read JSON ({err})") from err
    axes = list(grid["axes"])
    frames = []
    for name, text in ((CASES, [*axes, "case", "structure"]), (RUNS, [*axes, "cell", "status"])):
        path = out / name
        if not path.is_file():
            raise InputFileError(path, "no such file")
        try:
            frames.append(read_csv(path, text))
        except (OSError, ValueError) as err:
            raise InputFileError(path, f"cannot read CSV ({err})") from err
    return grid, frames[0], frames[1]


def build_report(out: Path) -> list[Path]:
    """Write the summary, the statistics and the figures of the grid folder ``out``.

    Returns:
        the files written.
    """
    grid, cases, runs = read_tables(out)
    summary = summarise(cases, grid)
    tests = paired_tests(cases, grid)
    write_csv(summary, out / SUMMARY_CSV)
    write_csv(tests, out / STATS_CSV)
    write_text_atomic(out / SUMMARY_MD, markdown(grid, summary, tests, runs))
    written = [out / SUMMARY_CSV, out / STATS_CSV, out / SUMMARY_MD]
    if not cases.empty:
        figures = out / FIGURES
        made = [
            boxplots(cases, grid, figures / "boxplots.png"),
            delta_heatmap(cases, grid, figures / "delta_dice_heatmap.png"),
            scatter(runs, grid, "n_parameters", figures / "dice_vs_parameters.png"),
            scatter(runs, grid, "seconds_per_step", figures / "dice_vs_step_time.png"),
        ]
        written += [p for p in made if p is not None]
    return written


def _cell(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def markdown(
    grid: dict[str, Any], summary: pd.DataFrame, tests: pd.DataFrame, runs: pd.DataFrame
) -> str:
    """``summary.md``: the overall table, the tests against the baseline, Dice per structure."""
    metrics = list(grid["metrics"])
    done = int((runs["status"] == "done").sum())
    failed = runs.loc[runs["status"] == "failed", "cell"].tolist()
    seeds = ", ".join(f"{k} ({len(grid['axes'][k])})" for k in grid["seed_axes"]) or "none"
    lines = [
        "# Ablation summary",
        "",
        f"Grid `{grid['grid']}`: {len(runs)} cells, {done} finished"
        + (f", {len(failed)} failed ({', '.join(failed)})" if failed else "")
        + f". Seed axes pooled: {seeds}.",
        "",
        "## Test set, mean over cases (mean ± std over seeds)",
        "",
        "Per case: the mean over structures; per cell: the mean over cases.",
        "",
        "| configuration | seeds | " + " | ".join(TITLES[m] for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    overall = summary[summary["structure"] == MEAN_ROW]
    for row in overall.to_dict("records"):
        cells = [_cell(row[f"{m}_mean"], row[f"{m}_std"], 2 if m == "hd95" else 3) for m in metrics]
        lines.append(f"| {row[CONFIGURATION]} | {row['n_seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "## Against the baseline", ""]
    if tests.empty:
        lines.append("No baseline comparison (no `baseline` in the grid, or no results).")
    else:
        lines += [
            "Paired Wilcoxon signed-rank test over test cases of the per-case mean Dice (each "
            "case averaged over seeds); p adjusted by Benjamini-Hochberg over all rows.",
            "",
            "| configuration | baseline | cases | median Δ Dice | p | p (BH) |",
            "|---|---|---|---|---|---|",
        ]
        for row in tests.to_dict("records"):
            lines.append(
                f"| {row[CONFIGURATION]} | {row['baseline']} | {row['n_cases']} | "
                f"{row['median_diff']:+.4f} | {row['p_value']:.3g} | {row['p_adjusted']:.3g} |"
            )
    per_structure = summary[summary["structure"] != MEAN_ROW]
    configurations = list(dict.fromkeys(summary[CONFIGURATION]))
    lines += [
        "",
        "## Dice per structure (mean ± std over seeds)",
        "",
        "| structure | " + " | ".join(configurations) + " |",
        "|---|" + "---|" * len(configurations),
    ]
    for structure, group in per_structure.groupby("structure", sort=False):
        by_config = {r[CONFIGURATION]: r for r in group.to_dict("records")}
        cells = [
            _cell(by_config[c]["dice_mean"], by_config[c]["dice_std"]) if c in by_config else "–"
            for c in configurations
        ]
        lines.append(f"| {structure} | " + " | ".join(cells) + " |")
    keys = config_axes(grid)
    lines += ["", f"Configuration axes: {', '.join(keys) or 'none'}.", ""]
    return "\n".join(lines)
