"""The attention lens: capture attention gates, put them on the scan's grid, draw montages.

- :func:`capture_attention` / :func:`attention_hooks`: the gates every attention module of a
  network applies in a forward pass (:mod:`segattn.inspect.capture`);
- :func:`explain_scan` / :func:`write_explanation`: a checkpoint's gates for one scan, resampled
  to the scan's own voxel grid through the Predictor's inverse transforms, written as NIfTI, CSV
  and a PNG montage (:mod:`segattn.inspect.scan`, :mod:`segattn.inspect.montage`).
"""

from __future__ import annotations

from segattn.inspect.capture import (
    AttentionRecord,
    attention_hooks,
    capture_attention,
    module_gates,
    registry_name,
    to_image_grid,
)
from segattn.inspect.montage import save_montage
from segattn.inspect.scan import Explanation, ScanGate, explain_scan, write_explanation

__all__ = [
    "AttentionRecord",
    "Explanation",
    "ScanGate",
    "attention_hooks",
    "capture_attention",
    "explain_scan",
    "module_gates",
    "registry_name",
    "save_montage",
    "to_image_grid",
    "write_explanation",
]
