#!/usr/bin/env python
"""CPU time of the training samples alone: building one (crop + augmentation) and collating a
batch, in one process on one thread, as a DataLoader worker does it.

python data_scripts/sample_cost.py --data data/mni152                 # 2D coronal slices
python data_scripts/sample_cost.py --data data/mni152 --no-augment
python data_scripts/sample_cost.py --data data/mni152 --mode 3d --patch 64 64 64 --batch-size 2

Prints milliseconds per dataset item (a slice in 2D; a volume's ``samples_per_volume`` patches in
3D), per collated batch and per batch in all, each the median of ``--repeats`` passes over the
same ``--samples`` keys of epoch 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from monai.data import list_data_collate

from segattn.training.datamodule import SegDataModule


def main(argv: list[str] | None = None) -> int:
    """Time the samples of ``--data``'s training set; returns 0."""
    p = argparse.ArgumentParser(prog="sample_cost.py", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="nnU-Net v2 dataset folder")
    p.add_argument("--mode", choices=["2d", "3d"], default="2d")
    p.add_argument("--slice-axis", default="coronal")
    p.add_argument("--patch", type=int, nargs="*", default=None, help="3D patch size")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--samples", type=int, default=320, help="dataset items per pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-augment", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    dm = SegDataModule(
        args.data,
        mode=args.mode,
        slice_axis=args.slice_axis if args.mode == "2d" else None,
        patch_size=args.patch,
        batch_size=args.batch_size,
        augment=not args.no_augment,
        num_workers=0,
        seed=0,
    )
    dm.setup("fit")
    data = dm._train
    assert data is not None
    keys = [(0, i % len(data)) for i in range(args.samples)]
    per_item, per_batch = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        items = [data[k] for k in keys]
        built = time.perf_counter()
        # 3D items are lists of samples_per_volume patches; batches hold batch_size samples
        flat = [x for item in items for x in (item if isinstance(item, list) else [item])]
        n = args.batch_size
        batches = [list_data_collate(flat[i : i + n]) for i in range(0, len(flat) - n + 1, n)]
        done = time.perf_counter()
        per_item.append((built - start) / len(items))
        per_batch.append((done - built) / len(batches))
    item_ms = 1e3 * statistics.median(per_item)
    collate_ms = 1e3 * statistics.median(per_batch)
    items_per_batch = args.batch_size / (len(flat) / len(items))
    print(
        f"{args.mode}, augmentation {'off' if args.no_augment else 'on'}: {item_ms:.3f} ms per "
        f"{'slice' if args.mode == '2d' else 'volume item'}, {collate_ms:.3f} ms to collate "
        f"{args.batch_size} samples, {item_ms * items_per_batch + collate_ms:.1f} ms per batch"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
