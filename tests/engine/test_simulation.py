"""Simulation-based training (SBD): the simulated noise, the noise model from a noisy image alone, the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import denoise_studio as ds
from denoise_studio.engine.config import SimulationConfig
from denoise_studio.engine.errors import ConfigError, InputError
from denoise_studio.engine.metrics import psnr
from denoise_studio.engine.noise_model import (
    NoiseModel,
    binned_means,
    fit_from_noisy,
    fit_from_prediction,
    fit_poisson_gaussian,
    measure_row_variance,
)
from denoise_studio.engine.simulation import add_noise, on_target_scale, simulate
from tests.conftest import SHARED_DATA, TINY


def blobs(seed: int, size: int = 96) -> np.ndarray:
    """A clean fluorescence-like scene: Gaussian spots of several sizes on a dim background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), 10.0)
    for _ in range(size // 3):
        cy, cx, s = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, 6)
        image += rng.uniform(50, 150) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return image.astype(np.float32)


SIMULATION = SimulationConfig(gain=4.0, offset=100.0, read_variance=25.0)


def test_the_simulated_noise_follows_the_poisson_gaussian_model():
    raw = torch.full((200, 200), 500.0)
    noisy = add_noise(raw, SIMULATION, torch.Generator().manual_seed(0))
    assert abs(float(noisy.mean()) - 500.0) < 1.0
    assert float(noisy.var()) == pytest.approx(4.0 * 400.0 + 25.0, rel=0.05)
    # Below the dark level only the read noise remains, around the clean value (no bias to the dark level).
    dark = add_noise(torch.full((200, 200), 80.0), SIMULATION, torch.Generator().manual_seed(1))
    assert float(dark.var()) == pytest.approx(25.0, rel=0.08)
    assert abs(float(dark.mean()) - 80.0) < 0.2


def test_scan_line_noise_is_one_offset_per_row():
    config = SimulationConfig(gain=0.0, read_variance=1.0, row_sigma=3.0)
    noisy = simulate(np.zeros((300, 400), np.float32), config, seed=0)
    row_means = noisy.mean(axis=1)
    assert float(row_means.std()) == pytest.approx(3.0, rel=0.15)
    within = noisy - row_means[:, None]
    assert float(within.var()) == pytest.approx(1.0, rel=0.05)


def test_clean_images_are_put_on_the_targets_scale():
    clean = np.stack([[blobs(1)]])  # (C, Z, Y, X)
    mapped = SimulationConfig(gain=1.0, offset=100.0, read_variance=1.0, signal_low=110.0, signal_high=300.0)
    scaled = on_target_scale(clean, mapped)
    assert np.percentile(scaled, [2, 98]) == pytest.approx([110.0, 300.0], rel=1e-4)
    assert on_target_scale(clean, SIMULATION) is not None and np.allclose(on_target_scale(clean, SIMULATION), clean)
    with pytest.raises(InputError, match="no intensity range"):
        on_target_scale(np.zeros((1, 1, 8, 8)), mapped)
    with pytest.raises(ValueError, match="set together"):
        SimulationConfig(gain=1.0, read_variance=1.0, signal_low=3.0)


def test_a_noise_model_from_the_noisy_image_alone():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    clean = 200 + 150 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    noisy = 2.0 * rng.poisson(clean / 2.0) + rng.normal(0, 3, clean.shape)
    model = fit_from_noisy(noisy)
    assert model.gain == pytest.approx(2.0, rel=0.1)
    # Offset and read noise are not separately identifiable from data alone; the curve is.
    for level in (100.0, 200.0, 330.0):
        assert float(model.fitted_variance(level)) == pytest.approx(2.0 * level + 9.0, rel=0.1)
    with pytest.raises(InputError, match="at least"):
        fit_from_noisy(np.ones((8, 8)))
    with pytest.raises(InputError, match="NaN"):
        fit_from_noisy(np.full((64, 64), np.nan))


def test_scan_line_noise_is_measured_at_full_strength():
    # White noise of variance 4 plus row offsets of variance 9, measured as every run measures it.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:256, :256]
    clean = 500 + 100 * np.sin(xx / 11.0) * np.cos(yy / 17.0)
    noisy = clean + rng.normal(0, 2.0, clean.shape) + rng.normal(0, 3.0, (256, 1))
    for measured in (fit_from_prediction(noisy, clean), fit_from_noisy(noisy)):
        assert measured.row_variance == pytest.approx(9.0, rel=0.2)
        assert "scan lines" in measured.describe()
        assert NoiseModel.from_dict(measured.to_dict()).row_variance == measured.row_variance
        settings = ds.simulation_settings(measured)
        assert settings["simulation.row_sigma"] == pytest.approx(3.0, rel=0.1)
        simulated = simulate(clean.astype(np.float32), SimulationConfig(**{
            key.split(".")[1]: value for key, value in settings.items() if key.split(".")[1] != "noise_source"
        }))  # fmt: skip
        assert float((simulated - clean).mean(axis=1).var()) == pytest.approx(9.0, rel=0.3)  # the stripes
    assert measure_row_variance(clean + rng.normal(0, 2.0, clean.shape)) < 0.1  # next to none without scan lines
    assert measure_row_variance(np.full((64, 64), 3.0) + rng.normal(0, 2.0, (64, 64))) == 0.0


