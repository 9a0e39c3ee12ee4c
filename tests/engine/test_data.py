"""Training data: normalisation, 2.5D triplets, the train/validation split and augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from denoise_studio.engine.config import DataConfig
from denoise_studio.engine.data import (
    MAX_VALIDATION_PATCHES,
    Normalization,
    PatchSampler,
    augment,
    check_depth_for_prediction,
    check_stack_for_mode,
    dihedral,
    kernel_symmetries,
    plane_input,
    triplet_indices,
)
from denoise_studio.engine.io import InputError


def position_stack(depth: int, height: int, width: int) -> np.ndarray:
    """A stack whose value at (z, y, x) is its flat index: a patch's smallest value is its origin."""
    return np.arange(depth * height * width, dtype=np.float32).reshape(depth, height, width)


def decode_origin(patch: np.ndarray, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(i) for i in np.unravel_index(int(patch.min()), shape))


# -- normalisation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["meanstd", "percentile"])
def test_normalization_round_trip(kind, make_image):
    image = make_image((48, 48)) * 100 + 500
    norm = Normalization.fit([image[np.newaxis]], DataConfig(normalization=kind))
    normalized = norm.normalize(image)
    if kind == "meanstd":
        assert normalized.mean() == pytest.approx(0, abs=1e-4) and normalized.std() == pytest.approx(1, rel=1e-4)
    else:
        low, high = np.percentile(normalized, [1.0, 99.8])
        assert low == pytest.approx(0, abs=1e-5) and high == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(norm.denormalize(normalized), image, rtol=1e-5)
    assert Normalization.from_dict(norm.to_dict()) == norm


def test_normalization_refuses_data_without_spread():
    with pytest.raises(InputError, match="no intensity spread"):
        Normalization.fit([np.ones((1, 32, 32))], DataConfig())


# -- 2.5D ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("z", "depth", "expected"),
    [(0, 5, (1, 0, 1)), (1, 5, (0, 1, 2)), (2, 5, (1, 2, 3)), (4, 5, (3, 4, 3)), (0, 2, (1, 0, 1)), (1, 2, (0, 1, 0))],
)
def test_triplets_reflect_at_the_stack_ends(z, depth, expected):
    assert triplet_indices(z, depth) == expected


def test_plane_input_channels():
    stack = position_stack(4, 16, 16)
    np.testing.assert_array_equal(plane_input(stack, 0, "2.5d"), stack[[1, 0, 1]])
    np.testing.assert_array_equal(plane_input(stack, 3, "2.5d"), stack[[2, 3, 2]])
    np.testing.assert_array_equal(plane_input(stack, 2, "2d"), stack[2:3])


@pytest.mark.parametrize("depth", [1, 5, 19])
def test_2p5d_needs_20_slices(depth):
    with pytest.raises(InputError, match=r"(?i)insufficient stack depth.*need 20"):
        check_stack_for_mode(np.random.default_rng(0).random((depth, 32, 32)), "2.5d")
    assert check_stack_for_mode(np.random.default_rng(0).random((depth, 32, 32)), "2d").shape == (depth, 32, 32)


def test_20_slices_are_enough_for_2p5d():
    assert check_stack_for_mode(np.random.default_rng(0).random((20, 32, 32)), "2.5d").shape == (20, 32, 32)


def test_2p5d_prediction_needs_3_slices():
    with pytest.raises(InputError, match="at least 3 slices"):
        check_depth_for_prediction(2, "2.5d")
    check_depth_for_prediction(3, "2.5d")
    check_depth_for_prediction(1, "2d")


