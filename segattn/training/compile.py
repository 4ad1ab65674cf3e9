"""Where ``torch.compile`` keeps its Inductor cache when the user did not say."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["INDUCTOR_CACHE", "use_project_inductor_cache"]

#: Inductor's cache, relative to the working directory (unless TORCHINDUCTOR_CACHE_DIR is set).
INDUCTOR_CACHE = Path(".cache") / "torchinductor"


def use_project_inductor_cache() -> str:
    """Set ``TORCHINDUCTOR_CACHE_DIR`` to ``./.cache/torchinductor`` unless set; return it."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(INDUCTOR_CACHE.resolve()))
