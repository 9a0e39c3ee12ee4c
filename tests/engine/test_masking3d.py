"""Blind-spot masking of volumes: density of the 3D grid, replacement strategies and leak-proofing.

Most tests use volumes whose voxels all carry distinct values (a shuffled arange), so that a value
found in the network input names the voxel it came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoise_studio.engine.masking import mask_batch, stratified_centres_3d


def unique_volumes(batch=3, channels=1, shape=(6, 20, 20), seed=0) -> torch.Tensor:
    count = batch * channels * int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(count).astype(np.float32)
    return torch.from_numpy(values.reshape(batch, channels, *shape))


def masked(patches, percent=5.0, strategy="uniform", radius=2, seed=0):
    return mask_batch(patches, percent, strategy, radius, torch.Generator().manual_seed(seed))


def centres_of(result) -> list[tuple[int, int, int, int]]:
    return [tuple(int(i) for i in c) for c in torch.nonzero(result.loss_mask[:, 0])]


def clean_neighbours(shape, centre, radius, centre_set) -> list[tuple[int, int, int]]:
    """The voxels a replacement of ``centre`` (b, z, y, x) may come from: the cube, inside the
    volume, neither the centre nor any other centre."""
    b, z, y, x = centre
    offsets = range(-radius, radius + 1)
    found = []
    for dz in offsets:
        for dy in offsets:
            for dx in offsets:
                p = (z + dz, y + dy, x + dx)
                if all(0 <= v < n for v, n in zip(p, shape, strict=True)) and (b, *p) not in centre_set:
                    found.append(p)
    return found


@pytest.mark.parametrize("shape", [(16, 32, 32), (4, 48, 48), (7, 45, 37)])
@pytest.mark.parametrize("percent", [0.5, 2.0, 5.0, 10.0, 25.0])
def test_masked_fraction_matches_mask_percent(percent, shape):
    patches = torch.randn(4, 1, *shape, generator=torch.Generator().manual_seed(1))
    result = masked(patches, percent=percent)
    # Stratified: every patch gets its share, not just the batch on average.
    per_patch = result.loss_mask.float().mean(dim=(1, 2, 3, 4))
    assert torch.allclose(per_patch, torch.full_like(per_patch, percent / 100), rtol=0.1)


def test_centres_spread_over_every_slab_of_the_grid():
    centres = stratified_centres_3d(2, 16, 32, 32, 2.0, torch.Generator().manual_seed(0))
    assert centres.shape == (2, 16, 32, 32) and centres.dtype == torch.bool
    # Every slice holds centres in both halves of the plane: a grid, not a clump.
    per_slab = centres.view(2, 4, 4, 32, 32).sum(dim=(2, 3, 4))
    assert (per_slab > 0).all()
    assert (centres[:, :, :16].sum(dim=(2, 3)) > 0).any() and (centres[:, :, 16:].sum(dim=(2, 3)) > 0).any()
    # Different draws place them differently.
    other = stratified_centres_3d(2, 16, 32, 32, 2.0, torch.Generator().manual_seed(1))
    assert not torch.equal(centres, other)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_shapes_targets_and_only_centres_change(channels):
    patches = unique_volumes(channels=channels)
    result = masked(patches, percent=5.0)
    b, _, d, h, w = patches.shape
    centre_channel = channels // 2
    assert result.inputs.shape == patches.shape
    assert result.targets.shape == (b, 1, d, h, w)
    assert result.loss_mask.shape == (b, 1, d, h, w) and result.loss_mask.dtype == torch.bool
    assert torch.equal(result.targets[:, 0], patches[:, centre_channel])
    changed = result.inputs != patches
    assert not changed[:, [c for c in range(channels) if c != centre_channel]].any()
    assert torch.equal(changed[:, centre_channel], result.loss_mask[:, 0])


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_replacements_come_from_clean_voxels_of_the_cube(radius):
    """Leak-proof: each replacement is the value of a voxel within the cube of the radius, in the
    same patch and channel, and never the centre itself nor another centre."""
    patches = unique_volumes(batch=2, channels=3, shape=(5, 16, 16))
    result = masked(patches, percent=8.0, radius=radius, seed=radius)
    centres = centres_of(result)
    centre_set = set(centres)
    for b, z, y, x in centres:
        value = result.inputs[b, 1, z, y, x]
        hits = torch.nonzero(patches == value)
        assert len(hits) == 1
        hb, hc, hz, hy, hx = (int(v) for v in hits[0])
        assert (hb, hc) == (b, 1)
        assert max(abs(hz - z), abs(hy - y), abs(hx - x)) <= radius
        assert (hb, hz, hy, hx) not in centre_set  # neither this centre nor another one


def test_uniform_replacements_use_the_whole_cube_including_other_slices():
    patches = unique_volumes(batch=4, shape=(8, 24, 24))
    result = masked(patches, percent=3.0, radius=1)
    dz = []
    for b, z, y, x in centres_of(result):
        hit = torch.nonzero(patches == result.inputs[b, 0, z, y, x])[0]
        dz.append(int(hit[2]) - z)
    assert set(dz) == {-1, 0, 1}


@pytest.mark.parametrize("strategy", ["median", "mean"])
def test_median_and_mean_of_the_clean_cube(strategy):
    patches = unique_volumes(batch=2, shape=(4, 12, 12))
    radius = 1
    result = masked(patches, percent=6.0, strategy=strategy, radius=radius)
    centres = centres_of(result)
    centre_set = set(centres)
    reduce = np.median if strategy == "median" else np.mean
    for b, z, y, x in centres:
        sources = clean_neighbours(patches.shape[2:], (b, z, y, x), radius, centre_set)
        expected = reduce([float(patches[b, 0, p[0], p[1], p[2]]) for p in sources])
        assert result.inputs[b, 0, z, y, x].item() == pytest.approx(expected, rel=1e-6)


def test_a_single_slice_volume_masks_within_its_plane():
    patches = unique_volumes(batch=2, shape=(1, 24, 24))
    result = masked(patches, percent=5.0)
    assert result.loss_mask.float().mean().item() == pytest.approx(0.05, rel=0.2)
    for b, z, y, x in centres_of(result):
        hit = torch.nonzero(patches == result.inputs[b, 0, z, y, x])
        assert len(hit) == 1 and int(hit[0][2]) == 0


def test_the_same_generator_seed_gives_the_same_masking():
    patches = unique_volumes()
    first, second = masked(patches, seed=3), masked(patches, seed=3)
    assert torch.equal(first.inputs, second.inputs) and torch.equal(first.loss_mask, second.loss_mask)
    assert not torch.equal(first.loss_mask, masked(patches, seed=4).loss_mask)


def test_struct_masks_are_refused_for_volumes():
    kernel = np.zeros((1, 3, 3), dtype=bool)
    kernel[0, 1, :] = True
    with pytest.raises(ValueError, match="struct masks are 2D/2.5D only"):
        mask_batch(unique_volumes(), 5.0, "uniform", 2, torch.Generator().manual_seed(0), struct_kernel=kernel)


def test_bad_shapes_and_radius_are_refused():
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="shape"):
        mask_batch(torch.zeros(2, 8, 8), 5.0, "uniform", 2, generator)
    with pytest.raises(ValueError, match="radius"):
        mask_batch(unique_volumes(), 5.0, "uniform", 0, generator)
    with pytest.raises(ValueError, match="strategy"):
        mask_batch(unique_volumes(), 5.0, "maximum", 2, generator)