# -- the validation split -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shapes", "mode", "patch", "val_fraction"),
    [
        ([(1, 96, 80)], "2d", 32, 0.1),
        ([(1, 64, 64), (2, 100, 70)], "2d", 16, 0.3),
        ([(1, 50, 130)], "2d", 32, 0.5),
        ([(6, 64, 96)], "2.5d", 32, 0.2),
    ],
)
def test_training_patches_never_touch_validation_blocks(shapes, mode, patch, val_fraction):
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    stacks = [position_stack(*shape) + offset for shape, offset in zip(shapes, offsets, strict=False)]
    config = DataConfig(patch_size=patch, patches_per_image=20, val_fraction=val_fraction, augment=True)
    sampler = PatchSampler(stacks, mode, config, np.random.default_rng(0))
    held_out = []
    for shape, blocks in zip(shapes, sampler.validation_blocks, strict=True):
        mask = np.zeros(shape[1:], dtype=bool)
        for y, x in blocks:
            assert y % patch == 0 and x % patch == 0  # blocks sit on the patch grid
            mask[y : y + patch, x : x + patch] = True
        assert mask.mean() >= val_fraction / 2  # a real share is held out
        held_out.append(mask)
    origins = set()
    rng = np.random.default_rng(1)
    for _ in range(15):
        for batch in sampler.epoch(rng, batch_size=16):
            centre = batch[:, batch.shape[1] // 2]
            for item in centre:
                index = int(np.searchsorted(offsets, item.min(), side="right")) - 1
                z, y, x = decode_origin(item - offsets[index], shapes[index])
                region = stacks[index][z, y : y + patch, x : x + patch]
                # The patch is that region (maybe flipped or rotated) and it avoids every held-out block.
                np.testing.assert_array_equal(np.sort(item, axis=None), np.sort(region, axis=None))
                assert not held_out[index][y : y + patch, x : x + patch].any()
                origins.add((index, z, y, x))
    assert len(origins) > 50  # patches are drawn all over the allowed area


def test_2p5d_patches_carry_the_neighbouring_slices():
    stack = position_stack(5, 64, 64)
    config = DataConfig(patch_size=32, patches_per_image=8, augment=False)
    sampler = PatchSampler([stack], "2.5d", config, np.random.default_rng(0))
    for batch in sampler.epoch(np.random.default_rng(0), batch_size=8):
        for item in batch:
            z, y, x = decode_origin(item[1], stack.shape)
            expected = [stack[i, y : y + 32, x : x + 32] for i in triplet_indices(z, 5)]
            np.testing.assert_array_equal(item, np.stack(expected))


def test_validation_patches_are_the_held_out_blocks():
    stack = position_stack(3, 96, 96)
    config = DataConfig(patch_size=32, val_fraction=0.25)
    sampler = PatchSampler([stack], "2d", config, np.random.default_rng(0))
    patches = sampler.validation_patches(np.random.default_rng(0))
    blocks = sampler.validation_blocks[0]
    assert patches.shape == (3 * len(blocks), 1, 32, 32)
    expected = [stack[z, y : y + 32, x : x + 32] for z in range(3) for y, x in blocks]
    np.testing.assert_array_equal(patches[:, 0], np.stack(expected))


def test_validation_patches_are_capped():
    stack = position_stack(40, 64, 64)
    sampler = PatchSampler([stack], "2d", DataConfig(patch_size=16, val_fraction=0.25), np.random.default_rng(0))
    assert len(sampler.validation_patches(np.random.default_rng(0))) == MAX_VALIDATION_PATCHES


def test_the_split_depends_on_the_seed_only():
    stack = position_stack(1, 128, 128)
    config = DataConfig(patch_size=32, val_fraction=0.25)
    blocks = [PatchSampler([stack], "2d", config, np.random.default_rng(s)).validation_blocks for s in (3, 3, 4)]
    assert blocks[0] == blocks[1] != blocks[2]


@pytest.mark.parametrize(
    ("shape", "patch", "message"),
    [((40, 40), 64, "smaller than the patch size"), ((32, 32), 32, "too small to hold out")],
)
def test_images_too_small_for_the_patch_size(shape, patch, message):
    with pytest.raises(InputError, match=message):
        PatchSampler([position_stack(1, *shape)], "2d", DataConfig(patch_size=patch), np.random.default_rng(0))


def test_steps_per_epoch_counts_every_slice():
    sampler = PatchSampler(
        [position_stack(3, 64, 64)], "2d", DataConfig(patch_size=16, patches_per_image=10), np.random.default_rng(0)
    )
    assert sampler.steps_per_epoch(8) == 4  # 30 patches
    assert sum(len(b) for b in sampler.epoch(np.random.default_rng(0), 8)) == 30


# -- augmentation ----------------------------------------------------------------------------------------
def test_dihedral_group_has_eight_distinct_elements():
    square = np.arange(9).reshape(3, 3)
    images = {dihedral(square, c).tobytes() for c in range(8)}
    assert len(images) == 8
    for choice in range(4):  # 0-3 keep the axes: rows stay rows
        assert {tuple(sorted(r)) for r in dihedral(square, choice)} == {tuple(sorted(r)) for r in square}


def test_kernel_symmetries_keep_the_kernel():
    line = np.zeros((1, 5, 5), dtype=bool)
    line[0, 2, :] = True
    assert kernel_symmetries(line, rotate=True) == (0, 1, 2, 3)
    assert kernel_symmetries(line, rotate=False) == (0, 1, 2, 3)
    right = np.zeros((1, 3, 3), dtype=bool)
    right[0, 1, 1:] = True  # the blind spot and its right neighbour: a horizontal flip breaks it
    assert kernel_symmetries(right) == (0, 2)
    dot = np.zeros((1, 3, 3), dtype=bool)
    dot[0, 1, 1] = True
    assert kernel_symmetries(dot) == tuple(range(8))


def test_augment_uses_only_the_allowed_transforms():
    batch = np.arange(16 * 9, dtype=np.float32).reshape(16, 1, 3, 3)
    out = augment(batch, np.random.default_rng(0), allowed=(0, 2))
    for original, transformed in zip(batch, out, strict=True):
        assert any(np.array_equal(dihedral(original, c), transformed) for c in (0, 2))
    out = augment(batch, np.random.default_rng(0), rotate=False)
    for original, transformed in zip(batch, out, strict=True):
        assert any(np.array_equal(dihedral(original, c), transformed) for c in range(4))


def test_a_struct_kernel_limits_augmentation_to_its_symmetries():
    line = np.zeros((1, 3, 3), dtype=bool)
    line[0, 1, :] = True
    config = DataConfig(patch_size=16, augment=True)
    sampler = PatchSampler([position_stack(1, 64, 64)], "2d", config, np.random.default_rng(0), struct_kernel=line)
    assert sampler.transforms == (0, 1, 2, 3)  # flips only: a rotation would turn the line
    for batch in sampler.epoch(np.random.default_rng(0), batch_size=16):
        rows = batch[:, 0, :, 1] - batch[:, 0, :, 0]  # neighbours along a row differ by 1 in a position stack
        assert np.all(np.abs(rows) == 1)
