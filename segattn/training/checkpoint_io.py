"""Checkpoints that survive a kill: a temporary file, ``fsync``, then an atomic rename.

A process killed while :class:`AtomicCheckpointIO` writes leaves the previous checkpoint (for
example ``last.ckpt``) whole and at most a hidden ``.tmp-*`` file beside it; a machine that loses
power after the rename still finds the new bytes on disk, since file and folder are synced first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` via a synced temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # makes the rename durable; not every platform can open a folder (Windows)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` writing local checkpoints with :func:`save_atomic`.

    ``segattn train`` installs it; in Python pass ``Trainer(plugins=[AtomicCheckpointIO()])``.
    Remote paths (``s3://``, ...) fall back to Lightning's own writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_atomic(checkpoint, path)
