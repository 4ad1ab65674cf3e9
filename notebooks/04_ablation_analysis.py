# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Ablation analysis: does an attention module help, and how sure can we be?
#
# Roy et al. (MICCAI 2018, https://arxiv.org/abs/1803.02579) compare a U-Net without attention
# against the same network with cSE, sSE and scSE after every block. `segattn ablate` runs such
# a grid (configurations x seeds), evaluates each cell on a test set and writes `cases.csv`
# (cell x case x structure), `runs.csv` (per cell: steps, time, parameters), `summary.csv` and
# `stats.csv` (paired Wilcoxon tests against the baseline). This notebook reads those CSVs and
# looks at them the way a reviewer would:
#
# 1. the configurations' Dice with the spread over seeds, overall and per structure;
# 2. per-case box plots and the per-case differences against the baseline;
# 3. the paired tests recomputed here from `cases.csv` with scipy, beside `stats.csv`;
# 4. per-structure Δ Dice, Dice against parameters and step time;
# 5. what these numbers can and cannot support.
#
# Give a finished grid folder (`segattn ablate --out DIR`) as `GRID`, or leave it `None`: the
# notebook then generates MALC-like phantoms and runs a small grid itself.

# %% tags=["parameters"]
import os
from pathlib import Path

FAST = os.environ.get("SEGATTN_NOTEBOOK_FAST") == "1"
OUT = Path(os.environ.get("SEGATTN_NOTEBOOK_OUT", "notebook_outputs/04_ablation_analysis"))
# a finished grid folder to analyse (e.g. runs/ablation_malc_phantom); None runs the grid below
GRID = os.environ.get("SEGATTN_ABLATION_GRID") or None
# the grid run when GRID is None: MALC-like phantoms, a 2D U-Net on coronal slices
CASES = 9 if FAST else 18  # phantoms generated, of which TEST_CASES are the test set
TEST_CASES = 4 if FAST else 8
SIZE = 32 if FAST else 48  # voxels per axis
ATTENTION = [None, "scse"] if FAST else [None, "cse", "sse", "scse"]
SEEDS = [0, 1] if FAST else [0, 1, 2]
EPOCHS = 1 if FAST else 6
STEPS_PER_EPOCH = 2 if FAST else None  # None: every training slice once per epoch
FEATURES = [4, 8] if FAST else [8, 16, 32, 64]
BATCH_SIZE = 4 if FAST else 16
JOBS = 2  # cells trained at once, one CPU thread each

# %%
import json
import logging
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from scipy import stats

from segattn.ablation import load_grid, run_grid
from segattn.ablation.aggregate import read_csv
from segattn.ablation.report import read_tables
from segattn.data.phantoms import make_malc_dataset

OUT.mkdir(parents=True, exist_ok=True)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
pd.set_option("display.width", 140)

# %% [markdown]
# ## The grid
#
# Without a given folder: phantoms in nnU-Net layout (`imagesTs/labelsTs` is the test set), a
# `segattn train` base config written here, and a grid file over `model.attention` x
# `seed_everything` with the plain U-Net as baseline. `run_grid` is what `segattn ablate
# --config grid.yaml --out DIR --jobs JOBS --threads-per-job 1` runs: every cell in its own
# process, then `cases.csv`, `runs.csv`, `summary.csv`, `stats.csv` and the figures.

