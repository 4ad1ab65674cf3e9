"""Datasets (nnU-Net v2 / MSD layouts), synthetic phantoms and MONAI preprocessing."""

from __future__ import annotations

from segattn.data.layout import (
    Case,
    DatasetInfo,
    case_name_from_image,
    check_labels,
    load_dataset,
    split_cases,
    write_dataset_json,
)

__all__ = [
    "Case",
    "DatasetInfo",
    "case_name_from_image",
    "check_labels",
    "load_dataset",
    "split_cases",
    "write_dataset_json",
]
