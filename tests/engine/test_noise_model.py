"""The Poisson-Gaussian noise model: measured from data and calibration frames, stored and read back."""

import numpy as np
import pytest
from scipy import ndimage

from denoise_studio.engine.errors import InputError
from denoise_studio.engine.noise_model import (
    NoiseModel,
    dark_level,
    fit_from_calibration,
    fit_from_prediction,
    measure_correlation,
)

GAIN, OFFSET, READ = 2.0, 100.0, 9.0


def clean_image(size=256, seed=0):
    """A smooth fluorescence-like signal from 20 to ~600 above the offset."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((size, size)), 6)
    field = (field - field.min()) / (field.max() - field.min())
    return OFFSET + 20 + 600 * field**2


def noisy_of(clean, seed=1, correlation_x=0.0):
    rng = np.random.default_rng(seed)
    photons = rng.poisson((clean - OFFSET) / GAIN)
    read = rng.normal(0, np.sqrt(READ), clean.shape)
    noise = GAIN * photons + OFFSET + read - clean
    if correlation_x:
        # Two-tap moving average along X: lag-1 correlation a/(1+a^2), variance kept.
        a = correlation_x
        noise = (noise + a * np.roll(noise, 1, axis=1)) / np.sqrt(1 + a * a)
    return clean + noise


def test_fit_from_the_clean_signal_recovers_gain_and_intercept():
    clean = clean_image()
    model = fit_from_prediction(noisy_of(clean), clean)
    assert model.gain == pytest.approx(GAIN, rel=0.1)
    # Offset and read noise are not separately identifiable from data; their line is.
    intercept = model.read_variance - model.gain * model.offset
    assert intercept == pytest.approx(READ - GAIN * OFFSET, abs=0.1 * GAIN * OFFSET)
    signal = np.array([150.0, 400.0, 700.0])
    assert model.variance(signal) == pytest.approx(GAIN * (signal - OFFSET) + READ, rel=0.1)
    assert model.white or max(abs(v) for v in model.lag1_correlation()) < 0.05


def test_correlated_noise_is_measured_and_its_variance_is_not_under_read():
    clean = clean_image()
    noisy = noisy_of(clean, correlation_x=0.6)  # lag-1 correlation 0.6 / 1.36 = 0.44 along X
    model = fit_from_prediction(noisy, clean)
    ry, rx = model.lag1_correlation()
    assert rx == pytest.approx(0.44, abs=0.05)
    assert abs(ry) < 0.05
    assert model.variance(np.array([400.0]))[0] == pytest.approx(GAIN * 300 + READ, rel=0.1)
    kernel = measure_correlation(noisy, clean)
    assert kernel.shape == (5, 5) and kernel[2, 2] == 1.0
    assert np.allclose(kernel, kernel[::-1, ::-1])  # symmetric: rho(d) = rho(-d)


def test_calibration_frames_and_dark_frames():
    clean = clean_image(128)
    frames = np.stack([noisy_of(clean, seed=s) for s in range(12)])
    model = fit_from_calibration(frames)
    assert model.source == "calibration"
    assert model.gain == pytest.approx(GAIN, rel=0.1)
    dark = np.stack([OFFSET + np.random.default_rng(s).normal(0, 3, (64, 64)) for s in range(5)])
    offset, read = dark_level(dark)
    assert offset == pytest.approx(OFFSET, abs=0.1) and read == pytest.approx(READ, rel=0.1)
    both = fit_from_calibration(frames, dark)
    assert both.offset == pytest.approx(offset) and both.read_variance == pytest.approx(read)
    with pytest.raises(InputError, match="not the gain"):
        fit_from_calibration(dark=dark)
    with pytest.raises(InputError, match="at least 2 frames"):
        fit_from_calibration(frames[:1])


def test_round_trip_and_invalid_values_are_refused():
    clean = clean_image(128)
    model = fit_from_prediction(noisy_of(clean, correlation_x=0.5), clean)
    again = NoiseModel.from_dict(model.to_dict())
    assert again == model
    assert again.correlation == model.correlation
    assert again.bins.signal == model.bins.signal
    with pytest.raises(ValueError, match="gain"):
        NoiseModel(float("nan"), 0.0, 1.0)
    with pytest.raises(ValueError, match="zero variance"):
        NoiseModel(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="odd square"):
        NoiseModel(1.0, 0.0, 1.0, correlation=((1.0, 0.2),))


def test_noise_free_or_tiny_images_are_refused():
    clean = clean_image(64)
    with pytest.raises(InputError, match="noise-free"):
        fit_from_prediction(clean, clean)
    with pytest.raises(InputError, match="at least 8 x 8"):
        fit_from_prediction(clean[:4, :4], clean[:4, :4])


def test_a_damaged_noise_model_file_is_named(tmp_path, tiny_config):
    import denoise_studio as ds
    from denoise_studio.engine.persistence import NOISE_MODEL_FILE, ModelFileError

    clean = clean_image(96)
    run = ds.train([noisy_of(clean).astype(np.float32)], tiny_config(), run_dir=tmp_path / "run")
    assert run.model.noise_model is not None
    damaged = '{"format": "denoise-studio-model", "noise_models": [{"gain": -1, "offset": 0, "read_variance": 1}]}'
    (tmp_path / "run" / NOISE_MODEL_FILE).write_text(damaged)
    with pytest.raises(ModelFileError, match="noise_model.json.*must not be negative"):
        ds.load_model(tmp_path / "run")
    (tmp_path / "run" / NOISE_MODEL_FILE).unlink()
    assert ds.load_model(tmp_path / "run").noise_model is None


def test_noise_is_measured_for_2p5d_and_wide_images_and_a_failure_keeps_the_model(
    tmp_path, tiny_config, monkeypatch
):
    import denoise_studio as ds
    from denoise_studio.engine import run as run_module

    clean = clean_image(64)
    stack = np.stack([noisy_of(clean, seed=s) for s in range(24)]).astype(np.float32)
    result = ds.train([stack], tiny_config(mode="2.5d"))
    assert result.model.noise_model is not None  # 2.5D needs 3 planes around the measured one

    measured = {}
    original = run_module.fit_from_prediction

    def spy(noisy, denoised):
        measured["shape"] = noisy.shape
        return original(noisy, denoised)

    monkeypatch.setattr(run_module, "NOISE_MEASUREMENT_PIXELS", 64 * 256)
    monkeypatch.setattr(run_module, "fit_from_prediction", spy)
    wide = noisy_of(np.tile(clean_image(64), (1, 8))).astype(np.float32)  # 64 x 512
    ds.train([wide], tiny_config())
    assert int(np.prod(measured["shape"])) <= 64 * 256  # the budget is pixels, not height squared

    def broken(*_args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(run_module, "fit_from_prediction", broken)
    kept = ds.train([noisy_of(clean).astype(np.float32)], tiny_config(), run_dir=tmp_path / "run")
    assert kept.model is not None and kept.model.noise_models == []
    assert (tmp_path / "run" / "model.pth").exists() and not (tmp_path / "run" / "noise_model.json").exists()