# %%
if GRID is None:
    data = OUT / "data"
    make_malc_dataset(data, cases=CASES, size=SIZE, seed=0, test_cases=TEST_CASES, overwrite=True)
    base = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": EPOCHS, "log_every_n_steps": 1},
        "model": {
            "features": FEATURES,
            "attention": "scse",
            "norm": "instance",
            "loss": "dice_ce",
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01, "weight_decay": 1e-5}},
        },
        "data": {"mode": "2d", "slice_axis": "coronal", "batch_size": BATCH_SIZE, "val_fraction": 0.2},
    }
    overrides = {"trainer.num_sanity_val_steps": 0}
    if STEPS_PER_EPOCH is not None:
        overrides.update({"trainer.limit_train_batches": STEPS_PER_EPOCH, "trainer.limit_val_batches": 1})
    grid_file = {
        "base": "train.yaml",
        "data_root": str(data.resolve()),
        "test": {"images": "imagesTs", "labels": "labelsTs"},
        "metrics": ["dice", "hd95", "nsd"],
        "axes": {"model.attention": ATTENTION, "seed_everything": SEEDS},
        "baseline": {"model.attention": None},
        "overrides": overrides,
    }
    (OUT / "train.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    (OUT / "grid.yaml").write_text(yaml.safe_dump(grid_file, sort_keys=False))
    outcomes = run_grid(load_grid(OUT / "grid.yaml"), OUT / "grid", jobs=JOBS, threads=1, force=True)
    failed = [(o.cell.name, o.error) for o in outcomes if o.status == "failed"]
    assert not failed, failed
    GRID = OUT / "grid"
GRID = Path(GRID)
sorted(p.name for p in GRID.iterdir())

# %% [markdown]
# ## The tables
#
# `read_tables` reads `grid.json` (axes, seed axes, baseline), `cases.csv` and `runs.csv` with
# the axis values kept as text (`none`, `scse`, `0`); `summary.csv` and `stats.csv` are what
# `segattn ablate` derived from them.

# %%
grid, cases, runs = read_tables(GRID)
seed_axes = list(grid["seed_axes"])
config_axes = [k for k in grid["axes"] if k not in seed_axes]
metrics = list(grid["metrics"])
summary = read_csv(GRID / "summary.csv", ["configuration", *config_axes, "structure"])
tests = read_csv(GRID / "stats.csv", ["configuration", *config_axes, "baseline"])


def config_label(row):
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={row[k]}" for k in config_axes) or "all"


cases["configuration"] = cases.apply(config_label, axis=1)
runs["configuration"] = runs.apply(config_label, axis=1)
configurations = list(dict.fromkeys(cases["configuration"]))
# each configuration that is not a baseline -> its baseline (baseline axes set, other axes equal)
settings = {config_label(r): r for r in cases[config_axes].drop_duplicates().to_dict("records")}
reference = {}
for name, setting in settings.items():
    ref = config_label({**setting, **grid["baseline"]})
    if grid["baseline"] and ref != name and ref in settings:
        reference[name] = ref
others = list(reference)
baseline = ", ".join(dict.fromkeys(reference.values())) or None
n_cases = cases["case"].nunique()
n_seeds = cases.groupby("configuration")[seed_axes].nunique().min().min() if seed_axes else 1
print(f"{len(runs)} cells ({(runs['status'] == 'done').sum()} done), {len(configurations)} configurations "
      f"x {n_seeds} seeds, {n_cases} test cases, {cases['structure'].nunique()} structures; baseline: {baseline}")
runs[[*grid["axes"], "status", "epochs", "steps", "train_seconds", "seconds_per_step", "n_parameters",
      "best_val_dice", "test_mean_dice"]]

# %% [markdown]
# ### Per configuration
#
# Per case the mean over structures (a structure absent from both prediction and reference is
# left out), per cell the mean over cases, then mean ± std over seeds. Recomputed here from
# `cases.csv` and checked against `summary.csv`.

# %%
per_cell_case = cases.groupby([*grid["axes"], "configuration", "case"], sort=False, as_index=False)[metrics].mean()
per_cell = per_cell_case.groupby([*grid["axes"], "configuration"], sort=False, as_index=False)[metrics].mean()
mine = per_cell.groupby("configuration", sort=False)[metrics].agg(["mean", "std"])
mine.columns = [f"{m}_{s}" for m, s in mine.columns]
overall = summary[summary["structure"] == "(mean)"].set_index("configuration")
for column in mine:
    assert np.allclose(mine[column], overall.loc[mine.index, column], atol=1e-5, equal_nan=True), column
table = pd.DataFrame(
    {m: [f"{a:.3f} ± {b:.3f}" for a, b in zip(mine[f"{m}_mean"], mine[f"{m}_std"])] for m in metrics},
    index=mine.index,
)
table.insert(0, "seeds", overall.loc[mine.index, "n_seeds"])
table

# %% [markdown]
# ### Per structure
#
# Mean Dice over cases per cell, then mean over seeds (`summary.csv`, one row per structure);
# the last column is the largest std over seeds among the configurations.

# %%
per_structure = summary[summary["structure"] != "(mean)"]
dice_table = per_structure.pivot(index="structure", columns="configuration", values="dice_mean")
dice_table = dice_table.loc[list(dict.fromkeys(per_structure["structure"])), configurations]
dice_table["max seed std"] = per_structure.pivot(index="structure", columns="configuration", values="dice_std").max(axis=1)
dice_table.round(3)

# %% [markdown]
# ## Per case: box plots and paired differences
#
# Left: per configuration, each test case's mean Dice over structures averaged over seeds (the
# values the tests use), the box over cases, the triangle the mean; the small dots are the
# single seeds. Right: each case's difference to the baseline, per seed (dots) and averaged
# over seeds (crosses). A module that helps moves every case up, whatever the seed.

# %%
seed_avg = per_cell_case.groupby(["configuration", "case"], sort=False, as_index=False)[metrics].mean()
fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [len(configurations), max(1, len(configurations) - 1)]})
rng = np.random.default_rng(0)
for i, name in enumerate(configurations, start=1):
    values = seed_avg.loc[seed_avg["configuration"] == name, "dice"].dropna()
    axes[0].boxplot([values], positions=[i], widths=0.5, showmeans=True)
    single = per_cell_case.loc[per_cell_case["configuration"] == name, "dice"]
    axes[0].scatter(i + rng.uniform(-0.18, 0.18, len(single)), single, s=10, color="0.5", alpha=0.7, zorder=3)
