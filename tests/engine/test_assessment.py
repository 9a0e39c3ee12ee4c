"""Assessment without ground truth: the MSE estimate, the residual verdict, consistency and likelihood."""

import math

import numpy as np
import pytest
from scipy import ndimage

from denoise_studio.engine.assessment import assess, correlated_probe
from denoise_studio.engine.errors import InputError
from denoise_studio.engine.noise_model import NoiseModel, fit_from_prediction
from tests.engine.test_noise_model import clean_image, noisy_of


def true_psnr(result, clean, data_range):
    return 10 * math.log10(data_range**2 / np.mean((result - clean) ** 2))


def gaussian(sigma):
    return lambda image: ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), sigma)


@pytest.mark.parametrize("correlation_x", [0.0, 0.6])
@pytest.mark.parametrize("sigma", [0.8, 1.5])
def test_mse_estimate_of_a_filter_is_within_half_a_db(correlation_x, sigma):
    clean = clean_image()
    noisy = noisy_of(clean, correlation_x=correlation_x)
    noise_model = fit_from_prediction(noisy, clean)  # as from a good model's result
    denoiser = gaussian(sigma)
    result = denoiser(noisy)
    data_range = float(np.ptp(clean))
    found = assess(noisy, result, noise_model, denoiser=denoiser, data_range=data_range)
    assert found.psnr_estimate == pytest.approx(true_psnr(result, clean, data_range), abs=0.5)
    assert found.divergence > 0
    # A noise model from data: the plausible range is wider below (its variance tends to read high).
    low, high = found.psnr_range
    assert low < found.psnr_estimate < high
    assert found.psnr_estimate - low > high - found.psnr_estimate


def test_without_the_divergence_a_filter_looks_far_too_good():
    """The Stein term matters: leaving it out (as if J-invariant) is optimistic by several dB."""
    clean = clean_image()
    noisy = noisy_of(clean)
    noise_model = fit_from_prediction(noisy, clean)
    result = gaussian(0.8)(noisy)
    data_range = float(np.ptp(clean))
    naive = assess(noisy, result, noise_model, j_invariant=True, data_range=data_range)
    assert naive.psnr_estimate > true_psnr(result, clean, data_range) + 3


def test_second_acquisition_estimate_needs_no_noise_model_accuracy():
    # A difference of two large terms: its scatter is ~sqrt(2/N) of the noise variance, hence 512 px.
    clean = clean_image(512)
    noisy, second = noisy_of(clean, seed=1), noisy_of(clean, seed=2)
    result = gaussian(1.2)(noisy)
    data_range = float(np.ptp(clean))
    wrong_model = NoiseModel(gain=10.0, offset=0.0, read_variance=1.0, source="given")
    found = assess(noisy, result, wrong_model, second=second, data_range=data_range)
    assert found.psnr_estimate == pytest.approx(true_psnr(result, clean, data_range), abs=0.5)
    low, high = found.psnr_range
    assert low < found.psnr_estimate < high and high - low < 2.0
    assert "standard errors" in found.range_text()
    assert "second acquisition" in found.mse_method


def test_verdicts_tell_noise_from_removed_signal_and_kept_correlated_noise():
    clean = clean_image()
    noisy = noisy_of(clean)
    model = fit_from_prediction(noisy, clean)
    assert assess(noisy, clean, model).whiteness.verdict == "noise-like"
    # Signal removed: a sharp square that a heavy blur smears into its surroundings.
    sharp = clean.copy()
    sharp[96:160, 96:160] += 400
    noisy_sharp = noisy_of(sharp)
    blurred = ndimage.gaussian_filter(noisy_sharp, 4)
    assert assess(noisy_sharp, blurred, fit_from_prediction(noisy_sharp, sharp)).whiteness.verdict == "signal removed"
    # Correlated noise: a result that keeps the correlated part of it leaves a residual whiter than the noise.
    correlated = noisy_of(clean, correlation_x=0.8)
    noise_model = fit_from_prediction(correlated, clean)
    noise = correlated - clean
    kept = clean + (noise + np.roll(noise, 1, axis=1) + np.roll(noise, -1, axis=1)) / 3
    verdict = assess(correlated, kept, noise_model).whiteness
    assert verdict.verdict == "structured noise left", verdict.explanation
    assert assess(correlated, clean, noise_model).whiteness.verdict == "noise-like"


def test_consistency_and_likelihood_map_show_where_the_result_disagrees():
    clean = clean_image()
    noisy = noisy_of(clean)
    model = fit_from_prediction(noisy, clean)
    good = assess(noisy, clean, model)
    assert good.consistency_overall == pytest.approx(1.0, abs=0.1)
    assert all(0.7 < ratio < 1.3 for _s, ratio, _n in good.consistency)
    assert abs(float(good.likelihood_map.mean())) < 0.1
    missing = clean.copy()
    missing[40:80, 40:80] -= 150  # the result lacks a structure the data show
    bad = assess(noisy, missing, model)
    inside = float(bad.likelihood_map[50:70, 50:70].mean())
    outside = float(bad.likelihood_map[150:200, 150:200].mean())
    assert inside < -1.0 < outside
    assert bad.residual.shape == noisy.shape and bad.likelihood_map.dtype == np.float32


def test_assessment_json_holds_the_estimate():
    clean = clean_image(128)
    noisy = noisy_of(clean)
    found = assess(noisy, gaussian(1.0)(noisy), denoiser=gaussian(1.0))
    record = found.to_dict()
    assert record["mse_estimate"] == found.mse_estimate > 0
    assert len(record["psnr_range"]) == 2
    assert math.isfinite(record["psnr_estimate"])
    assert record["whiteness"]["verdict"] in ("noise-like", "signal removed", "structured noise left",
                                              "structure in the residual")
    assert any("measured from this pair" in note for note in record["notes"])


def test_correlated_probe_has_the_kernel_correlation():
    kernel = np.zeros((3, 3))
    kernel[1] = [0.4, 1.0, 0.4]
    probe = correlated_probe((512, 512), kernel, np.random.default_rng(0))
    lag1 = np.mean(probe[:, 1:] * probe[:, :-1]) / np.mean(probe * probe)
    assert lag1 == pytest.approx(0.4, abs=0.02)
    assert abs(np.mean(probe[1:] * probe[:-1])) < 0.02


@pytest.mark.parametrize(
    "noisy, denoised, message",
    [
        (np.zeros((32, 32)), np.zeros((32, 32)), "constant"),
        (np.ones((4, 4)), np.ones((4, 4)), "too small"),
        (np.random.rand(32, 32), np.random.rand(16, 32), "differ in shape"),
        (np.full((32, 32), np.nan), np.zeros((32, 32)), "NaN"),
        (np.random.rand(2, 2, 32, 32), np.random.rand(2, 2, 32, 32), "one channel"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(noisy, denoised, message):
    with pytest.raises(InputError, match=message):
        assess(noisy, denoised)
