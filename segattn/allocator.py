"""How glibc's ``malloc`` hands memory back to the system, for training steps on a CPU.

A training step allocates and frees the same large tensors every step. With glibc's defaults a
block above the mmap threshold (32 MiB at most, e.g. the feature maps of a 3D U-Net on
``2 x 16 x 64^3`` voxels) gets fresh pages from the kernel and returns them when freed, and the
heap is trimmed whenever enough is free at its top, so every step faults its pages in again and
the kernel zeroes them (the README's "Speed and memory" has the measured page faults and step
times). PyTorch's CPU allocator keeps no cache of its own, so :func:`keep_freed_memory` tells
glibc to keep freed memory for the next step: no mmap for large blocks, no trimming.

The process then keeps its peak heap until it exits, which is what a training process needs
anyway. It applies only to glibc on Linux, and not when the user set glibc's own ``MALLOC_*``
variables or ``SEGATTN_MALLOC=default``. :func:`return_freed_memory` is the opposite setting,
which memory benchmarks use so that the resident size follows the live tensors.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = [
    "keep_freed_memory",
    "keeping_allowed",
    "release_free_memory",
    "return_freed_memory",
]

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
#: glibc's default ``M_MMAP_MAX``
_DEFAULT_MMAP_MAX = 65536
#: glibc's own variables; when any is set, the user chose already
_GLIBC_VARIABLES = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (musl and others lack it)
    except (OSError, AttributeError):
        return None
    return libc


def keeping_allowed() -> bool:
    """Whether :func:`keep_freed_memory` would apply: glibc, and the user chose nothing else."""
    if os.environ.get("SEGATTN_MALLOC", "").lower() == "default":
        return False
    if any(name in os.environ for name in _GLIBC_VARIABLES):
        return False
    return _glibc() is not None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process (no mmap for large blocks, no trimming).

    Returns:
        True when the setting was applied; False on other platforms and C libraries, when one of
        glibc's ``MALLOC_*`` variables or ``GLIBC_TUNABLES`` is set, or when
        ``SEGATTN_MALLOC=default``.
    """
    libc = _glibc() if keeping_allowed() else None
    if libc is None:
        return False
    # a C int: up to 2 GiB free at the top of the heap stays; blocks of any size come from it
    trimmed = libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    no_mmap = libc.mallopt(_M_MMAP_MAX, 0)
    return bool(trimmed and no_mmap)


def return_freed_memory(threshold: int = 64 * 1024) -> bool:
    """Make glibc give blocks of ``threshold`` bytes and more back to the system when freed (and
    trim the heap at the same size), so that the resident size follows the live tensors.

    Returns:
        True when applied (glibc on Linux).
    """
    libc = _glibc()
    if libc is None:
        return False
    ok = all(
        libc.mallopt(param, value)
        for param, value in (
            (_M_MMAP_MAX, _DEFAULT_MMAP_MAX),
            (_M_MMAP_THRESHOLD, threshold),
            (_M_TRIM_THRESHOLD, threshold),
        )
    )
    libc.malloc_trim(0)
    return ok


def release_free_memory() -> bool:
    """Give every free page of the heap back to the system now (``malloc_trim(0)``).

    Returns:
        True when glibc released memory.
    """
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
