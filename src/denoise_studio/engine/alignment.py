"""Is a target aligned with its input? Cross-correlation, and registration when asked for.

Paired training (Noise2Noise, CARE) learns garbage from a shifted target: every structure would be
taught to move. Pairs are therefore checked before training.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .io import InputError


def estimate_shift(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float]:
    """The (dy, dx) by which ``moving`` must be shifted to match ``reference`` (sub-pixel).

    Cross-correlation of the windowed images (stacks use their mean projection), refined by a
    parabola through the peak and its neighbours. Unlike fully whitened phase correlation it is not
    misled by the independent noise of two noisy acquisitions, whose energy sits at high frequencies.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(moving, dtype=np.float64)
    if a.ndim == 3:
        a, b = a.mean(axis=0), b.mean(axis=0)
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))  # tame the image edges
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    cross = fa * np.conj(fb)
    surface = np.fft.ifft2(cross).real
    peak = np.unravel_index(np.argmax(surface), surface.shape)
    shift = []
    for axis, size in enumerate(surface.shape):
        index = list(peak)
        values = []
        for step in (-1, 0, 1):
            index[axis] = (peak[axis] + step) % size
            values.append(surface[tuple(index)])
        denominator = values[0] - 2 * values[1] + values[2]
        offset = 0.5 * (values[0] - values[2]) / denominator if denominator != 0 else 0.0
        position = peak[axis] + offset
        shift.append(position - size if position > size / 2 else position)
    return float(shift[0]), float(shift[1])


def align_target(
    image: np.ndarray, target: np.ndarray, max_shift: float = 1.0, register: bool = False, name: str = "target"
) -> np.ndarray:
    """Return ``target`` if aligned with ``image`` within ``max_shift`` pixels, registered if asked,
    else raise :class:`InputError` saying by how much it is off."""
    dy, dx = estimate_shift(image, target)
    distance = float(np.hypot(dy, dx))
    if distance <= max_shift:
        return target
    if not register:
        raise InputError(
            f"{name} is shifted by ({dy:+.1f}, {dx:+.1f}) pixels (y, x) relative to the input, more than "
            f"{max_shift:g}; align the pair first or turn on target registration (--register)"
        )
    shift = (0.0, dy, dx) if np.ndim(target) == 3 else (dy, dx)
    return ndimage.shift(np.asarray(target, dtype=np.float32), shift, order=3, mode="reflect")
