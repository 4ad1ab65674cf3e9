"""Run a grid: check it against the folder's record, run the unfinished cells (local processes
or SLURM jobs), then aggregate and report.

``OUT/grid.json`` records the grid at its first run (axes, baseline, metrics, seed axes, one
digest per cell). A later run with another set of digests is refused unless ``force``: then
cells whose digest changed are emptied and rerun, new cells run, and cells no longer in the grid
stay on disk but leave the tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segattn.ablation.aggregate import aggregate
from segattn.ablation.cell import ERROR_TXT, LOG, cell_dir, is_done, prepare_cell, recorded_digest
from segattn.ablation.grid import Cell, GridSpec, format_value
from segattn.ablation.report import build_report
from segattn.errors import SegattnError
from segattn.fileio import write_text_atomic

GRID_JSON = "grid.json"


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell in this run: ``"done"`` (already finished, skipped),
    ``"ran"`` or ``"failed"`` (with the one-line error)."""

    cell: Cell
    status: str
    error: str | None = None


def grid_record(spec: GridSpec, cells: Sequence[Cell]) -> dict[str, Any]:
    """What ``grid.json`` holds (axis values as written in the CSVs)."""
    return {
        "grid": str(spec.path),
        "axes": {k: [format_value(v) for v in vs] for k, vs in spec.axes.items()},
        "seed_axes": spec.seed_axes,
        "baseline": {k: format_value(v) for k, v in spec.baseline.items()},
        "metrics": list(spec.metrics),
        "nsd_tolerance": spec.nsd_tolerance,
        "cells": {c.name: c.digest for c in cells},
    }


def check_grid(
    out: Path, spec: GridSpec, cells: Sequence[Cell], force: bool, write: bool = True
) -> None:
    """Refuse a grid that differs from the one recorded in ``out`` (or a cell folder holding
    another digest) unless ``force``; then (re)write ``grid.json`` when ``write``.

    Raises:
        SegattnError: the grid changed and ``force`` is False.
    """
    record = grid_record(spec, cells)
    path = out / GRID_JSON
    if not force:
        if path.is_file():
            old = json.loads(path.read_text()).get("cells", {})
            new = record["cells"]
            added = sorted(set(new) - set(old))
            removed = sorted(set(old) - set(new))
            changed = sorted(n for n in set(new) & set(old) if new[n] != old[n])
            if added or removed or changed:
                example = (changed or added or removed)[0]
                raise SegattnError(
                    f"{out}: the grid differs from the one run there ({len(added)} cell(s) "
                    f"added, {len(removed)} removed, {len(changed)} changed, e.g. {example}); "
                    "use --force to rerun what changed, or another --out"
                )
        for cell in cells:
            folder = cell_dir(out, cell)
            digest = recorded_digest(folder)
            if digest is not None and digest != cell.digest:
                raise SegattnError(
                    f"{folder}: holds a run of another config (digest {digest[:12]} != "
                    f"{cell.digest[:12]}); use --force to replace it, or another --out"
                )
    if write:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def pending_cells(out: Path, cells: Sequence[Cell]) -> list[Cell]:
    """The cells without a finished marker of their digest."""
    return [c for c in cells if not is_done(cell_dir(out, c), c.digest)]


def worker_command(
    folder: Path, threads: int | None = None, devices: int | None = None
) -> list[str]:
    """The command that runs one cell (the same locally and in a SLURM job)."""
    cmd = [sys.executable, "-m", "segattn.ablation.cell", str(folder.resolve())]
    if threads:
        cmd += ["--threads", str(threads)]
    if devices:
        cmd += ["--devices", str(devices)]
    return cmd


def slot_environment(slot: int, threads: int | None, devices_per_job: int | None) -> dict[str, str]:
    """Environment of a cell run in parallel slot ``slot``: its thread count and, with
    ``devices_per_job``, its own GPUs (``CUDA_VISIBLE_DEVICES``, counted within the runner's
    visible devices)."""
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    if devices_per_job:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(1024)]
        mine = ids[slot * devices_per_job : (slot + 1) * devices_per_job]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
    return env


