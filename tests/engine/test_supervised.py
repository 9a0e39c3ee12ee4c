"""Noise2Noise, CARE, autoencoder, filter-made targets, DecoNoising, alignment, filters, comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from denoise_studio.engine.alignment import align_target, estimate_shift
from denoise_studio.engine.compare import compare_results, format_table
from denoise_studio.engine.config import ConfigError
from denoise_studio.engine.filters import FILTERS, apply_filter, apply_filter_spec, parse_filter_spec
from denoise_studio.engine.io import InputError
from denoise_studio.engine.metrics import psnr
from denoise_studio.engine.persistence import load_model, save_model
from denoise_studio.engine.prediction import Predictor
from denoise_studio.engine.training import train
from denoise_studio.engine.unet import DeconvUNet


@pytest.fixture(scope="module")
def pair():
    """A smooth clean stack (scaled 0-100) and two independent noisy realisations of it."""
    rng = np.random.default_rng(0)
    clean = ndimage.gaussian_filter(rng.random((2, 64, 64)), (0, 3, 3))
    clean = (clean - clean.min()) / (clean.max() - clean.min()) * 100
    return clean, clean + rng.normal(0, 10, clean.shape), clean + rng.normal(0, 10, clean.shape)


SHORT = {"epochs": 6, "patches_per_image": 32, "batch_size": 8, "learning_rate": 3e-3}


@pytest.mark.parametrize("method", ["n2n", "care", "autoencoder"])
def test_training_lowers_validation_loss_and_keeps_shapes(tiny_config, pair, method):
    clean, first, second = pair
    target = {"n2n": second, "care": clean, "autoencoder": None}[method]
    result = train(tiny_config(method, **SHORT), first, targets=target)
    losses = [row["val_loss"] for row in result.history]
    assert min(losses[1:]) < losses[0]
    out = Predictor(result.model, result.normalization, "2d", output_normalization=result.target_normalization)
    assert out.predict(first).shape == first.shape


def test_care_predicts_in_the_target_scale(tiny_config, pair):
    """A clean target 10x brighter than the input: the output must be in the target's scale."""
    clean, first, _ = pair
    result = train(tiny_config("care", **{**SHORT, "epochs": 10}), first, targets=clean * 10 + 500)
    predictor = Predictor(result.model, result.normalization, "2d", output_normalization=result.target_normalization)
    out = predictor.predict(first)
    assert abs(out.mean() - (clean * 10 + 500).mean()) < 0.2 * (clean * 10).std()


def test_autoencoder_has_no_skips(tiny_config):
    config = tiny_config("autoencoder")
    assert config.model.skip_connections is False


def test_filter_made_target(tiny_config, pair):
    _, first, _ = pair
    result = train(tiny_config("care", **SHORT, target_from="median:3"), first)
    assert result.target_normalization is not None and result.epochs_run == SHORT["epochs"]


@pytest.mark.parametrize(
    ("method", "target", "message"),
    [
        ("care", None, "needs a target image"),
        ("n2n", None, "second noisy acquisition"),
        ("n2v", "given", "takes no target"),
    ],
)
def test_target_rules(tiny_config, pair, method, target, message):
    clean, first, _ = pair
    with pytest.raises(InputError, match=message):
        train(tiny_config(method), first, targets=clean if target else None)


def test_shifted_target_is_refused_or_registered(tiny_config, pair):
    clean, first, _ = pair
    shifted = ndimage.shift(clean, (0, 3, -2), mode="reflect")
    with pytest.raises(InputError, match=r"shifted by \(-?\+?3\.\d, -2\.\d\)|shifted by"):
        train(tiny_config("care"), first, targets=shifted)
    registered = align_target(first, shifted, max_shift=1.0, register=True)
    assert np.hypot(*estimate_shift(first, registered)) < 0.7
    dy, dx = estimate_shift(first, shifted)
    assert abs(dy + 3) < 0.6 and abs(dx - 2) < 0.6


