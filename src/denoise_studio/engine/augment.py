"""Augmentation of training patches: flips and rotations that keep what the noise model assumes.

2D and 2.5D patches take the dihedral group of the Y-X plane (or, with a struct mask, only the
elements that map the kernel onto itself); 3D patches take it times a flip in Z, never exchanging
Z with Y or X (stacks are anisotropic).
"""

from __future__ import annotations

import numpy as np


def dihedral(array: np.ndarray, choice: int) -> np.ndarray:
    """Element ``choice`` (0-7) of the dihedral group on the last two axes; 0-3 keep the axes."""
    if choice & 1:
        array = array[..., ::-1]
    if choice & 2:
        array = array[..., ::-1, :]
    if choice & 4:
        array = np.swapaxes(array, -1, -2)
    return array


def kernel_symmetries(kernel: np.ndarray, rotate: bool = True) -> tuple[int, ...]:
    """The flips/rotations that map a struct kernel onto itself: the only safe augmentations for it."""
    kernel = np.asarray(kernel, dtype=bool)
    choices = range(8 if rotate else 4)
    return tuple(c for c in choices if np.array_equal(dihedral(kernel, c), kernel))


def augment(
    batch: np.ndarray, rng: np.random.Generator, rotate: bool = True, allowed: tuple[int, ...] | None = None
) -> np.ndarray:
    """Random element of the dihedral group (8 flips/rotations), of the 4 axis-keeping flips, or of ``allowed``."""
    options = np.asarray(allowed if allowed else range(8 if rotate else 4))
    out = np.empty_like(batch)
    for i, choice in enumerate(rng.choice(options, size=batch.shape[0])):
        out[i] = dihedral(batch[i], int(choice))
    return out


def augment_3d(batch: np.ndarray, rng: np.random.Generator, rotate: bool = True) -> np.ndarray:
    """Random flips along X, Y and Z and, with ``rotate``, 90-degree rotations (transposes) in the Y-X
    plane, chosen per patch of ``batch`` ``(B, C, D, H, W)``.

    Z is never exchanged with Y or X: stacks are anisotropic, their Z spacing is not the lateral one.
    Rotations need square Y-X patches.
    """
    batch = np.asarray(batch)
    if batch.ndim != 5:
        raise ValueError(f"a batch of volumes is (B, C, D, H, W), got shape {batch.shape}")
    if rotate and batch.shape[-1] != batch.shape[-2]:
        raise ValueError(f"rotations in the Y-X plane need square patches, got {batch.shape[-2]}x{batch.shape[-1]}")
    # The Y-X dihedral group (8 elements, or its 4 flips) times a flip in Z.
    lateral = 8 if rotate else 4
    out = np.empty_like(batch)
    for i, choice in enumerate(rng.integers(0, 2 * lateral, size=batch.shape[0])):
        patch = dihedral(batch[i], int(choice) % lateral)
        out[i] = patch[..., ::-1, :, :] if choice >= lateral else patch
    return out
