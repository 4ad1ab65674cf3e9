"""segattn.allocator: glibc keeps freed memory for the next step (no page faults again)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from segattn.allocator import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc's malloc only")

# Allocate, touch and free a 48 MiB block (above glibc's largest mmap threshold) five times;
# print whether the setting applied and the page faults of the last four rounds.
PROBE = """
import resource, sys
from segattn.allocator import keep_freed_memory, return_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else return_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(48 << 20); del block
start = faults()
for _ in range(4):
    block = bytearray(48 << 20)  # zero-filled: every page is written
    del block
print(applied, faults() - start)
"""


def probe(mode: str, **env: str) -> tuple[bool, int]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "SEGATTN_MALLOC"))
    }
    environment.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_kept_memory_is_not_faulted_in_again() -> None:
    applied, faults = probe("keep")
    assert applied
    assert faults < 100  # 4 x 12,288 pages without the setting

    applied, faults = probe("return")
    assert applied
    assert faults > 4 * (48 << 20) // 4096 * 0.9  # every round faults its pages in again


@pytest.mark.parametrize(
    "env", [{"SEGATTN_MALLOC": "default"}, {"MALLOC_TRIM_THRESHOLD_": "1000000"}]
)
def test_users_choice_wins(env: dict[str, str]) -> None:
    applied, faults = probe("keep", **env)
    assert not applied
    assert faults > 4 * (48 << 20) // 4096 * 0.9
