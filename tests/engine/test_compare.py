"""The reference-free verdict of compare_results: what a result removed, not only how much."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from denoise_studio.engine.compare import compare_results, format_table, judge_removal, lag1_autocorrelation

SIDE = 128


def smooth_pattern() -> np.ndarray:
    y, x = np.mgrid[:SIDE, :SIDE]
    return 100 + 40 * np.sin(x / 7.0) * np.cos(y / 11.0)


def sharp_pattern() -> np.ndarray:
    """A checkerboard of 8-pixel squares: all edges, so any blur removes structure."""
    y, x = np.mgrid[:SIDE, :SIDE]
    return 100 + 60 * ((x // 8 + y // 8) % 2).astype(np.float64)


def white_noise(sigma: float = 15.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sigma, (SIDE, SIDE))


def line_noise(sigma: float = 15.0, seed: int = 1) -> np.ndarray:
    """Noise correlated along x over three pixels (scan lines): lag-1 autocorrelation 2/3 along rows."""
    white = np.random.default_rng(seed).normal(0, 1, (SIDE, SIDE + 2))
    return sigma * (white[:, :-2] + white[:, 1:-1] + white[:, 2:]) / np.sqrt(3)


def verdict(noisy: np.ndarray, result: np.ndarray) -> dict:
    rows = compare_results(noisy, {"result": result})
    assert rows[0]["verdict"] == "" and rows[0]["verdict_text"] == ""
    return rows[1]


def test_lag1_autocorrelation():
    lines = line_noise()
    assert lag1_autocorrelation(lines, -1) == pytest.approx(2 / 3, abs=0.05)
    assert abs(lag1_autocorrelation(lines, -2)) < 0.05
    assert abs(lag1_autocorrelation(white_noise(), -1)) < 0.05
    assert lag1_autocorrelation(np.ones((4, 4)), -1) == 0.0


@pytest.mark.parametrize("pattern", [smooth_pattern, sharp_pattern])
def test_white_noise_removed_correctly_is_fine(pattern):
    clean = pattern()
    row = verdict(clean + white_noise(), clean)
    assert row["verdict"] == "fine", row["verdict_text"]
    assert 0.8 < row["ratio"] < 1.2 and "structure was removed" not in row["verdict_text"]


@pytest.mark.parametrize("pattern", [smooth_pattern, sharp_pattern])
def test_correlated_line_noise_removed_is_not_condemned(pattern):
    """The autoStructN2V case: the removal is far above the white-noise estimate, and that is right."""
    clean = pattern()
    row = verdict(clean + line_noise(), clean)
    assert row["ratio"] > 1.5  # the old rule ("far above the input's noise") condemned this
    assert row["verdict"] == "correlated", row["verdict_text"]
    assert abs(row["rho_rows"]) > 0.5 and abs(row["rho_cols"]) < 0.1
    text = row["verdict_text"]
    assert "correlated" in text and "underestimates" in text and "structure was removed" not in text


def test_correlated_noise_with_a_little_left_is_not_condemned():
    clean = smooth_pattern()
    noise = line_noise()
    row = verdict(clean + noise, clean + 0.3 * ndimage.uniform_filter1d(noise, 3, axis=-1))
    assert row["verdict"] == "correlated" and "underestimates" in row["verdict_text"]


@pytest.mark.parametrize("noise", [white_noise, line_noise])
def test_image_structure_removed_is_condemned(noise):
    """Over-smoothing a sharp pattern: the removed part holds its edges, correlated noise or not."""
    noisy = sharp_pattern() + noise()
    row = verdict(noisy, ndimage.gaussian_filter(noisy, 4))
    assert row["verdict"] == "structure", row["verdict_text"]
    assert row["structure_corr"] > 0.5 and "structure was removed" in row["verdict_text"]


def test_mild_filter_of_a_smooth_image_is_not_condemned():
    noisy = smooth_pattern() + white_noise()
    row = verdict(noisy, ndimage.gaussian_filter(noisy, 1.5))
    assert row["verdict"] != "structure", row["verdict_text"]


def test_little_removed_and_another_scale():
    clean = smooth_pattern()
    noisy = clean + white_noise()
    assert verdict(noisy, clean + 0.8 * white_noise())["verdict"] == "little"
    # A result in another intensity scale (a paired model's target scale): no claim about structure.
    scaled = verdict(noisy, (clean - 100) / 40)
    assert scaled["verdict"] == "scale" and "reference" in scaled["verdict_text"]


def test_stacks_are_judged_per_plane():
    clean = np.stack([sharp_pattern()] * 3)
    noise = np.stack([line_noise(seed=s) for s in range(3)])
    row = judge_removal(clean + noise, clean)
    assert row["verdict"] == "correlated"


def test_the_table_lists_the_verdicts_only_without_a_reference():
    clean = smooth_pattern()
    noisy = clean + line_noise()
    blind = format_table(compare_results(noisy, {"good": clean}))
    assert "- good: " in blind and "underestimates" in blind
    assert "underestimates" not in format_table(compare_results(noisy, {"good": clean}, clean))


def test_with_a_noise_model_each_result_gets_a_reference_free_psnr_estimate():
    from denoise_studio.engine.metrics import psnr
    from denoise_studio.engine.noise_model import fit_from_prediction

    # 512 px: the estimate subtracts two terms ~25x the blur's MSE, each known to ~sqrt(2/N).
    y, x = np.mgrid[:512, :512]
    clean = 100 + 40 * np.sin(x / 7.0) * np.cos(y / 11.0)
    noisy = clean + np.random.default_rng(0).normal(0, 15.0, clean.shape)
    noise_model = fit_from_prediction(noisy, clean)
    blur = lambda image: ndimage.gaussian_filter(image, 1.5)  # noqa: E731
    rows = compare_results(noisy, {"blur": blur(noisy)}, clean, noise_model=noise_model, denoisers={"blur": blur})
    assert np.isnan(rows[0]["psnr_estimate"]) and rows[0]["estimate_method"] == ""
    assert rows[1]["psnr_estimate"] == pytest.approx(psnr(blur(noisy), clean), abs=0.75)
    assert "Monte-Carlo" in rows[1]["estimate_method"]
    assert "estimated PSNR" in format_table(rows)
    # Without a noise model there is no estimate (nothing is made up).
    assert "psnr_estimate" not in compare_results(noisy, {"blur": blur(noisy)})[1]
