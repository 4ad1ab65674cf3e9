"""One cell of the grid in its own folder: train, predict the test set, evaluate.

The folder ``OUT/cells/<name>/`` holds::

    cell.json            name, axis values, digest, test set, metrics (written first)
    train_config.yaml    the full `segattn train` config of the cell
    checkpoints/         best-*.ckpt and last.ckpt (ModelCheckpoint forced here)
    lightning_logs/      the logger's folder (config.yaml, metrics.csv) per attempt
    train.json           training seconds, steps, memory (written when training finished)
    predictions/         test-set label maps
    cases.csv            `segattn evaluate` CSV of the cell (case, label, one column per metric)
    result.json          everything runs.csv needs
    error.txt            one line, when the cell failed
    cell.log             the cell process's output
    done                 the digest, written last: the cell is finished

The worker runs as ``python -m segattn.ablation.cell CELL_DIR`` (a subprocess locally, a SLURM
job on a cluster), so a cell is isolated and can be killed. Re-running it resumes: a finished
training (``train.json``) is not repeated, an interrupted one restarts from the explicit path of
``checkpoints/last.ckpt`` (Lightning's ``ckpt_path="last"`` would look in a new version folder
and silently start from scratch).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from segattn.ablation.grid import Cell, GridSpec
from segattn.errors import SegattnError
from segattn.fileio import write_text_atomic

CELL_JSON = "cell.json"
TRAIN_CONFIG = "train_config.yaml"
TRAIN_JSON = "train.json"
RESULT_JSON = "result.json"
CASES_CSV = "cases.csv"
ERROR_TXT = "error.txt"
LOG = "cell.log"
DONE = "done"
CHECKPOINTS = "checkpoints"
MONITOR = "val/mean_dice"


def cell_dir(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.name


def recorded_digest(folder: Path) -> str | None:
    """The digest in ``folder/cell.json``, None when there is none."""
    try:
        return str(json.loads((folder / CELL_JSON).read_text())["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_done(folder: Path, digest: str) -> bool:
    """Whether the cell in ``folder`` finished with this digest."""
    try:
        return (folder / DONE).read_text().strip() == digest
    except OSError:
        return False


def prepare_cell(spec: GridSpec, cell: Cell, folder: Path) -> None:
    """Make ``folder`` ready to (re)run ``cell``: a folder of another digest is emptied (the
    caller decides whether that is allowed), results of an earlier attempt are removed, the
    training state (``checkpoints/``, ``train.json``) is kept."""
    if folder.exists() and recorded_digest(folder) != cell.digest:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (DONE, RESULT_JSON, CASES_CSV, ERROR_TXT):
        with contextlib.suppress(FileNotFoundError):
            (folder / stale).unlink()
    shutil.rmtree(folder / "predictions", ignore_errors=True)
    config = with_run_dirs(cell.config, folder)
    write_text_atomic(folder / TRAIN_CONFIG, yaml.safe_dump(config, sort_keys=False))
    record = {
        "name": cell.name,
        "params": cell.params,
        "digest": cell.digest,
        "data_root": str(spec.data_root),
        "test": spec.test,
        "metrics": list(spec.metrics),
        "nsd_tolerance": spec.nsd_tolerance,
        "grid": str(spec.path),
    }
    write_text_atomic(folder / CELL_JSON, json.dumps(record, indent=2, default=str) + "\n")


def with_run_dirs(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``config`` writing everything under ``folder``: the default root, the logger's
    ``save_dir`` (a YAML logger ``save_dir`` would otherwise win over the root) and every
    ModelCheckpoint's ``dirpath`` (with ``save_last``, no version counter); progress bars off."""
    config = json.loads(json.dumps(config))
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    trainer["enable_progress_bar"] = False
    logger = trainer.get("logger")
    if logger is None or logger is True:
        trainer["logger"] = logger = {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {},
        }
    for entry in logger if isinstance(logger, list) else [logger]:
        if isinstance(entry, dict):
            entry.setdefault("init_args", {})["save_dir"] = str(folder)
    callbacks = trainer.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    checkpoints = [
        c
        for c in callbacks
        if isinstance(c, dict) and str(c.get("class_path", "")).endswith("ModelCheckpoint")
    ]
    if not checkpoints:
        checkpoints = [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"monitor": MONITOR, "mode": "max", "filename": "best"},
            }
        ]
        callbacks.extend(checkpoints)
    for entry in checkpoints:
        args = entry.setdefault("init_args", {})
        args.update(dirpath=str(folder / CHECKPOINTS), save_last=True, enable_version_counter=False)
    trainer["callbacks"] = callbacks
    return config


def run_cell(folder: Path, devices: int | None = None) -> dict[str, Any]:
    """Train (or resume), predict the test set, evaluate; write the results and the marker.

    Returns:
        the ``result.json`` record.

    Raises:
        SegattnError: no checkpoint after training, a test case failed to predict, bad data.
    """
    info = json.loads((folder / CELL_JSON).read_text())
    train = _train(folder, devices)
    state = _load(folder / CHECKPOINTS / "last.ckpt")
    best_path, best_score = _best(state)
    checkpoint = best_path if best_path is not None and best_path.is_file() else None
    checkpoint = checkpoint or folder / CHECKPOINTS / "last.ckpt"
    evaluation, n_parameters = _predict_and_evaluate(folder, info, checkpoint)
    evaluation.write_csv(folder / CASES_CSV)
    case_means = [_nanmean(list(scores.values())) for scores in evaluation.per_case.values()]
    result = {
        "name": info["name"],
        "status": "done",
        "epochs": _epochs(state),
        "steps": int(state.get("global_step", 0)),
        **train,
        "n_parameters": n_parameters,
        "best_val_dice": best_score,
        "test_mean_dice": _nanmean(case_means),
        "checkpoint": str(checkpoint.relative_to(folder)),
    }
    write_text_atomic(folder / RESULT_JSON, json.dumps(result, indent=2) + "\n")
    write_text_atomic(folder / DONE, info["digest"] + "\n")
    return result


