"""The preprocessed cache on disk: digest, invalidation, half-written entries, equal training."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import lightning.pytorch as pl
import nibabel as nib
import numpy as np
import pytest
import torch

from segattn.cli.main import main
from segattn.training import SegDataModule, SegmentationSystem
from segattn.training.cache import PreprocessedCache, cache_digest, default_cache_root

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_digest_follows_the_settings() -> None:
    base = cache_digest({"spacing": None})
    assert base == cache_digest({"orientation": "ras", "intensity": {"kind": "zscore"}})
    others = {
        cache_digest({"spacing": [1.0, 1.0, 1.0]}),
        cache_digest({"spacing": [1.0, 1.0, 1.5]}),
        cache_digest({"intensity": {"kind": "zscore", "nonzero": True}}),
        cache_digest({"intensity": {"kind": "ct", "window": [-160, 240]}}),
        cache_digest({"intensity": {"kind": "ct", "window": [-1000, 1000]}}),
        cache_digest({"orientation": None}),
    }
    assert len(others) == 6 and base not in others
    assert len(base) == 16 and int(base, 16) >= 0
    with pytest.raises(ValueError):
        cache_digest({"spacing": [1.0, -1.0, 1.0]})


def test_default_folder_is_beside_the_dataset(tiny_malc: Path) -> None:
    assert default_cache_root(tiny_malc) == tiny_malc.resolve().with_name(
        f"{tiny_malc.name}.segattn-cache"
    )


def _memory_volumes(dm: SegDataModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return dm._load(dm.dataset.training)


def test_cache_holds_the_preprocessed_volumes(tiny_malc: Path, tmp_path: Path) -> None:
    dm = SegDataModule(str(tiny_malc), mode="3d", patch_size=[16, 16, 16], cache_dir=str(tmp_path))
    assert dm.build_cache() == 5
    assert dm.build_cache() == 0  # complete entries are kept
    store = dm.preprocessed_cache
    cases = dm.dataset.training
    mapped = store.volumes([c.name for c in cases])
    for (image, label), (mem_image, mem_label) in zip(mapped, _memory_volumes(dm)):
        assert image.dtype == torch.float32 and label.dtype == torch.uint8
        assert torch.equal(image, mem_image) and torch.equal(label, mem_label)
    info = json.loads((store.folder / f"{cases[0].name}.done.json").read_text())
    assert info["image_shape"] == list(mapped[0][0].shape)
    assert np.load(store.paths(cases[0].name)[0], mmap_mode="r").shape == tuple(mapped[0][0].shape)


def test_changed_setting_makes_a_new_cache(tiny_malc: Path, tmp_path: Path) -> None:
    folders = set()
    for intensity in ({"kind": "zscore"}, {"kind": "zscore", "nonzero": True}):
        dm = SegDataModule(str(tiny_malc), intensity=intensity, cache_dir=str(tmp_path))
        assert dm.build_cache() == 5
        folders.add(dm.preprocessed_cache.folder)
    assert len(folders) == 2 and all(f.parent == tmp_path for f in folders)
    settings = [json.loads((f / "settings.json").read_text()) for f in folders]
    assert {s["preprocessing"]["intensity"]["nonzero"] for s in settings} == {False, True}


def test_half_written_and_stale_entries_are_redone(tiny_malc: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_malc, data)
    dm = SegDataModule(str(data), cache_dir=str(tmp_path / "cache"))
    dm.build_cache()
    store = dm.preprocessed_cache
    first, second = dm.dataset.training[:2]
    # a writer killed mid-write: truncated array, no completion marker
    image_path, _, marker = store.paths(first.name)
    marker.unlink()
    with open(image_path, "r+b") as handle:
        handle.truncate(200)
    assert not store.is_complete(first)
    # a source file changed after caching
    source = second.images[0]
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not store.is_complete(second)
    assert all(store.is_complete(c) for c in dm.dataset.training[2:])
    assert dm.build_cache() == 2
    mem = _memory_volumes(dm)
    for i in (0, 1):
        image, label = store.volumes([dm.dataset.training[i].name])[0]
        assert torch.equal(image, mem[i][0]) and torch.equal(label, mem[i][1])


def _fit(root: Path, cache: bool, cache_dir: Path, mode: str) -> tuple[dict, dict]:
    pl.seed_everything(0)
    extra = {"patch_size": [16, 16, 16], "batch_size": 4} if mode == "3d" else {"batch_size": 8}
    dm = SegDataModule(str(root), mode=mode, cache=cache, cache_dir=str(cache_dir), **extra)  # type: ignore[arg-type]
    system = SegmentationSystem.for_data(dm, features=[4, 8])
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(system, datamodule=dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return system.state_dict(), metrics


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_training_from_cache_equals_training_from_memory(
    tiny_malc: Path, tmp_path: Path, mode: str
) -> None:
    cached_weights, cached_metrics = _fit(tiny_malc, True, tmp_path, mode)
    assert any(tmp_path.glob("*/*.done.json"))
    memory_weights, memory_metrics = _fit(tiny_malc, False, tmp_path / "unused", mode)
    assert not (tmp_path / "unused").exists()
    assert cached_weights.keys() == memory_weights.keys()
    for name, value in cached_weights.items():
        assert torch.equal(value, memory_weights[name]), name
    assert "val/mean_dice" in cached_metrics and cached_metrics == memory_metrics


def test_preprocess_command(tiny_malc: Path, tmp_path: Path, capsys) -> None:
    args = [
        "preprocess",
        "--config",
        str(CONFIGS / "unet3d_scse.yaml"),
        "--data.root",
        str(tiny_malc),
        "--data.cache_dir",
        str(tmp_path),
        "--data.spacing",
        "[1.5, 1.5, 1.5]",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    store = PreprocessedCache(tmp_path, {"spacing": [1.5, 1.5, 1.5]})
    assert out == f"5 case(s) preprocessed, 0 already cached: {store.folder}"
    assert len(list(store.folder.glob("*.done.json"))) == 5
    image, _ = store.volumes(["malc_000"])[0]
    source = nib.load(tiny_malc / "imagesTr" / "malc_000_0000.nii.gz")
    # resampled to 1.5 mm: the first and last voxel centres span the same extent
    extent = (np.array(source.shape) - 1) * np.array(source.header.get_zooms()[:3])
    assert np.abs(np.array(image.shape[1:]) - (extent / 1.5 + 1)).max() <= 1
    assert main(args) == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith(f"0 case(s) preprocessed, 5 already cached: {store.folder}")
    )
