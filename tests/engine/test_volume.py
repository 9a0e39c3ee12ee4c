"""3D building blocks: tiled volume prediction is exact, patches are gathered right, augmentation
keeps Z apart from Y and X."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from denoise_studio.engine.augment import augment_3d
from denoise_studio.engine.config import ModelConfig
from denoise_studio.engine.prediction import PredictionStopped
from denoise_studio.engine.unet import DeconvUNet, UNet, prediction_radii
from denoise_studio.engine.volume import margins_for, patches_3d, predict_volume

UNTILED = (512, 512, 512)


def he_initialised(model: UNet, seed: int = 0) -> UNet:
    """Random weights that keep the signal alive through the layers, as a trained model's output
    varies with its input (PyTorch's default gives a nearly constant output)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


def volume_model(in_channels=1, out_channels=1, psf_sigma=None, **options) -> UNet:
    config = ModelConfig(**{"depth": 1, "base_features": 4, **options})
    if psf_sigma is not None:
        return he_initialised(DeconvUNet(config, in_channels, psf_sigma, out_channels=out_channels, dims=3))
    return he_initialised(UNet(config, in_channels=in_channels, out_channels=out_channels, dims=3))


def smooth_volume(channels: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    clean = sum(np.sin(grid / (3.0 + axis) + axis) for axis, grid in enumerate(grids))
    return np.stack([clean * (c + 1) + rng.normal(0, 0.3, shape) for c in range(channels)]).astype(np.float32)


def predict(model: UNet, volume: np.ndarray, tile=UNTILED, batch_size=1, forward=None, **extra) -> np.ndarray:
    return predict_volume(
        forward or model,
        volume,
        steps=model.steps,
        margins=margins_for(model),
        tile=tile,
        batch_size=batch_size,
        **extra,
    )


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


#: (model options, input channels, output channels, volume shape, tile): every case forces many tiles.
EXACTNESS_CASES = {
    "depth1": ({}, 1, 1, (7, 45, 37), (4, 16, 16)),
    "depth1-no-z-pool-2in-2out": ({"pool_z": False, "residual": True}, 2, 2, (7, 45, 37), (3, 16, 24)),
    "depth1-1in-2out-bilinear": ({"upsampling": "bilinear"}, 1, 2, (5, 30, 33), (2, 8, 8)),
    "depth2-no-z-pool-n2v2": (
        {"depth": 2, "pool_z": False, "blur_pool": True, "top_skip": False},
        1,
        1,
        (7, 45, 37),
        (4, 24, 16),
    ),
    "depth2-transposed": ({"depth": 2, "upsampling": "transposed"}, 2, 2, (6, 21, 19), (4, 8, 12)),
}


@pytest.mark.parametrize("case", EXACTNESS_CASES)
def test_tiled_equals_untiled(case):
    options, in_channels, out_channels, shape, tile = EXACTNESS_CASES[case]
    model = volume_model(in_channels, out_channels, **options)
    volume = smooth_volume(in_channels, shape)
    untiled = predict(model, volume)
    tiled = predict(model, volume, tile=tile, batch_size=3)
    assert tiled.shape == untiled.shape == (out_channels, *shape)
    assert tiled.dtype == np.float32 and tiled.flags.c_contiguous
    assert np.ptp(untiled) > 0.1  # the comparison is not between two constants
    assert_same(tiled, untiled)


def test_too_small_a_margin_breaks_tiling():
    """The control for the exactness tests: without the margin, tile borders show."""
    model = volume_model()
    volume = smooth_volume(1, (6, 32, 32))
    untiled = predict(model, volume)
    tiled = predict_volume(model, volume, steps=model.steps, margins=(0, 0, 0), tile=(2, 8, 8))
    assert np.abs(tiled - untiled).max() > 1e-3


def test_a_single_tile_without_margin_is_the_plain_forward_pass():
    model = volume_model(in_channels=2, out_channels=2)
    volume = smooth_volume(2, (4, 16, 18))
    result = predict_volume(model, volume, steps=model.steps, margins=(0, 0, 0), tile=UNTILED)
    with torch.no_grad():
        expected = model(torch.from_numpy(volume[None])).numpy()[0]
    assert_same(result, expected)


@pytest.mark.parametrize(("pool_z", "shape"), [(True, (1, 20, 19)), (False, (1, 20, 19)), (True, (3, 9, 10))])
def test_a_single_slice_or_a_margin_longer_than_the_axis(pool_z, shape):
    model = volume_model(pool_z=pool_z)
    assert margins_for(model)[0] > shape[0]
    volume = smooth_volume(1, shape)
    untiled = predict(model, volume)
    assert untiled.shape == (1, *shape) and np.isfinite(untiled).all()
    assert_same(predict(model, volume, tile=(1, 4, 4), batch_size=2), untiled)


def test_several_outputs_of_a_deconvolution_model():
    model = volume_model(in_channels=2, out_channels=2, psf_sigma=1.0, pool_z=False)
    volume = smooth_volume(2, (5, 27, 23))
    names = ("denoised", "deconvolved")
    both = lambda x: model.outputs(x, names)  # noqa: E731
    untiled = predict(model, volume, forward=both)
    tiled = predict(model, volume, tile=(2, 8, 8), batch_size=4, forward=both)
    assert untiled.shape == (4, *volume.shape[1:])
    assert_same(tiled, untiled)
    assert_same(untiled[:2], predict(model, volume))


def test_margins_are_the_radii_rounded_up_to_the_steps():
    for options in ({}, {"pool_z": False}, {"depth": 2}):
        model = volume_model(**options)
        radii = prediction_radii(model)
        margins = margins_for(model)
        for radius, step, margin in zip(radii, model.steps, margins, strict=True):
            assert margin % step == 0 and radius <= margin < radius + step
    deconv = volume_model(psf_sigma=1.0, pool_z=False)
    plain = volume_model(pool_z=False)
    assert margins_for(deconv)[0] == margins_for(plain)[0]  # the PSF is lateral
    assert margins_for(deconv)[1] > margins_for(plain)[1]


def test_progress_counts_batches_and_stop_raises():
    model = volume_model()
    volume = smooth_volume(1, (4, 16, 16))
    calls = []
    predict(model, volume, tile=(2, 8, 8), batch_size=3, on_tiles=lambda done, total: calls.append((done, total)))
    # 2 x 2 x 2 tiles of one shape in batches of 3: three batches, reported after the first two.
    assert calls == [(1, 3), (2, 3)]
    single = []
    predict(model, volume, on_tiles=lambda done, total: single.append(done))
    assert single == []

    class Stop:
        requested = False

    stop = Stop()
    seen = []

    def forward(batch):
        seen.append(batch.shape[0])
        stop.requested = True
        return model(batch)

    with pytest.raises(PredictionStopped):
        predict(model, volume, tile=(2, 8, 8), forward=forward, stop=stop)
    assert seen == [1]


def test_predict_volume_refuses_bad_arguments():
    model = volume_model()
    with pytest.raises(ValueError, match="C, Z, Y, X"):
        predict(model, np.zeros((4, 16, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="per axis"):
        predict_volume(model, np.zeros((1, 2, 8, 8), np.float32), steps=(2, 2), margins=(2, 2, 2), tile=(8, 8, 8))


def test_patches_3d_match_slicing():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(2, 9, 20, 17)).astype(np.float32)
    size = (4, 6, 5)
    origins = np.array([[0, 0, 0], [5, 14, 12], [2, 7, 3], [2, 7, 3]])
    patches = patches_3d(volume, origins, size)
    assert patches.shape == (4, 2, *size)
    for patch, (z, y, x) in zip(patches, origins, strict=True):
        np.testing.assert_array_equal(patch, volume[:, z : z + 4, y : y + 6, x : x + 5])
    with pytest.raises(ValueError, match="origins"):
        patches_3d(volume, np.array([[6, 0, 0]]), size)
    with pytest.raises(ValueError, match="fit"):
        patches_3d(volume, np.array([[0, 0, 0]]), (10, 4, 4))


def distinct_patches(batch: int, shape=(2, 3, 5, 5)) -> np.ndarray:
    """Patches of all-distinct values: every flip or rotation of one gives a different array."""
    return np.random.default_rng(0).permutation(batch * int(np.prod(shape))).reshape(batch, *shape)


def allowed_transforms(rotate: bool) -> list:
    """Flips of Z, Y and X and, with rotations, a Y-X transpose on top: 16 (or 8) transforms of a
    ``(C, D, H, W)`` patch, none of which moves Z."""
    transforms = []
    for flip_z, flip_y, flip_x, swap in itertools.product([False, True], repeat=4):
        if swap and not rotate:
            continue

        def transform(patch, flips=(flip_z, flip_y, flip_x), swap=swap):
            axes = [1 + axis for axis, flip in enumerate(flips) if flip]
            flipped = np.flip(patch, axis=axes) if axes else patch
            return np.swapaxes(flipped, -1, -2) if swap else flipped

        transforms.append(transform)
    return transforms


@pytest.mark.parametrize("rotate", [True, False])
def test_augment_3d_uses_every_lateral_transform_and_z_flip_only(rotate):
    batch = distinct_patches(200)
    out = augment_3d(batch, np.random.default_rng(0), rotate=rotate)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(batch, axis=None))
    transforms = allowed_transforms(rotate)
    used = set()
    for source, result in zip(batch, out, strict=True):
        matches = [k for k, transform in enumerate(transforms) if np.array_equal(result, transform(source))]
        assert len(matches) == 1, "each patch is one flip/rotation of itself that keeps Z as Z"
        used.add(matches[0])
    assert used == set(range(len(transforms)))


def test_augment_3d_keeps_a_thin_z_axis_in_place():
    batch = distinct_patches(16, shape=(1, 2, 6, 6))
    out = augment_3d(batch, np.random.default_rng(3))
    assert out.shape == batch.shape
    for source, result in zip(batch, out, strict=True):
        # Each output slice is one input slice, transformed in its plane.
        planes = {tuple(np.sort(result[0, k], axis=None)) for k in range(2)}
        assert planes == {tuple(np.sort(source[0, k], axis=None)) for k in range(2)}


def test_augment_3d_needs_square_planes_to_rotate():
    batch = np.zeros((2, 1, 4, 6, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="square"):
        augment_3d(batch, np.random.default_rng(0))
    assert augment_3d(batch, np.random.default_rng(0), rotate=False).shape == batch.shape
    with pytest.raises(ValueError, match="B, C, D, H, W"):
        augment_3d(np.zeros((2, 1, 6, 6)), np.random.default_rng(0))


def test_augment_3d_is_reproducible_with_the_same_rng():
    batch = distinct_patches(8)
    first = augment_3d(batch, np.random.default_rng(5))
    np.testing.assert_array_equal(first, augment_3d(batch, np.random.default_rng(5)))
    assert not np.array_equal(first, batch)
