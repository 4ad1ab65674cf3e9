"""Lightning training: the segmentation system (LightningModule) and the NIfTI DataModule."""

from __future__ import annotations

from segattn.training.datamodule import SegDataModule
from segattn.training.system import SegmentationSystem

__all__ = ["SegDataModule", "SegmentationSystem"]
