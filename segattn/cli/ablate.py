"""``segattn ablate``: run a grid of trainings (axes of dotted config keys x seeds), predict and
evaluate each on the test set, and write per-case tables, statistics against a baseline and
figures; or rebuild the tables and figures of a grid folder (``--report DIR``)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from segattn.errors import SegattnError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ablate",
        help="run a grid of trainings (e.g. attention modules x seeds) with statistics",
        description=__doc__
        + " Re-running the same command skips finished cells and resumes interrupted ones; a "
        "changed grid is refused unless --force. The exit code is the number of failed cells.",
    )
    p.add_argument("--config", metavar="GRID.yaml", help="the grid file")
    p.add_argument("--out", metavar="DIR", help="grid folder (default: the grid's 'out')")
    p.add_argument("--report", metavar="DIR", help="only rebuild tables and figures of DIR")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once (default: 1)")
    p.add_argument(
        "--threads-per-job",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads per cell (default: CPU cores / jobs)",
    )
    p.add_argument(
        "--devices-per-job",
        type=int,
        default=None,
        metavar="N",
        help="trainer devices per cell; each parallel cell gets its own GPUs",
    )
    p.add_argument("--launcher", choices=("local", "slurm"), default="local")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells (local) or write one SLURM script per cell (slurm); run nothing",
    )
    p.add_argument("--force", action="store_true", help="accept a changed grid")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--time", type=int, default=60, help="SLURM time limit in minutes (60)")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--setup", action="append", default=[], help="shell line before each job")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segattn.ablation import build_report, load_grid, run_grid
    from segattn.ablation.cell import cell_dir, prepare_cell
    from segattn.ablation.runner import check_grid, pending_cells
    from segattn.ablation.slurm import write_scripts

    if args.report:
        for path in build_report(Path(args.report)):
            print(path)
        return 0
    if not args.config:
        raise SegattnError("give --config GRID.yaml (or --report DIR)")
    if args.jobs < 1:
        raise SegattnError(f"--jobs must be >= 1, got {args.jobs}")
    spec = load_grid(args.config)
    out = Path(args.out) if args.out else spec.out
    if out is None:
        raise SegattnError(f"{args.config}: no 'out' in the grid; give --out DIR")
    threads = args.threads_per_job or max(1, (os.cpu_count() or 1) // args.jobs)
    cells = spec.cells()
    if args.dry_run:
        # the SLURM scripts need ready cell folders; a local dry run writes nothing
        check_grid(out, spec, cells, args.force, write=args.launcher == "slurm")
        todo = pending_cells(out, cells)
        print(f"{len(cells)} cells, {len(todo)} to run, in {out}")
        if args.launcher == "slurm":
            options = {"partition": args.partition, "time": args.time, "account": args.account}
            options["setup"] = args.setup
            for cell in todo:  # each script runs a ready cell folder
                prepare_cell(spec, cell, cell_dir(out, cell))
            for path in write_scripts(out, todo, options, threads, args.devices_per_job):
                print(path)
        else:
            for cell in todo:
                print(cell_dir(out, cell))
        return 0
    starts: dict[str, float] = {}

    def event(kind: str, cell: Any, detail: str | None) -> None:
        if kind == "start":
            starts[cell.name] = time.perf_counter()
            print(f"start  {cell.name}", flush=True)
        else:
            seconds = time.perf_counter() - starts.get(cell.name, time.perf_counter())
            tail = f": {detail}" if detail else ""
            print(f"{kind:<6} {cell.name} ({seconds:.0f} s){tail}", flush=True)

    slurm = {"partition": args.partition, "time": args.time, "account": args.account}
    slurm["setup"] = args.setup
    outcomes = run_grid(
        spec,
        out,
        jobs=args.jobs,
        threads=threads,
        devices_per_job=args.devices_per_job,
        force=args.force,
        launcher=args.launcher,
        slurm=slurm,
        on_event=event,
    )
    failed = [o for o in outcomes if o.status == "failed"]
    skipped = sum(o.status == "done" for o in outcomes)
    print(
        f"{len(outcomes)} cells: {len(outcomes) - len(failed) - skipped} ran, {skipped} already "
        f"done, {len(failed)} failed"
    )
    for outcome in failed:
        print(f"failed {outcome.cell.name}: {outcome.error}")
    print(f"tables: {out / 'summary.md'}")
    return min(len(failed), 100)
