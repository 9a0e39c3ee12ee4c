"""Classical denoising filters, the baseline every deep-learning result is compared with."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FILTERS = ("gaussian", "median", "box")


def apply_filter(image: np.ndarray, name: str, size: float) -> np.ndarray:
    """Filter each 2D plane of ``image`` (``(Y, X)`` or ``(Z, Y, X)``); ``size`` is sigma or the window side."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return np.stack([apply_filter(plane, name, size) for plane in image])
    if name == "gaussian":
        return ndimage.gaussian_filter(image, sigma=float(size), mode="reflect")
    if name == "median":
        return ndimage.median_filter(image, size=int(size), mode="reflect")
    if name == "box":
        return ndimage.uniform_filter(image, size=int(size), mode="reflect")
    raise ValueError(f"unknown filter {name!r}; choose from {', '.join(FILTERS)}")


#: The filter settings the benchmark compares against (a few sizes each).
BASELINE_FILTERS: tuple[tuple[str, float], ...] = (
    ("gaussian", 1.0),
    ("gaussian", 1.5),
    ("gaussian", 2.0),
    ("median", 3),
    ("median", 5),
    ("box", 3),
    ("box", 5),
)
