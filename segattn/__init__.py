"""segattn: channel and spatial attention for 2D/3D medical image segmentation."""

from __future__ import annotations

__version__ = "0.1.0"