axes[0].set_xticks(range(1, len(configurations) + 1), configurations, rotation=20, ha="right", fontsize=8)
axes[0].set_ylabel("per-case mean Dice")
axes[0].set_title(f"{n_cases} test cases, {n_seeds} seed(s)")
if others:
    paired = per_cell_case.pivot_table(index=["case", *seed_axes], columns="configuration", values="dice")
    for i, name in enumerate(others, start=1):
        delta = (paired[name] - paired[reference[name]]).dropna()
        axes[1].scatter(i + rng.uniform(-0.15, 0.15, len(delta)), delta, s=12, color="0.5", alpha=0.7)
        mean_delta = delta.groupby(level="case").mean()
        axes[1].scatter(np.full(len(mean_delta), i), mean_delta, marker="x", s=50, color="tab:red")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_xticks(range(1, len(others) + 1), others, rotation=20, ha="right", fontsize=8)
    axes[1].set_ylabel("Δ per-case mean Dice vs baseline")
    axes[1].set_title("paired differences")
else:
    axes[1].axis("off")
fig.tight_layout()
fig.savefig(OUT / "boxplots.png", dpi=80)

# %% [markdown]
# ## Paired tests, recomputed
#
# For each configuration against its baseline (the other axes equal): each case's mean Dice over
# structures averaged over seeds, paired by case, a two-sided Wilcoxon signed-rank test
# (`scipy.stats.wilcoxon`, zero differences dropped), p-values adjusted over all comparisons by
# Benjamini-Hochberg (`scipy.stats.false_discovery_control`). Beside it, the effect sizes a
# p-value hides: the mean and median per-case difference, the share of cases that improved,
# and the matched-pairs rank-biserial correlation `r = (W+ - W-) / (W+ + W-)` (+1: every case
# up, -1: every case down).

# %%
pivot = seed_avg.pivot(index="case", columns="configuration", values="dice")
rows = []
for name in others:
    pair = pivot[[name, reference[name]]].dropna()
    diff = (pair[name] - pair[reference[name]]).to_numpy()
    nonzero = diff[diff != 0]
    ranks = stats.rankdata(np.abs(nonzero))
    w_plus, w_minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    try:
        p = stats.wilcoxon(pair[name], pair[reference[name]]).pvalue
    except ValueError:  # every difference zero: nothing to test
        p = np.nan
    rows.append({
        "configuration": name, "baseline": reference[name], "n_cases": len(diff),
        "mean_diff": diff.mean(), "median_diff": np.median(diff), "improved": f"{(diff > 0).sum()}/{len(diff)}",
        "rank_biserial": (w_plus - w_minus) / (w_plus + w_minus) if len(nonzero) else np.nan, "p_value": p,
    })
