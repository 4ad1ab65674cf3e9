from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from segattn.training import SegDataModule
from segattn.training.class_sampling import class_balanced_slice_weights
from segattn.training.sampling import EpochSampler


def test_2d_slices_and_whole_val_volumes(tiny_malc: Path) -> None:
    dm = SegDataModule(str(tiny_malc), mode="2d", slice_axis="coronal", batch_size=4, seed=0)
    assert dm.spatial_dims == 2
    assert dm.in_channels == 1
    assert dm.num_classes == len(dm.label_names) >= 13
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.worker_init_fn.keywords == {"niceness": 10}  # type: ignore[union-attr]
    batch = next(iter(loader))
    assert batch["image"].shape[:2] == (4, 1) and batch["image"].ndim == 4
    assert batch["label"].shape[1] == 1 and batch["label"].shape[2:] == batch["image"].shape[2:]
    assert int(batch["label"].max()) < dm.num_classes
    val = next(iter(dm.val_dataloader()))
    assert val["image"].ndim == 5 and val["label"].shape[2:] == val["image"].shape[2:]
    # z-scored image
    assert abs(float(val["image"].mean())) < 0.1
    assert len(dm.train_cases) + len(dm.val_cases) == 5
    assert {c.name for c in dm.train_cases}.isdisjoint({c.name for c in dm.val_cases})


def test_slice_axis_sets_slice_shape(tiny_malc: Path) -> None:
    shapes = {}
    for axis in ("sagittal", "coronal", "axial"):
        dm = SegDataModule(str(tiny_malc), mode="2d", slice_axis=axis, batch_size=2, augment=False)
        dm.setup("fit")
        vol = dm._val[0]["image"]  # (C, X, Y, Z) in RAS
        keep = [s for d, s in enumerate(vol.shape[1:]) if d != dm.slice_axis]
        shapes[axis] = dm._train[0]["image"].shape[1:]
        assert len(dm._train) == sum(img.shape[1 + dm.slice_axis] for img, _ in dm._train.volumes)
        assert len(keep) == 2
    assert len(shapes) == 3


def test_3d_patches(tiny_malc: Path) -> None:
    dm = SegDataModule(
        str(tiny_malc), mode="3d", patch_size=[16, 16, 16], batch_size=4, samples_per_volume=2
    )
    assert dm.spatial_dims == 3
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["image"].shape) == (4, 1, 16, 16, 16)
    assert tuple(batch["label"].shape) == (4, 1, 16, 16, 16)


def test_split_is_deterministic(tiny_malc: Path) -> None:
    names = []
    for _ in range(2):
        dm = SegDataModule(str(tiny_malc), seed=3)
        dm.setup("fit")
        names.append([c.name for c in dm.val_cases])
    assert names[0] == names[1]


def test_inference_meta_is_plain_data(tiny_malc: Path) -> None:
    dm = SegDataModule(str(tiny_malc), mode="2d", slice_axis="axial")
    meta = dm.inference_meta
    json.dumps(meta)
    assert meta["slice_axis"] == 2 and meta["mode"] == "2d"
    assert meta["preprocessing"]["orientation"] == "RAS"
    assert meta["preprocessing"]["intensity"]["kind"] == "zscore"
    assert list(meta["labels"].values()) == list(range(len(meta["labels"])))


def test_ct_channel_defaults_to_hu_window(tiny_malc: Path, tmp_path: Path) -> None:
    root = tmp_path / "ct"
    shutil.copytree(tiny_malc, root)
    spec = json.loads((root / "dataset.json").read_text())
    spec["channel_names"] = {"0": "CT"}
    (root / "dataset.json").write_text(json.dumps(spec))
    dm = SegDataModule(str(root))
    assert dm.preprocessing["intensity"] == {"kind": "ct", "window": [-160.0, 240.0]}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "4d"},
        {"mode": "2d", "slice_axis": "oblique"},
        {"mode": "3d", "patch_size": [16, 16]},
        {"batch_size": 0},
        {"pos_fraction": 1.5},
        {"augmentation": {"rotate": 3}},
        {"sampling": "organs"},
        {"sampling": "classes", "sampling_random_fraction": -0.1},
    ],
)
def test_bad_arguments(tiny_malc: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SegDataModule(str(tiny_malc), **kwargs)


def test_augmentation_stream_is_seeded(tiny_malc: Path) -> None:
    def first_batch() -> torch.Tensor:
        dm = SegDataModule(str(tiny_malc), batch_size=4, seed=1)
        dm.setup("fit")
        return torch.stack([dm._train[i]["image"] for i in range(4)])

    assert torch.equal(first_batch(), first_batch())


def test_2d_class_balanced_slices_are_seeded(tiny_malc: Path) -> None:
    def epoch(number: int) -> list[tuple[int, int]]:
        dm = SegDataModule(str(tiny_malc), mode="2d", sampling="classes", batch_size=4, seed=2)
        dm.setup("fit")
        sampler = dm.train_dataloader().batch_sampler.sampler  # type: ignore[union-attr]
        assert isinstance(sampler, EpochSampler)
        assert len(sampler) == len(dm._train)
        labels = [label for _, label in dm._train.volumes]
        expected = class_balanced_slice_weights(labels, dm.slice_axis, 0.2)
        assert sampler.weights is not None
        torch.testing.assert_close(torch.tensor(sampler.weights, dtype=expected.dtype), expected)
        batch = next(iter(dm.train_dataloader()))
        assert batch["image"].shape[0] == 4
        sampler.set_epoch(number)
        drawn = list(sampler)
        # only slices with a positive weight are drawn, with replacement
        assert all(e == number and expected[i] > 0 for e, i in drawn)
        return drawn

    assert epoch(0) == epoch(0)
    assert epoch(0) != epoch(1)


def test_3d_class_balanced_patches_are_seeded(tiny_malc: Path) -> None:
    def first_patches() -> torch.Tensor:
        dm = SegDataModule(
            str(tiny_malc), mode="3d", patch_size=[16, 12, 14], sampling="classes", seed=1
        )
        dm.setup("fit")
        return torch.stack([p["label"] for p in dm._train[0]])

    first = first_patches()
    assert first.shape == (2, 1, 16, 12, 14) and bool((first > 0).any())
    assert torch.equal(first, first_patches())