def test_simulation_settings_from_an_image_a_run_and_a_noise_model(tmp_path):
    rng = np.random.default_rng(2)
    target = 100 + 4.0 * rng.poisson(blobs(9, 128) / 4.0) + rng.normal(0, 5, (128, 128))
    settings = ds.simulation_settings(target)
    assert settings["simulation.gain"] == pytest.approx(4.0, rel=0.2)
    low, high = settings["simulation.signal_low"], settings["simulation.signal_high"]
    assert 95 < low < 120 and 150 < high < 700, (low, high)
    assert settings["simulation.noise_source"] == "a noisy image"
    given = ds.simulation_settings(NoiseModel(2.0, 0.0, 1.0), signal=(5.0, 50.0))
    assert given["simulation.gain"] == 2.0 and given["simulation.signal_high"] == 50.0
    run = ds.train(target, ds.make_config("n2v", "2d", "fast", TINY), run_dir=tmp_path / "n2v")
    from_run = ds.simulation_settings(tmp_path / "n2v")
    assert from_run["simulation.noise_source"] == str(tmp_path / "n2v")
    assert from_run["simulation.gain"] == run.model.noise_model.gain
    care = ds.train(target, ds.make_config("care", "2d", "fast", TINY), targets=blobs(9, 128)).model
    with pytest.raises(InputError, match="no noise model"):
        ds.simulation_settings(care)
    # An SBD model gives the noise it simulated, scan lines and signal range included.
    sbd = ds.make_config("sbd", "2d", "fast", {**TINY, "gain": 2.0, "read_variance": 1.0, "row_sigma": 1.5,
                                               "signal_low": 5.0, "signal_high": 50.0})  # fmt: skip
    again = ds.simulation_settings(ds.train(blobs(1), sbd).model)
    assert again["simulation.row_sigma"] == 1.5 and again["simulation.signal_high"] == 50.0


def test_sbd_trains_on_clean_images_and_denoises_the_target(tmp_path):
    rng = np.random.default_rng(0)
    truth = blobs(9, 128)
    target = (100 + 4.0 * rng.poisson(truth / 4.0) + rng.normal(0, 5, truth.shape)).astype(np.float32)
    settings = ds.simulation_settings(target)
    config = ds.make_config(
        "sbd", "2d", "fast", settings, **{**TINY, "epochs": 30, "patches_per_image": 32, "depth": 2,
                                          "base_features": 16, "learning_rate": 2e-3},
    )  # fmt: skip
    run = ds.train([blobs(1), blobs(2), blobs(3)], config, run_dir=tmp_path / "sbd")
    model = run.model
    assert model.method == "sbd" and model.target_normalization is None
    assert model.noise_model.gain == pytest.approx(settings["simulation.gain"])
    denoised = model.predict(target)
    # Raw intensities in, raw intensities out: the target's clean truth is its signal on its dark level.
    before = psnr(target, truth + 100)
    after = psnr(denoised, truth + 100)
    assert after > before + 3.0, (before, after)
    loaded = ds.load_model(tmp_path / "sbd")
    assert loaded.config.simulation == config.simulation
    assert np.allclose(loaded.predict(target), denoised, atol=1e-2)


def test_sbd_refusals(tmp_path):
    clean = blobs(1)
    with pytest.raises(ConfigError, match="simulation.gain"):
        ds.train(clean, ds.make_config("sbd", "2d", "fast", TINY))
    config = ds.make_config("sbd", "2d", "fast", {**TINY, "gain": 1.0, "read_variance": 1.0})
    with pytest.raises(InputError, match="takes no target"):
        ds.train(clean, config, targets=clean)
    with pytest.raises(InputError, match="one channel"):
        ds.train(np.stack([clean, clean]), config, axes="CYX")
    with pytest.raises(ConfigError, match="masking"):
        ds.make_config("sbd", "2d", "fast", {"mask_percent": 5})


def test_the_field_of_view_sets_the_depth_and_the_patch():
    config = ds.make_config("sbd", "2d", "fast", {"gain": 1.0, "read_variance": 1.0})
    wide = ds.with_field_of_view(config, 150)
    assert wide.model.depth == 4 and wide.data.patch_size >= 64
    assert ds.with_field_of_view(config, 20).model.depth == 1
    odd = ds.with_field_of_view(config.updated({"patch_size": 72}), 150)  # rounded up to a multiple of 16
    assert odd.data.patch_size == 80
    deep = ds.with_field_of_view(ds.make_config("n2v", "3d", "fast", {"patch_size_z": 8}), 150)
    assert deep.data.patch_size_z % 16 == 0
    with pytest.raises(ConfigError, match="field of view"):
        ds.with_field_of_view(config, 1)
    with pytest.raises(ConfigError, match="at most"):
        ds.with_field_of_view(config, 5000)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["fish", "BPAE_B", "BPAE_G", "mice"])
def test_the_noise_model_from_a_noisy_fmd_image_alone_is_close_to_the_measured_one(name):
    folder = SHARED_DATA / "paired" / "fmd_confocal"
    if not (folder / f"{name}_noisy.tif").exists():
        pytest.skip(f"real data not available: {folder} (see ../shared/data/SOURCES.md)")
    from denoise_studio.engine.io import load_image

    noisy = np.squeeze(load_image(folder / f"{name}_noisy.tif")).astype(np.float64)
    reference = np.squeeze(load_image(folder / f"{name}_gt_avg50.tif")).astype(np.float64)
    measured = fit_poisson_gaussian(binned_means(reference, (noisy - reference) ** 2, 24))
    fitted = fit_from_noisy(noisy)
    level = reference.mean()
    assert float(fitted.fitted_variance(level)) == pytest.approx(float(measured.fitted_variance(level)), rel=0.2)
