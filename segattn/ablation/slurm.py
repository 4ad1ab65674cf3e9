"""SLURM launcher through submitit: one job per cell running the cell worker command.

``dry_run`` writes the job scripts (``OUT/slurm/<cell>.sbatch``, the text submitit would submit,
with the worker command inline so the scripts can also be ``sbatch``-ed by hand) and submits
nothing, so it works without a cluster.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from segattn.ablation.cell import LOG, cell_dir
from segattn.ablation.grid import Cell
from segattn.errors import SegattnError
from segattn.fileio import write_text_atomic

#: option name -> submitit parameter
OPTIONS = {
    "partition": "partition",
    "time": "time",  # minutes
    "account": "account",
    "qos": "qos",
    "mem": "mem",
    "setup": "setup",  # shell lines run before the command, e.g. ["module load cuda"]
}


def _parameters(
    cell: Cell, options: dict[str, Any], threads: int | None, devices: int | None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        OPTIONS[k]: v for k, v in options.items() if k in OPTIONS and v not in (None, [])
    }
    params["job_name"] = cell.name
    if threads:
        params["cpus_per_task"] = threads
    if devices:
        params["gpus_per_node"] = devices
    return params


def write_scripts(
    out: Path,
    cells: Sequence[Cell],
    options: dict[str, Any],
    threads: int | None = None,
    devices: int | None = None,
) -> list[Path]:
    """Write one ``sbatch`` script per cell into ``out/slurm/`` and return their paths."""
    from submitit.slurm.slurm import _make_sbatch_string

    from segattn.ablation.runner import worker_command

    folder = out / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for cell in cells:
        command = shlex.join(worker_command(cell_dir(out, cell), threads, devices))
        text = _make_sbatch_string(
            command=command,
            folder=str((folder / "logs").resolve()),
            **_parameters(cell, options, threads, devices),
        )
        path = folder / f"{cell.name}.sbatch"
        write_text_atomic(path, text)
        paths.append(path)
    return paths


def run_slurm(
    out: Path,
    cells: Sequence[Cell],
    options: dict[str, Any],
    threads: int | None = None,
    devices: int | None = None,
    on_event: Callable[[str, Cell, str | None], None] | None = None,
) -> list[Any]:
    """Submit one job per cell, wait for all of them, and report each cell's outcome.

    Interrupting the wait leaves the jobs running; running the grid again afterwards skips the
    cells they finished.
    """
    import submitit

    from segattn.ablation.runner import finished_outcome, worker_command

    if not cells:
        return []
    try:
        executor = submitit.SlurmExecutor(folder=out / "slurm" / "logs")
    except RuntimeError as err:
        raise SegattnError(f"cannot use SLURM here ({err}); try --dry-run") from err
    jobs = []
    for cell in cells:
        executor.update_parameters(**_parameters(cell, options, threads, devices))
        command = worker_command(cell_dir(out, cell), threads, devices)
        jobs.append((cell, executor.submit(submitit.helpers.CommandFunction(command))))
        if on_event:
            on_event("start", cell, None)
    outcomes = []
    for cell, job in jobs:
        folder = cell_dir(out, cell)
        try:
            output = job.result()
            (folder / LOG).write_text(str(output))
            code = 0
        except Exception:  # the job failed; the cell's error.txt says why
            code = 1
        outcomes.append(finished_outcome(cell, folder, code, on_event))
    return outcomes
