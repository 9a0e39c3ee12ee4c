"""Classical denoising filters: a method of their own, and the baseline every deep-learning result is
compared with."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

FILTERS = ("gaussian", "median", "box", "box3d", "nlm")

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


def apply_filter(image: np.ndarray, name: str, size: float | None = None) -> np.ndarray:
    """Filter ``image`` (``(Y, X)`` or ``(Z, Y, X)``; 2D filters work plane by plane).

    ``size`` is the Gaussian sigma, the median/box window side, or for ``nlm`` the patch distance
    (default 6); ``box3d`` averages a size^3 box across slices too.
    """
    image = np.asarray(image, dtype=np.float32)
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose from {', '.join(FILTERS)}")
    if name == "box3d":
        return ndimage.uniform_filter(image, size=int(size or 3), mode="reflect")
    if image.ndim == 3:
        return np.stack([apply_filter(plane, name, size) for plane in image])
    if name == "gaussian":
        return ndimage.gaussian_filter(image, sigma=float(size or 1.0), mode="reflect")
    if name == "median":
        return ndimage.median_filter(image, size=int(size or 3), mode="reflect")
    if name == "box":
        return ndimage.uniform_filter(image, size=int(size or 3), mode="reflect")
    return _non_local_means(image, int(size or 6))


def _non_local_means(image: np.ndarray, distance: int) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    from .metrics import noise_sigma

    sigma = noise_sigma(image)
    return denoise_nl_means(
        image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=distance, fast_mode=True
    ).astype(np.float32)


def parse_filter_spec(spec: str) -> tuple[str, float | None]:
    """``"gaussian:1.5"`` -> ``("gaussian", 1.5)``; ``"nlm"`` -> ``("nlm", None)``."""
    name, _, parameter = spec.partition(":")
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose from {', '.join(FILTERS)}")
    try:
        return name, (float(parameter) if parameter else None)
    except ValueError:
        raise ValueError(f"filter {spec!r}: the size after ':' must be a number") from None


def apply_filter_spec(image: np.ndarray, spec: str) -> np.ndarray:
    name, size = parse_filter_spec(spec)
    return apply_filter(image, name, size)


def filter_function(name: str, size: float | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The filter as a function of the image alone: the denoiser ``assess`` reruns for its Stein term."""
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; choose from {', '.join(FILTERS)}")

    def run(image: np.ndarray) -> np.ndarray:
        return apply_filter(image, name, size)

    return run
