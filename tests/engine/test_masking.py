"""Blind-spot masking: density, replacement strategies, structN2V kernels and leak-proofing.

Most tests use patches whose pixels all carry distinct values (a shuffled arange), so that a value
found in the network input names the pixel it came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoise_studio.engine.masking import _neighbour_offsets, mask_batch, struct_kernel_array


def unique_patches(batch: int = 4, channels: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    values = np.random.default_rng(seed).permutation(batch * channels * size * size).astype(np.float32)
    return torch.from_numpy(values.reshape(batch, channels, size, size))


def masked(patches, percent=10.0, strategy="uniform", radius=2, kernel=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return mask_batch(patches, percent, strategy, radius, generator, struct_kernel=kernel)


def source_of(value: float, patches: torch.Tensor) -> tuple[int, ...]:
    """(b, c, y, x) of the pixel of ``patches`` that holds ``value``."""
    hits = torch.nonzero(patches == value)
    assert len(hits) == 1, f"value {value} is not an original pixel value"
    return tuple(int(i) for i in hits[0])


def centres_of(result) -> list[tuple[int, int, int]]:
    return [tuple(int(i) for i in c) for c in torch.nonzero(result.loss_mask[:, 0])]


def neighbours(shape: tuple[int, int], y: int, x: int, radius: int) -> list[tuple[int, int]]:
    height, width = shape
    return [
        (y + dy, x + dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if (dy, dx) != (0, 0) and 0 <= y + dy < height and 0 <= x + dx < width
    ]


def kernel_positions(kernel: np.ndarray, y: int, x: int, shape: tuple[int, int]):
    """(plane, y, x) of every non-centre kernel pixel around (y, x) that lies inside the patch."""
    planes, size, _ = kernel.shape
    k = size // 2
    for plane, ky, kx in zip(*np.nonzero(kernel), strict=True):
        if (plane, ky, kx) == (planes // 2, k, k):
            continue
        py, px = y + ky - k, x + kx - k
        if 0 <= py < shape[0] and 0 <= px < shape[1]:
            yield int(plane), int(py), int(px)


HORIZONTAL = np.zeros((1, 5, 5), dtype=bool)
HORIZONTAL[0, 2, :] = True
#: No symmetry at all: catches a kernel applied mirrored.
ASYMMETRIC = np.zeros((1, 5, 5), dtype=bool)
ASYMMETRIC[0, 2, 2:] = True
ASYMMETRIC[0, 0, 1] = ASYMMETRIC[0, 3, 0] = True
KERNELS = {"horizontal": HORIZONTAL, "asymmetric": ASYMMETRIC}


@pytest.mark.parametrize("percent", [0.5, 2.0, 5.0, 10.0, 15.0, 25.0])
def test_masked_fraction_matches_mask_percent(percent):
    patches = torch.randn(8, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    result = masked(patches, percent=percent)
    fraction = result.loss_mask.float().mean().item()
    assert fraction == pytest.approx(percent / 100, rel=0.1)
    # Stratified: every patch gets its share, not just the batch on average.
    per_patch = result.loss_mask.float().mean(dim=(1, 2, 3))
    assert torch.allclose(per_patch, torch.full_like(per_patch, percent / 100), rtol=0.15)


def test_only_centres_change_and_targets_are_the_originals():
    patches = unique_patches()
    result = masked(patches, percent=10.0, strategy="uniform", radius=2)
    assert torch.equal(result.inputs != patches, result.loss_mask)
    assert torch.equal(result.targets, patches)
    assert result.loss_mask.dtype == torch.bool


@pytest.mark.parametrize("radius", [1, 2, 5])
def test_uniform_replacement_is_a_clean_neighbour_within_the_radius(radius):
    patches = unique_patches(batch=2, size=32)
    result = masked(patches, percent=15.0, strategy="uniform", radius=radius)
    is_centre = result.loss_mask[:, 0]
    distances = []
    for b, y, x in centres_of(result):
        value = result.inputs[b, 0, y, x]
        assert value != patches[b, 0, y, x], "a blind spot sees its own value"
        sb, _, sy, sx = source_of(value, patches)
        assert sb == b
        assert not is_centre[b, sy, sx], "a replacement value comes from another blind spot"
        distances.append(max(abs(sy - y), abs(sx - x)))
    assert min(distances) >= 1
    assert max(distances) == radius  # the whole neighbourhood is used, not just its inner part


@pytest.mark.parametrize(("strategy", "radius"), [("median", 1), ("median", 2), ("median", 3), ("mean", 1)])
def test_median_and_mean_match_numpy_over_the_clean_neighbours(strategy, radius):
    patches = unique_patches(batch=2, size=32, seed=3)
    result = masked(patches, percent=10.0, strategy=strategy, radius=radius)
    is_centre = result.loss_mask[:, 0].numpy()
    original = patches[:, 0].numpy().astype(np.float64)
    reduce = np.median if strategy == "median" else np.mean
    for b, y, x in centres_of(result):
        clean = [original[b, ny, nx] for ny, nx in neighbours((32, 32), y, x, radius) if not is_centre[b, ny, nx]]
        assert float(result.inputs[b, 0, y, x]) == pytest.approx(reduce(clean), rel=1e-6)


def test_median_by_hand():
    # One blind spot per patch: an 8x8 patch at 1 % gets a 1x1 grid of boxes.
    patch = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8) ** 2
    result = masked(patch, percent=1.0, strategy="median", radius=1, seed=5)
    ((_, y, x),) = centres_of(result)
    values = sorted(float(patch[0, 0, ny, nx]) for ny, nx in neighbours((8, 8), y, x, 1))
    middle = len(values) // 2
    expected = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
    assert float(result.inputs[0, 0, y, x]) == expected


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_struct_kernel_randomises_every_kernel_pixel(kernel_name):
    patches = unique_patches(batch=2, size=32, seed=4)
    kernel = struct_kernel_array(KERNELS[kernel_name], 1)
    result = masked(patches, percent=3.0, strategy="uniform", radius=3, kernel=kernel)
    expected_changed = result.loss_mask.clone()
    for b, y, x in centres_of(result):
        low, high = patches[b].min(), patches[b].max()
        for _, py, px in kernel_positions(kernel, y, x, (32, 32)):
            value = result.inputs[b, 0, py, px]
            assert value != patches[b, 0, py, px]
            assert low <= value <= high
            expected_changed[b, 0, py, px] = True
    assert torch.equal(result.inputs != patches, expected_changed)


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_replacement_never_comes_from_a_struct_kernel_pixel(kernel_name):
    patches = unique_patches(batch=2, size=32, seed=5)
    kernel = struct_kernel_array(KERNELS[kernel_name], 1)
    result = masked(patches, percent=3.0, strategy="uniform", radius=3, kernel=kernel)
    covered = torch.zeros_like(result.loss_mask[:, 0])  # every pixel under some kernel, centres included
    centres = centres_of(result)
    for b, y, x in centres:
        covered[b, y, x] = True
        for _, py, px in kernel_positions(kernel, y, x, (32, 32)):
            covered[b, py, px] = True
    checked = 0
    for b, y, x in centres:
        value = result.inputs[b, 0, y, x]
        if not torch.any(patches == value):
            continue  # this centre lies under another centre's kernel and was randomised
        sb, _, sy, sx = source_of(value, patches)
        assert sb == b and not covered[b, sy, sx]
        assert max(abs(sy - y), abs(sx - x)) <= 3
        checked += 1
    assert checked > len(centres) // 2


def test_three_plane_kernel_touches_the_neighbouring_slices():
    kernel = np.zeros((3, 3, 3), dtype=bool)
    kernel[:, 1, 1] = True  # the blind spot and the same pixel in slices Z-1 and Z+1
    kernel[1, 1, 0] = kernel[1, 1, 2] = True  # and its horizontal neighbours in slice Z
    kernel = struct_kernel_array(kernel.tolist(), 3)
    patches = unique_patches(batch=2, channels=3, size=32, seed=6)
    result = masked(patches, percent=5.0, strategy="uniform", radius=2, kernel=kernel)
    assert torch.equal(result.targets[:, 0], patches[:, 1])
    expected_changed = torch.zeros_like(patches, dtype=torch.bool)
    for b, y, x in centres_of(result):
        expected_changed[b, 1, y, x] = True
        low, high = patches[b, 1].min(), patches[b, 1].max()
        positions = list(kernel_positions(kernel, y, x, (32, 32)))
        assert {plane for plane, _, _ in positions} == {0, 1, 2}
        for plane, py, px in positions:
            value = result.inputs[b, plane, py, px]
            assert value != patches[b, plane, py, px] and low <= value <= high
            expected_changed[b, plane, py, px] = True
    assert torch.equal(result.inputs != patches, expected_changed)


def test_a_2d_kernel_in_2p5d_masks_the_centre_slice_only():
    kernel = struct_kernel_array(HORIZONTAL, 3)
    assert kernel.shape == (3, 5, 5)
    assert not kernel[0].any() and not kernel[2].any() and np.array_equal(kernel[1], HORIZONTAL[0])
    patches = unique_patches(batch=1, channels=3, size=32)
    result = masked(patches, percent=5.0, kernel=kernel)
    assert torch.equal(result.inputs[:, [0, 2]], patches[:, [0, 2]])


def test_kernel_errors_are_clear():
    with pytest.raises(ValueError, match="2 planes"):
        struct_kernel_array(np.ones((2, 3, 3), dtype=bool), 3)
    with pytest.raises(ValueError, match="covers the whole replacement neighbourhood"):
        _neighbour_offsets(1, "uniform", np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="unknown masking strategy"):
        masked(unique_patches(), strategy="random")


def test_masking_is_reproducible_for_a_seed():
    patches = unique_patches()
    first, again, other = masked(patches, seed=1), masked(patches, seed=1), masked(patches, seed=2)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.loss_mask, again.loss_mask)
    assert not torch.equal(first.loss_mask, other.loss_mask)
