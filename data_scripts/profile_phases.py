#!/usr/bin/env python
"""Condense Lightning's simple profiler report into the phases of a training run.

segattn train --config configs/unet2d_scse.yaml --data.root DIR --trainer.profiler simple \
    > run.log 2>&1
python data_scripts/profile_phases.py run.log

Prints a Markdown table: loading + augmentation of the training samples (``train_dataloader_next``,
in the main process with ``num_workers: 0``; with workers only the wait for a batch), forward +
loss (``training_step``), backward, the optimiser update (``optimizer_step`` minus the forward and
backward it wraps), whole-volume validation (``validation_step``; the sanity check included),
loading the validation volumes (``val_next``) and checkpointing (``save_checkpoint``), with seconds
in total, per epoch and as a share of their sum.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_ROW = re.compile(r"^\|\s+(.+?)\s+\|\s+(?:[\d.e+-]+|-)\s+\|\s+(\d+)\s+\|\s+([\d.e+-]+)\s+\|")

PHASES = (
    ("loading + augmentation", "train_dataloader_next"),
    ("forward + loss", "Strategy.training_step"),
    ("backward", "Strategy.backward"),
    ("optimiser update", None),
    ("validation (whole volumes)", "Strategy.validation_step"),
    ("validation loading", "val_next"),
    ("checkpointing", "save_checkpoint"),
)


def parse_report(text: str) -> dict[str, tuple[int, float]]:
    """Action -> (calls, total seconds) from the report's table rows."""
    rows = {}
    for line in text.splitlines():
        match = _ROW.match(line.strip())
        if match:
            rows[match.group(1)] = (int(match.group(2)), float(match.group(3)))
    return rows


def _find(rows: dict[str, tuple[int, float]], suffix: str) -> tuple[int, float]:
    hits = [value for action, value in rows.items() if action.endswith(suffix)]
    return hits[0] if hits else (0, 0.0)


def phases(rows: dict[str, tuple[int, float]]) -> list[tuple[str, float]]:
    """``[(phase, seconds)]`` in the order of :data:`PHASES`."""
    step = _find(rows, "optimizer_step")[1]
    out = []
    for name, suffix in PHASES:
        out.append((name, _find(rows, suffix)[1] if suffix else 0.0))
    forward, backward = out[1][1], out[2][1]
    out[3] = ("optimiser update", max(step - forward - backward, 0.0))
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the phase table of the report in the given log; returns the exit status."""
    p = argparse.ArgumentParser(prog="profile_phases.py", description=__doc__.split("\n")[0])
    p.add_argument("log", help="a file holding the simple profiler's report")
    args = p.parse_args(argv)
    rows = parse_report(Path(args.log).read_text(encoding="utf-8", errors="replace"))
    if not rows:
        print(f"profile_phases.py: error: no profiler report in {args.log}", file=sys.stderr)
        return 1
    epochs = max(_find(rows, "run_training_epoch")[0], 1)
    steps = _find(rows, "Strategy.training_step")[0]
    volumes = _find(rows, "Strategy.validation_step")[0]
    table = phases(rows)
    total = sum(seconds for _, seconds in table) or 1.0
    print(f"{epochs} epochs, {steps} training steps, {volumes} validation volumes")
    print("| phase | s | s/epoch | share |")
    print("|---|---|---|---|")
    for name, seconds in table:
        print(f"| {name} | {seconds:.1f} | {seconds / epochs:.2f} | {100 * seconds / total:.0f}% |")
    print(f"| sum | {total:.1f} | {total / epochs:.2f} | 100% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
