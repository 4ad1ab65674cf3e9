"""ct_fitted: fitted on the training cases, stored in the checkpoint, repeated at inference."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import nibabel as nib
import numpy as np
import torch

from segattn.data.layout import write_dataset_json
from segattn.data.transforms import preprocess_transforms
from segattn.inference import load_checkpoint
from segattn.inference.preprocess import run_preprocessing
from segattn.training import SegDataModule, SegmentationSystem


def _tiny_ct(root: Path, cases: int = 5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cases of int16 HU on an identity (RAS) grid; foreground HU differs from case to case."""
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    data = {}
    for i in range(cases):
        shape = (13, 11, 9)
        label = np.zeros(shape, np.uint8)
        label[3:9, 2:8, 2:7] = 1
        label[9:11, 5:9, 4:6] = 2
        image = rng.normal(-500, 300, shape)
        image[label > 0] = rng.normal(40 + 60 * i, 25 + 5 * i, int((label > 0).sum()))
        image = image.round().astype(np.int16)
        name = f"case{i:02d}"
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / "labelsTr" / f"{name}.nii.gz")
        data[name] = (image, label)
    write_dataset_json(root, {"0": "CT"}, {"background": 0, "a": 1, "b": 2}, cases)
    return data


def test_fitted_on_training_cases_stored_and_applied_identically(tmp_path: Path) -> None:
    data = _tiny_ct(tmp_path / "ct")
    dm = SegDataModule(
        str(tmp_path / "ct"),
        mode="3d",
        patch_size=[8, 8, 8],
        batch_size=2,
        samples_per_volume=2,
        intensity={"kind": "ct_fitted"},
        sampling="classes",
        val_fraction=0.4,
    )
    intensity = dm.inference_meta["preprocessing"]["intensity"]  # fitted before setup (CLI link)
    dm.setup("fit")
    train = [data[c.name] for c in dm.train_cases]
    voxels = np.concatenate([img[lab > 0] for img, lab in train]).astype(np.float64)
    lo, hi = np.percentile(voxels, [0.5, 99.5])
    np.testing.assert_allclose(intensity["clip"], [lo, hi], rtol=1e-12)
    np.testing.assert_allclose([intensity["mean"], intensity["std"]], [voxels.mean(), voxels.std()])
    everything = np.concatenate([img[lab > 0] for img, lab in data.values()])
    assert abs(everything.mean() - voxels.mean()) > 1.0  # the validation cases are left out

    def expected(name: str) -> np.ndarray:
        return ((np.clip(data[name][0], lo, hi) - voxels.mean()) / voxels.std()).astype(np.float32)

    val = dm._val[0]
    np.testing.assert_allclose(val["image"][0].numpy(), expected(val["case"]), atol=1e-5)

    pl.seed_everything(0, workers=True, verbose=False)
    system = SegmentationSystem.for_data(dm, features=[4, 8])
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(system, datamodule=dm)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    info = load_checkpoint(path)
    assert info.preprocessing["intensity"] == intensity
    # inference: the predictor's chain on a scan it has never seen gives the same numbers
    name = val["case"]
    chain = preprocess_transforms(info.preprocessing, keys=("image",))
    image = run_preprocessing(chain, [tmp_path / "ct" / "imagesTr" / f"{name}_0000.nii.gz"])
    out = image["image"].as_subclass(torch.Tensor)[0].numpy()
    np.testing.assert_allclose(out, expected(name), atol=1e-5)
    np.testing.assert_array_equal(out, val["image"][0].numpy())  # bit-identical to training
