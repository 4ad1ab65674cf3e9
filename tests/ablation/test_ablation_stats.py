"""stats.csv equals scipy's Wilcoxon and Benjamini-Hochberg recomputed from cases.csv by plain
loops; summary.csv equals a hand computation."""

from __future__ import annotations

import csv
import itertools
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segattn.ablation.stats import paired_tests, summarise

GRID = {
    "axes": {
        "model.net": ["unet", "quicknat"],
        "model.attention": ["none", "cse", "sse"],
        "seed_everything": ["0", "1"],
    },
    "seed_axes": ["seed_everything"],
    "baseline": {"model.attention": "none"},
    "metrics": ["dice", "nsd"],
}


def _expected_stats(rows: list[dict[str, str]], grid: dict) -> dict[tuple, tuple]:
    """(net, attention) -> (n, median diff, p) by loops over the CSV rows, then BH."""
    per_cell_case: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        value = float(row["dice"])
        key = (row["model.net"], row["model.attention"], row["seed_everything"], row["case"])
        if not math.isnan(value):
            per_cell_case[key].append(value)
    per_config_case: dict[tuple, list[float]] = defaultdict(list)
    for (net, attention, _, case), values in per_cell_case.items():
        per_config_case[net, attention, case].append(sum(values) / len(values))
    cases = sorted({r["case"] for r in rows})
    out = {}
    for net, attention in itertools.product(
        *(grid["axes"][k] for k in ("model.net", "model.attention"))
    ):
        if attention == "none":
            continue
        x, y = [], []
        for case in cases:
            a, b = (
                per_config_case.get((net, attention, case)),
                per_config_case.get((net, "none", case)),
            )
            if a and b:
                x.append(sum(a) / len(a))
                y.append(sum(b) / len(b))
        p = stats.wilcoxon(x, y).pvalue
        out[net, attention] = (len(x), float(np.median(np.subtract(x, y))), float(p))
    keys = list(out)
    adjusted = stats.false_discovery_control([out[k][2] for k in keys], method="bh")
    return {k: (*out[k], float(a)) for k, a in zip(keys, adjusted)}


def _synthetic(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    path = tmp_path / "cases.csv"
    effect = {"none": 0.0, "cse": 0.02, "sse": -0.05}
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["model.net", "model.attention", "seed_everything", "case", "structure", "dice", "nsd"]
        )
        for net, attention, seed in itertools.product(*GRID["axes"].values()):
            if (net, attention, seed) == ("quicknat", "sse", "1"):
                continue  # a failed cell: its configuration has one seed
            for case in range(11):
                for structure in ("liver", "spleen", "kidney"):
                    dice = 0.7 + effect[attention] + 0.05 * rng.standard_normal()
                    if rng.random() < 0.1:
                        dice = math.nan  # absent from both
                    writer.writerow(
                        [
                            net,
                            attention,
                            seed,
                            f"{case:03d}",
                            structure,
                            f"{dice:.6f}",
                            f"{dice - 0.1:.6f}",
                        ]
                    )
    return path


def _check(cases_csv: Path, table: pd.DataFrame, grid: dict) -> None:
    with cases_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    expected = _expected_stats(rows, grid)
    assert len(table) == len(expected)
    for row in table.to_dict("records"):
        n, median, p, p_adj = expected[row["model.net"], row["model.attention"]]
        assert row["n_cases"] == n
        assert row["median_diff"] == pytest.approx(median, abs=1e-9)
        assert row["p_value"] == pytest.approx(p, rel=1e-9)
        assert row["p_adjusted"] == pytest.approx(p_adj, rel=1e-9)


def test_stats_equal_scipy_on_a_synthetic_grid(tmp_path: Path) -> None:
    path = _synthetic(tmp_path)
    cases = pd.read_csv(
        path, dtype={"model.net": str, "model.attention": str, "seed_everything": str, "case": str}
    )
    table = paired_tests(cases, GRID)
    assert list(table.columns) == [
        "configuration",
        "model.net",
        "model.attention",
        "baseline",
        "n_cases",
        "median_diff",
        "p_value",
        "p_adjusted",
    ]
    assert table["configuration"].tolist() == [
        "net=unet, attention=cse",
        "net=unet, attention=sse",
        "net=quicknat, attention=cse",
        "net=quicknat, attention=sse",
    ]
    assert table["baseline"].tolist()[2] == "net=quicknat, attention=none"
    _check(path, table, GRID)
    worse = table[table["model.attention"] == "sse"]  # 0.05 below the baseline by construction
    assert (worse["median_diff"] < 0).all() and (worse["p_value"] < 0.06).all()

    summary = summarise(cases, GRID)
    row = summary[
        (summary["configuration"] == "net=unet, attention=cse") & (summary["structure"] == "(mean)")
    ].iloc[0]
    per_seed = []
    for seed in ("0", "1"):
        cell = cases[
            (cases["model.net"] == "unet")
            & (cases["model.attention"] == "cse")
            & (cases["seed_everything"] == seed)
        ]
        per_seed.append(np.mean([np.nanmean(g["dice"]) for _, g in cell.groupby("case")]))
    assert row["dice_mean"] == pytest.approx(np.mean(per_seed))
    assert row["dice_std"] == pytest.approx(np.std(per_seed, ddof=1))
    one_seed = summary[summary["configuration"] == "net=quicknat, attention=sse"]
    assert (one_seed["n_seeds"] == 1).all() and one_seed["dice_std"].isna().all()


def test_stats_csv_of_a_run_equals_scipy_from_its_cases_csv(finished_grid: Path) -> None:
    grid = {
        **GRID,
        "axes": {
            "model.net": ["unet"],
            **{k: v for k, v in GRID["axes"].items() if k != "model.net"},
        },
    }
    table = pd.read_csv(finished_grid / "stats.csv", dtype={"model.attention": str})
    with (finished_grid / "cases.csv").open() as fh:
        rows = [{**r, "model.net": "unet"} for r in csv.DictReader(fh)]
    expected = _expected_stats(
        rows, {**grid, "axes": {**grid["axes"], "model.attention": ["none", "cse"]}}
    )
    assert len(table) == 1 and table["n_cases"].iloc[0] == 3
    n, median, p, p_adj = expected["unet", "cse"]
    assert table["median_diff"].iloc[0] == pytest.approx(median, abs=1e-6)  # CSV: 6 decimals
    assert table["p_value"].iloc[0] == pytest.approx(p, abs=1e-6)
    assert table["p_adjusted"].iloc[0] == pytest.approx(p_adj, abs=1e-6)