def test_target_shape_mismatch(tiny_config, pair):
    clean, first, _ = pair
    with pytest.raises(InputError, match="differs"):
        train(tiny_config("care"), first, targets=clean[:, :32])


def test_deconoising_outputs(tiny_config, pair, tmp_path):
    """The deconvolved output is non-negative (positivity penalty) and re-blurs to the denoised one."""
    clean, first, _ = pair
    config = tiny_config("n2v", **{**SHORT, "epochs": 10}, psf_sigma=1.0, positivity=10.0)
    result = train(config, first)
    assert isinstance(result.model, DeconvUNet)
    denoised = Predictor(result.model, result.normalization, "2d", precision="fp32").predict(first)
    phantom = Predictor(result.model, result.normalization, "2d", precision="fp32", output="deconvolved").predict(first)
    assert phantom.min() > -0.05 * (phantom.max() - phantom.min())
    reblurred = np.stack([ndimage.gaussian_filter(p, 1.0, mode="reflect", truncate=3.0) for p in phantom])
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(reblurred - denoised)[inner].max() < 1e-3 * np.abs(denoised).max()
    # Round trip through the model files keeps the PSF head.
    save_model(tmp_path, config, result.normalization, result.model.state_dict())
    loaded = load_model(tmp_path)
    assert isinstance(loaded.network, DeconvUNet) and loaded.network.psf_sigma == 1.0


def test_deconvolved_output_needs_a_deconv_model(tiny_config, make_model):
    model, normalization = make_model(tiny_config())
    with pytest.raises(ValueError, match="DecoNoising"):
        Predictor(model, normalization, "2d", output="deconvolved")


def test_deconoising_only_for_blind_spot_methods(tiny_config):
    with pytest.raises(ConfigError, match="psf_sigma"):
        tiny_config("care", psf_sigma=1.5)


@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_smooths_noise(pair, name):
    clean, first, _ = pair
    filtered = apply_filter(first, name, 3 if name != "gaussian" else 1.5)
    assert filtered.shape == first.shape
    assert psnr(filtered, clean) > psnr(first, clean) + 3


def test_filter_specs():
    assert parse_filter_spec("gaussian:1.5") == ("gaussian", 1.5)
    assert parse_filter_spec("nlm") == ("nlm", None)
    with pytest.raises(ValueError, match="unknown filter"):
        parse_filter_spec("wiener:3")
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    np.testing.assert_allclose(apply_filter_spec(image, "box:3"), ndimage.uniform_filter(image, 3, mode="reflect"))


def test_compare_with_and_without_reference(pair):
    clean, first, _ = pair
    smooth = apply_filter(first, "gaussian", 1.5)
    rows = compare_results(first, {"gaussian": smooth}, clean)
    assert [r["name"] for r in rows] == ["noisy input", "gaussian"]
    assert rows[1]["psnr"] > rows[0]["psnr"] and rows[1]["ssim"] > rows[0]["ssim"] and rows[1]["snr"] > rows[0]["snr"]
    blind = compare_results(first, {"gaussian": smooth})
    assert "psnr" not in blind[0]
    # Noise left in the result drops; the residual holds about the input's noise (sigma 10).
    assert blind[1]["noise_left"] < 0.5 * blind[0]["noise_left"]
    assert 7 < blind[1]["residual_std"] < 13
    assert "PSNR" in format_table(rows) and "PSNR" not in format_table(blind)
    with pytest.raises(ValueError, match="shape"):
        compare_results(first, {"cropped": smooth[:, :10]})


def test_positivity_penalty_counts_only_negative_phantom_values(tiny_config):
    from denoise_studio.engine.data import Normalization
    from denoise_studio.engine.methods import make_method

    method = make_method(tiny_config("n2v", psf_sigma=1.0, positivity=2.0))
    method.set_normalization(Normalization(offset=10.0, scale=5.0))  # zero intensity = -2 normalised
    model = type("M", (), {"phantom": torch.tensor([[-3.0, -2.0, 0.0, 1.0]])})()
    assert float(method.penalty(model)) == pytest.approx(2.0 * (1.0 + 0 + 0 + 0) / 4)
