"""Every notebook runs top to bottom in its fast setting and draws its figures.

Each ``notebooks/NN_name.py`` (jupytext percent format) is converted in memory and executed with
nbclient on a kernel started from this interpreter (a kernelspec written to a temporary
``JUPYTER_PATH``, so a fresh virtual environment needs no ``ipykernel install``). The kernel
inherits ``SEGATTN_NOTEBOOK_FAST=1`` and ``SEGATTN_NOTEBOOK_OUT``, the folder where the notebook
saves its figures; the test fails if a cell raises or a listed figure is missing or blank. The
committed ``.ipynb`` copies must hold the same cells as their sources, without outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

# notebook -> figures it must write into SEGATTN_NOTEBOOK_OUT
FIGURES = {
    "01_attention_gallery": ["gates_2d.png", "gates_3d.png", "cost.png"],
    "02_train_and_evaluate": ["curves.png", "loss_weights.png", "dice.png", "overlays.png"],
    "03_attention_maps": ["block_gates.png", "channel_heatmap.png", "cse_sse_scse.png"],
    "04_ablation_analysis": [
        "boxplots.png",
        "delta_dice_heatmap.png",
        "dice_vs_cost.png",
    ],
    "05_whole_body_ct": ["windows.png", "organs.png"],
}
KERNEL = "segattn-notebook-test"


def _sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_every_notebook_source_is_listed() -> None:
    assert sorted(p.stem for p in _sources()) == sorted(FIGURES)


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "segattn tests", "language": "python"})
    )
    return root


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_runs_fast_and_draws(
    name: str, kernel_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.image

    out = tmp_path / "figures"
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("SEGATTN_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("SEGATTN_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    tags = [c.metadata.get("tags", []) for c in notebook.cells]
    assert sum("parameters" in t for t in tags) == 1, "exactly one parameters cell"
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError when a cell fails
    for figure in FIGURES[name]:
        path = out / figure
        assert path.is_file(), f"{name} did not write {figure}"
        pixels = matplotlib.image.imread(path)
        assert min(pixels.shape[:2]) >= 100 and float(np.std(pixels)) > 0.01, figure


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_committed_ipynb_matches_its_source_without_outputs(name: str) -> None:
    source = jupytext.read(NOTEBOOKS / f"{name}.py")
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [
        (c.cell_type, c.source) for c in source.cells
    ], f"regenerate: jupytext --update --to ipynb notebooks/{name}.py"
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
