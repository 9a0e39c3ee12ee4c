"""Augmentation of training patches: flips and rotations that keep what the noise model assumes.

2D and 2.5D patches take the dihedral group of the Y-X plane (or, with a struct mask, only the
elements that map the kernel onto itself); 3D patches take it times a flip in Z, never exchanging
Z with Y or X (stacks are anisotropic). At test time a network may be run under the same group
and its answers averaged (test-time augmentation).
"""

from __future__ import annotations

import numpy as np
import torch


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


# -- test-time augmentation ------------------------------------------------------------------------
def test_time_transforms(augment: bool, rotate: bool, struct_kernel: np.ndarray | None = None) -> tuple[int, ...]:
    """The dihedral elements a network may be run under at test time: those it was trained under.

    All 8 flips/rotations; the 4 flips when rotations were off (structured noise has a direction a
    rotation would turn); with a struct mask only the elements that keep its kernel; only the
    identity when the network was trained without augmentation.
    """
    if not augment:
        return (0,)
    if struct_kernel is not None:
        return kernel_symmetries(struct_kernel, rotate)
    return tuple(range(8 if rotate else 4))


def dihedral_tensor(tensor: torch.Tensor, choice: int) -> torch.Tensor:
    """:func:`dihedral` on a tensor's last two axes (Y, X; a volume's Z is never touched)."""
    if choice & 1:
        tensor = tensor.flip(-1)
    if choice & 2:
        tensor = tensor.flip(-2)
    if choice & 4:
        tensor = tensor.transpose(-1, -2)
    return tensor


def inverse_dihedral_tensor(tensor: torch.Tensor, choice: int) -> torch.Tensor:
    """Undo :func:`dihedral_tensor` (its steps in reverse order; each is its own inverse)."""
    if choice & 4:
        tensor = tensor.transpose(-1, -2)
    if choice & 2:
        tensor = tensor.flip(-2)
    if choice & 1:
        tensor = tensor.flip(-1)
    return tensor