recomputed = pd.DataFrame(rows, columns=["configuration", "baseline", "n_cases", "mean_diff", "median_diff",
                                         "improved", "rank_biserial", "p_value"])
finite = recomputed["p_value"].notna()
recomputed["p_adjusted"] = np.nan
if finite.any():
    recomputed.loc[finite, "p_adjusted"] = stats.false_discovery_control(recomputed.loc[finite, "p_value"], method="bh")
side = recomputed.merge(tests[["configuration", "n_cases", "median_diff", "p_value", "p_adjusted"]],
                        on="configuration", suffixes=("", " (stats.csv)"))
assert len(side) == len(tests) == len(recomputed)
for column in ("n_cases", "median_diff", "p_value", "p_adjusted"):
    assert np.allclose(side[column].astype(float), side[f"{column} (stats.csv)"].astype(float),
                       atol=1e-5, equal_nan=True), column
side.round(4)

# %% [markdown]
# With n cases and no ties, the exact two-sided signed-rank test cannot give a p-value below
# `2 / 2**n`: it is reached when every case moves the same way, however large or small the
# differences are.

# %%
pd.DataFrame({"cases": (n := np.array([3, 4, 5, 6, 8, 10, 15, 20]))[:, None].ravel(),
              "smallest two-sided p": 2.0 / 2.0**n}).set_index("cases").T

# %% [markdown]
# ## Per structure: Δ Dice against the baseline
#
# Mean Dice per structure (over cases, then seeds) minus the baseline's. A mean gain can hide
# losses on some structures; small structures move most from a few voxels.

# %%
struct = cases.groupby([*grid["axes"], "configuration", "structure"], sort=False, as_index=False)["dice"].mean()
struct = struct.groupby(["configuration", "structure"], sort=False)["dice"].mean().unstack("configuration")
struct = struct.loc[list(dict.fromkeys(cases["structure"]))]
delta = pd.DataFrame({name: struct[name] - struct[reference[name]] for name in others}, index=struct.index)
if not others:  # no baseline in the grid: the Dice itself
    delta = struct