def _train(folder: Path, devices: int | None) -> dict[str, Any]:
    """Train unless ``train.json`` says it finished; resume from ``last.ckpt`` when present."""
    done = folder / TRAIN_JSON
    if done.is_file():
        return dict(json.loads(done.read_text()))
    import torch

    from segattn.training.cli import run_training_cli

    last = folder / CHECKPOINTS / "last.ckpt"
    args = ["--config", str(folder / TRAIN_CONFIG)]
    if devices is not None:
        args += ["--trainer.devices", str(devices)]
    start_step = 0
    if last.is_file():
        start_step = int(_load(last).get("global_step", 0))
        args += ["--ckpt_path", str(last)]
    else:  # no usable state: a fresh start must not inherit best-*.ckpt of a killed attempt
        shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run_training_cli(args)
    seconds = time.perf_counter() - start
    if not last.is_file():
        raise SegattnError(f"{folder}: training wrote no {CHECKPOINTS}/last.ckpt")
    steps = int(_load(last).get("global_step", 0)) - start_step
    record = {
        "train_seconds": round(seconds, 3),
        "steps_trained": steps,
        "seconds_per_step": round(seconds / steps, 6) if steps > 0 else math.nan,
        "resumed_from_step": start_step,
        # peak resident memory of this process so far (Linux reports KiB)
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_memory_mb": (
            round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if torch.cuda.is_available()
            else math.nan
        ),
    }
    write_text_atomic(done, json.dumps(record, indent=2) + "\n")
    return record


def _predict_and_evaluate(folder: Path, info: dict[str, Any], checkpoint: Path) -> Any:
    from segattn.data.layout import load_dataset, split_cases
    from segattn.evaluation import evaluate_folders, read_label_names, read_missing_labels
    from segattn.fileio import save_nifti_atomic
    from segattn.inference import Predictor

    predictor = Predictor(checkpoint, device="auto", progress=False)
    n_parameters = sum(p.numel() for p in predictor.models[0].net.parameters())
    predictions = folder / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    root, test = Path(info["data_root"]), info["test"]
    if "fold" in test:
        dataset = load_dataset(root)
        _, cases = split_cases(dataset.training, splits_file=test["splits_file"], fold=test["fold"])
        for case in cases:
            _, image = predictor.predict_image(case.images)
            save_nifti_atomic(image, predictions / f"{case.name}{dataset.file_ending}")
        label_dir = root / "labelsTr"
        expected = {c.name for c in cases}
    else:
        results = predictor.predict_files([test["images"]], predictions, overwrite=True)
        errors = [r.error for r in results if not r.ok]
        if errors:
            raise SegattnError(f"{len(errors)} test case(s) failed: {errors[0]}")
        label_dir = Path(test["labels"])
        expected = None
    dataset_json = root / "dataset.json"
    labels = read_label_names(dataset_json) if dataset_json.is_file() else predictor.labels
    missing = read_missing_labels(dataset_json) if dataset_json.is_file() else None
    result = evaluate_folders(
        predictions,
        label_dir,
        labels,
        allow_missing=expected is not None,
        missing_labels=missing,
        metrics=info["metrics"],
        nsd_tolerance=float(info["nsd_tolerance"]),
    )
    if expected is not None and set(result.per_case) != expected:
        raise SegattnError(
            f"{label_dir}: labels missing for {sorted(expected - set(result.per_case))}"
        )
    return result, n_parameters


def _load(path: Path) -> dict[str, Any]:
    import torch

    return dict(torch.load(path, map_location="cpu", weights_only=True))


def _epochs(state: dict[str, Any]) -> int:
    """Epochs whose training part finished (the checkpoint's ``epoch`` key is the current
    epoch, one more when the checkpoint was saved after the epoch ended)."""
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(state.get("epoch", -1)) + 1


def _best(state: dict[str, Any]) -> tuple[Path | None, float]:
    """Best checkpoint and score of the ModelCheckpoint monitoring ``val/mean_dice``."""
    for key, value in (state.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(value, dict):
            if value.get("monitor") not in (None, MONITOR):
                continue
            score = value.get("best_model_score")
            path = value.get("best_model_path") or None
            return (Path(path) if path else None), (math.nan if score is None else float(score))
    return None, math.nan


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the runner that started it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m segattn.ablation.cell CELL_DIR [--threads N] [--devices N]``."""
    parser = argparse.ArgumentParser(prog="python -m segattn.ablation.cell")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--die-with-parent", action="store_true")
    args = parser.parse_args(argv)
    if args.die_with_parent:
        _die_with_parent()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        result = run_cell(args.folder, args.devices)
    except BaseException as err:  # recorded for runs.csv, then reported by the exit code
        message = str(err) if isinstance(err, SegattnError) else f"{type(err).__name__}: {err}"
        traceback.print_exc()
        write_text_atomic(args.folder / ERROR_TXT, " ".join(message.split()) + "\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")  # the worker's report to the runner's log
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