def run_local(
    out: Path,
    cells: Sequence[Cell],
    jobs: int = 1,
    threads: int | None = None,
    devices_per_job: int | None = None,
    on_event: Callable[[str, Cell, str | None], None] | None = None,
) -> list[CellOutcome]:
    """Run ``cells`` as worker processes, ``jobs`` at a time; a failing cell does not stop the
    others. ``on_event(kind, cell, detail)`` is called with ``"start"``, ``"done"`` or
    ``"failed"``."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    slots = list(range(jobs))
    lock = threading.Lock()
    running: set[subprocess.Popen[bytes]] = set()

    def one(cell: Cell) -> CellOutcome:
        with lock:
            slot = slots.pop(0)
        try:
            folder = cell_dir(out, cell)
            if on_event:
                on_event("start", cell, None)
            cmd = worker_command(folder, threads, devices_per_job)
            cmd.append("--die-with-parent")
            with (folder / LOG).open("ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=slot_environment(slot, threads, devices_per_job),
                )
                with lock:
                    running.add(proc)
                code = proc.wait()
                with lock:
                    running.discard(proc)
            return finished_outcome(cell, folder, code, on_event)
        finally:
            with lock:
                slots.append(slot)

    outcomes = []
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(one, cell) for cell in cells]
        for future in as_completed(futures):
            outcomes.append(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        with lock:
            for proc in running:
                proc.kill()
        raise
    pool.shutdown()
    order = {c.name: i for i, c in enumerate(cells)}
    return sorted(outcomes, key=lambda o: order[o.cell.name])


def finished_outcome(
    cell: Cell,
    folder: Path,
    code: int,
    on_event: Callable[[str, Cell, str | None], None] | None = None,
) -> CellOutcome:
    """The outcome of a cell whose worker exited with ``code`` (local or SLURM): "ran" only when
    it exited 0 and wrote its ``done`` marker; reported to ``on_event``."""
    if code == 0 and is_done(folder, cell.digest):
        outcome = CellOutcome(cell, "ran")
    else:
        outcome = CellOutcome(cell, "failed", failure_message(folder, code))
    if on_event:
        on_event("done" if outcome.status == "ran" else "failed", cell, outcome.error)
    return outcome


def failure_message(folder: Path, code: int) -> str:
    """The cell's own one-line error, else the exit code, plus the log's last ``error:`` line
    for an argument error (the trainer's parser exits with code 2)."""
    try:
        message = (folder / ERROR_TXT).read_text().strip()
    except OSError:
        message = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
    if message.startswith("SystemExit"):
        try:
            lines = (folder / LOG).read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        errors = [ln.strip() for ln in lines if "error:" in ln]
        if errors:
            message = errors[-1]
    write_text_atomic(folder / ERROR_TXT, message + "\n")
    return message


def run_grid(
    spec: GridSpec,
    out: Path,
    *,
    jobs: int = 1,
    threads: int | None = None,
    devices_per_job: int | None = None,
    force: bool = False,
    launcher: str = "local",
    slurm: dict[str, Any] | None = None,
    on_event: Callable[[str, Cell, str | None], None] | None = None,
) -> list[CellOutcome]:
    """Run every unfinished cell of ``spec`` under ``out``, then write the tables and figures.

    Returns:
        one outcome per cell of the grid, in grid order.

    Raises:
        SegattnError: the grid changed (see :func:`check_grid`), a bad launcher.
    """
    cells = spec.cells()
    check_grid(out, spec, cells, force)
    todo = pending_cells(out, cells)
    for cell in todo:
        prepare_cell(spec, cell, cell_dir(out, cell))
    if launcher == "local":
        ran = run_local(out, todo, jobs, threads, devices_per_job, on_event)
    elif launcher == "slurm":
        from segattn.ablation.slurm import run_slurm

        ran = run_slurm(out, todo, slurm or {}, threads, devices_per_job, on_event)
    else:
        raise SegattnError(f"unknown launcher {launcher!r}; use local or slurm")
    by_name = {o.cell.name: o for o in ran}
    outcomes = [by_name.get(c.name, CellOutcome(c, "done")) for c in cells]
    aggregate(out, spec, cells)
    build_report(out)
    return outcomes
