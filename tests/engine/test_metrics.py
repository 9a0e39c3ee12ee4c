"""Quality numbers: PSNR, SSIM (against scikit-image), affine PSNR and the noise estimate."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from denoise_studio.engine.metrics import affine_psnr, compare, noise_sigma, psnr, ssim


def smooth(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 3) * 10


def test_psnr_known_values():
    reference = np.linspace(0.0, 1.0, 100).reshape(10, 10)  # data range 1
    assert psnr(reference + 0.1, reference) == pytest.approx(20.0)
    assert psnr(reference + 0.01, reference) == pytest.approx(40.0)
    assert psnr(reference * 10 + 1, reference * 10) == pytest.approx(20.0)  # range 10, error 1
    assert psnr(reference + 0.1, reference, data_range=2.0) == pytest.approx(20 + 20 * np.log10(2))
    assert psnr(reference, reference) == float("inf")


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))


@pytest.mark.parametrize("noise_level", [0.05, 0.5, 2.0])
@pytest.mark.parametrize("data_range", [None, 20.0])
def test_ssim_matches_scikit_image(noise_level, data_range):
    reference = smooth((64, 80))
    prediction = reference + np.random.default_rng(1).normal(0, noise_level, reference.shape)
    expected = structural_similarity(
        prediction,
        reference,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=True,
        data_range=np.ptp(reference) if data_range is None else data_range,
    )
    assert ssim(prediction, reference, data_range=data_range) == pytest.approx(expected, abs=1e-3)


def test_ssim_of_a_stack_is_the_mean_over_planes():
    reference = smooth((3, 48, 48))
    prediction = reference + np.random.default_rng(2).normal(0, [[[0.1]], [[0.5]], [[1.0]]], reference.shape)
    per_plane = [ssim(p, r, data_range=np.ptp(reference)) for p, r in zip(prediction, reference, strict=True)]
    assert ssim(prediction, reference) == pytest.approx(np.mean(per_plane))
    assert ssim(reference, reference) == pytest.approx(1.0)


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.0), (3.0, -7.0), (0.01, 100.0), (-2.0, 5.0)])
def test_affine_psnr_ignores_gain_and_offset(a, b):
    reference = smooth((40, 40))
    prediction = reference + np.random.default_rng(3).normal(0, 0.3, reference.shape)
    assert affine_psnr(a * prediction + b, reference) == pytest.approx(affine_psnr(prediction, reference), abs=1e-6)
    assert affine_psnr(prediction, reference) >= psnr(prediction, reference)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0, 5.0])
def test_noise_sigma_estimates_added_gaussian_noise(sigma):
    y, x = np.mgrid[:256, :256]
    clean = 3.0 * y + 0.5 * x + 0.02 * (x - 128.0) ** 2 / 10  # smooth: almost no fine-scale detail
    noisy = clean + np.random.default_rng(4).normal(0, sigma, clean.shape)
    assert noise_sigma(noisy) == pytest.approx(sigma, rel=0.1)
    stack = np.stack([clean + np.random.default_rng(s).normal(0, sigma, clean.shape) for s in range(3)])
    assert noise_sigma(stack) == pytest.approx(sigma, rel=0.1)


def test_compare_reports_all_numbers():
    reference = smooth((32, 32))
    result = compare(reference + 0.1, reference)
    assert set(result) == {"psnr", "ssim", "psnr_affine"}
    assert result["psnr_affine"] > 100  # a pure offset is removed exactly by the affine fit
