"""True 3D mode through the run API: 3D U-Net on 3D patches, 3D blind spots, exact 3D tiling, model files."""

from __future__ import annotations

import numpy as np
import pytest

import denoise_studio as ds
from denoise_studio.engine.config import DataConfig
from denoise_studio.engine.data import PatchSampler
from denoise_studio.engine.errors import ConfigError
from denoise_studio.engine.io import InputError

TINY_3D = {"patch_size_z": 8, "patches_per_image": 8, "batch_size": 2, "base_features": 4}


@pytest.fixture
def tiny(tiny_settings):
    def factory(method: str = "n2v", **extra):
        return ds.make_config(method, "3d", "fast", {**tiny_settings, **TINY_3D, **extra})

    return factory


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    clean = np.zeros((20, 64, 64), np.float32)
    clean[5:15, 20:44, 16:40] = 1.0
    return clean, (clean + 0.3 * rng.standard_normal(clean.shape)).astype(np.float32)


def test_a_3d_run_trains_a_3d_unet_predicts_and_round_trips(volume, tiny, tmp_path):
    _clean, noisy = volume
    run = ds.train(noisy, tiny(), run_dir=tmp_path / "run")
    network = run.model.network
    assert run.model.mode == "3d" and network.dims == 3 and network.encoders[0][0].weight.dim() == 5
    denoised = run.model.predict(noisy)
    assert denoised.shape == noisy.shape and np.isfinite(denoised).all()
    loaded = ds.load_model(tmp_path / "run")
    assert loaded.network.dims == 3
    np.testing.assert_allclose(loaded.predict(noisy), denoised, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool_z", [True, False])
def test_tiled_3d_prediction_equals_untiled(volume, tiny, pool_z):
    _clean, noisy = volume
    model = ds.train(noisy[:12], tiny(pool_z=pool_z, depth=2, patch_size=32), axes="ZYX").model
    whole = model.predictor(tile_size=256, batch_size=1)
    whole.tile_size_z = 64
    tiled = model.predictor(tile_size=16, batch_size=3)
    tiled.tile_size_z = 4
    odd = noisy[:11, :45, :37]  # sides off the pooling grid
    np.testing.assert_allclose(tiled.predict(odd), whole.predict(odd), rtol=1e-5, atol=1e-5)


def test_3d_patches_are_blocks_outside_the_held_out_columns(volume):
    _clean, noisy = volume
    config = DataConfig(patch_size=16, patch_size_z=8, patches_per_image=5, augment=False)
    sampler = PatchSampler([noisy], "3d", config, np.random.default_rng(0))
    batch = next(sampler.epoch(np.random.default_rng(1), batch_size=4))
    assert batch.shape == (4, 1, 8, 16, 16)
    held_out = np.zeros(noisy.shape[1:], bool)
    for y, x in sampler.validation_blocks[0]:
        held_out[y : y + 16, x : x + 16] = True
    # Every training block is a real block of the volume, and none touches a held-out column.
    marked = noisy.copy()
    marked[:, held_out] = 1e6
    sampler = PatchSampler([marked], "3d", config, np.random.default_rng(0))
    for batch in sampler.epoch(np.random.default_rng(2), batch_size=8):
        assert batch.max() < 1e6
    validation = sampler.validation_patches(np.random.default_rng(0))
    assert validation.shape[1:] == (1, 8, 16, 16) and (validation == 1e6).all()


def test_joint_channels_in_3d(volume, tiny):
    _clean, noisy = volume
    two = np.stack([noisy, noisy * 2 + 5])  # CZYX
    model = ds.train(two, tiny(channels="joint"), axes="CZYX").model
    assert model.network.encoders[0][0].in_channels == 2 and model.network.head.out_channels == 2
    assert model.predict(two, axes="CZYX").shape == two.shape


def test_3d_denoises_a_volume(volume, tiny):
    clean, noisy = volume
    model = ds.train(noisy, tiny(epochs=20, depth=2, base_features=8, patch_size=32, learning_rate=2e-3)).model
    denoised = model.predict(noisy)
    assert np.mean((denoised - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


def test_3d_refusals_name_the_field(volume, tiny):
    _clean, noisy = volume
    with pytest.raises(ConfigError, match="mode: autoStructN2V works in 2d and 2.5d only"):
        ds.make_config("autostructn2v", "3d")
    with pytest.raises(ConfigError, match=r"data.patch_size_z \(6\) must be a multiple of 4"):
        ds.make_config("n2v", "3d", patch_size_z=6, depth=2)
    assert ds.make_config("n2v", "3d", patch_size_z=6, depth=2, pool_z=False).data.patch_size_z == 6
    with pytest.raises(ConfigError, match="struct masks are 2D/2.5D only"):
        ds.make_config("n2v", "3d", struct_mask=[[[False, True, False], [False, True, False], [False, True, False]]])
    with pytest.raises(InputError, match=r"fewer than the 3D patch depth \(data.patch_size_z 16\)"):
        ds.train(noisy[:10], tiny(patch_size_z=16))
    with pytest.raises(InputError, match="insufficient stack depth for 3D: 1 slice"):
        ds.train(noisy[0], tiny())


@pytest.mark.parametrize("method", ["n2v2", "care", "n2n", "autoencoder"])
def test_every_single_network_method_trains_in_3d(volume, tiny, method):
    clean, noisy = volume
    second = (clean + 0.3 * np.random.default_rng(1).standard_normal(clean.shape)).astype(np.float32)
    targets = {"care": clean, "n2n": second}.get(method)
    model = ds.train(noisy, tiny(method, epochs=1, patches_per_image=4), targets=targets).model
    assert model.network.dims == 3 and model.predict(noisy).shape == noisy.shape


def test_tta_in_3d_turns_only_the_lateral_plane_and_tiles_exactly(volume, tiny):
    from denoise_studio.engine.augment import dihedral
    from tests.engine.test_prediction import undo_dihedral

    _clean, noisy = volume
    model = ds.train(noisy[:12], tiny(depth=2, patch_size=32), axes="ZYX").model
    assert model.test_time_transforms == tuple(range(8))  # Y-X flips and rotations; Z stays Z
    # Sides on the pooling grid: padding up to it sits bottom-right, which a flip would move.
    odd = noisy[:12, :44, :36]
    whole = model.predictor(tile_size=256, batch_size=1, tta=True)
    plain = model.predictor(tile_size=256, batch_size=1)
    tiled = model.predictor(tile_size=16, batch_size=3, tta=True)
    for predictor, depth in ((whole, 64), (plain, 64), (tiled, 4)):
        # fp32: bf16 rounds a transposed volume differently, far above these tolerances.
        predictor.tile_size_z, predictor.precision = depth, "fp32"
    expected = np.mean([undo_dihedral(plain.predict(np.ascontiguousarray(dihedral(odd, c))), c) for c in range(8)], 0)
    np.testing.assert_allclose(whole.predict(odd), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tiled.predict(odd), expected, rtol=1e-5, atol=1e-5)