limit = float(np.nanmax(np.abs(delta.to_numpy()))) if np.isfinite(delta.to_numpy()).any() else 1.0
limit = limit or 1.0
fig, ax = plt.subplots(figsize=(3.0 + 1.1 * delta.shape[1], 1.5 + 0.22 * len(delta)))
image = ax.imshow(delta.to_numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
ax.set_xticks(range(delta.shape[1]), delta.columns, rotation=20, ha="right", fontsize=8)
ax.set_yticks(range(len(delta)), delta.index, fontsize=7)
ax.set_title(f"Δ Dice vs baseline ({baseline})", fontsize=9)
fig.colorbar(image, ax=ax, fraction=0.08)
fig.tight_layout()
fig.savefig(OUT / "delta_dice_heatmap.png", dpi=80)
delta.round(3).T

# %% [markdown]
# ## Dice against cost
#
# Each cell's test mean Dice against its parameter count and its training time per step
# (`runs.csv`). Attention modules add few parameters; their cost shows in the step time, which
# on a shared machine also carries the load of everything else running.

# %%
done = runs[runs["status"] == "done"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for name, group in done.groupby("configuration", sort=False):
    for ax, column in zip(axes, ("n_parameters", "seconds_per_step")):
        ax.scatter(group[column], group["test_mean_dice"], label=name, s=30)
axes[0].set_xlabel("parameters")
axes[1].set_xlabel("seconds per training step")
axes[0].set_ylabel("test mean Dice (one dot per cell)")
axes[1].legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "dice_vs_cost.png", dpi=80)
done.groupby("configuration", sort=False)[["n_parameters", "seconds_per_step", "test_mean_dice"]].agg(["mean", "std"]).round(4)

# %% [markdown]
# ## Effect against seed spread
#
# The seeds of one configuration differ only in initialisation and sampling. If the difference
# between two configurations is not larger than the spread between seeds of either, a second
# grid with other seeds could well reverse it. Per seed, the same-seed difference shows whether
# the sign holds.

# %%
cell_dice = per_cell.pivot_table(index=seed_axes, columns="configuration", values="dice") if seed_axes else None
rows = []
for name in others:
    ref = reference[name]
    row = {"configuration": name, "baseline": ref,
           "mean Δ Dice": mine.loc[name, "dice_mean"] - mine.loc[ref, "dice_mean"],
           "seed std (config)": mine.loc[name, "dice_std"], "seed std (baseline)": mine.loc[ref, "dice_std"]}
    if cell_dice is not None:
        same_seed = cell_dice[name] - cell_dice[ref]
        row["Δ per seed"] = ", ".join(f"{v:+.3f}" for v in same_seed)
        row["same sign in every seed"] = bool((same_seed > 0).all() or (same_seed < 0).all())
    row["|Δ| / larger seed std"] = abs(row["mean Δ Dice"]) / max(row["seed std (config)"], row["seed std (baseline)"])
    rows.append(row)
spread = pd.DataFrame(rows)
spread.round(3)

# %% [markdown]
# ## A reviewer's reading
#
# - **What is compared.** Each cell is one training run; a configuration's seeds are
#   repetitions, pooled, never compared. The tests pair *test cases*: every case's Dice is first
#   averaged over seeds. So the p-value says how consistently the test cases moved, for these
#   trained networks; it says nothing about how much another training run (another seed, another
#   schedule) would move. The seed spread above is the only evidence on that, and with 2-3 seeds
#   its own estimate is rough (a std from 2 values is one difference).
# - **Effect size before p.** Read the mean and median per-case difference and the rank-biserial
#   r against the seed std. A difference smaller than the seed spread, or one whose sign flips
#   between seeds, is not established whatever the p-value.
# - **Number of cases.** With n test cases the exact test cannot go below 2/2^n (0.25 at 3
#   cases, 0.125 at 4, 0.0078 at 8): at fewer than 6 cases nothing reaches 0.05, and at 8 the
#   smallest p only says *every* case moved the same way, not by how much. A non-significant
#   result at small n is no evidence of no effect.
# - **Multiple testing.** One test per configuration against the baseline; `p_adjusted` controls
#   the false discovery rate over those comparisons (Benjamini-Hochberg). Looking at the
#   per-structure heatmap for "the structure where it helps" is a further, uncorrected search.
# - **Per-case mean Dice.** Averaging over structures weighs a small nucleus like the white
#   matter; missed small structures (Dice 0) dominate it early in training. HD95 is dominated by
#   missed structures (they score the image diagonal).
# - **What generalises.** Phantoms from one generator, one dataset split, one short schedule:
#   the result is about learning speed on this data, not about trained networks on real scans.
#   Claims about the modules need real data, longer schedules, more seeds and ideally
#   cross-validation folds as further test cases.
#
# The numbers of this grid, in the same terms:

# %%
lines = [f"{n_cases} test cases, {n_seeds} seed(s) per configuration, {len(recomputed)} comparison(s) "
         f"against {baseline}; smallest attainable two-sided p at {n_cases} cases: {2 / 2**n_cases:.4g}."]
for row, extra in zip(recomputed.to_dict("records"), spread.to_dict("records")):
    verdict = "larger than" if extra["|Δ| / larger seed std"] > 1 else "not larger than"
    lines.append(
        f"- {row['configuration']}: mean Δ Dice {row['mean_diff']:+.3f} (median {row['median_diff']:+.3f}, "
        f"{row['improved']} cases up, r = {row['rank_biserial']:+.2f}), p = {row['p_value']:.3g}, "
        f"BH {row['p_adjusted']:.3g}; the effect is {verdict} the seed spread "
        f"({extra['|Δ| / larger seed std']:.1f}x the larger seed std)."
    )
if FAST and GRID == OUT / "grid":
    lines.append("Fast setting: one epoch of two steps; these numbers only show that the analysis runs.")
print("\n".join(lines))
