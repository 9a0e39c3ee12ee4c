"""Image quality numbers: PSNR, SSIM, PSNR after an affine fit, and a reference-free noise estimate.

PSNR uses the reference's own range (max - min) as the data range, the convention of the FMD and
N2V papers. The affine-fit PSNR first maps the prediction onto the reference by least squares; it
is the fair number when the two were normalised separately (the W2S 8-bit pairs).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _pair(prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction = np.asarray(prediction, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if prediction.shape != reference.shape:
        raise ValueError(f"shapes differ: prediction {prediction.shape}, reference {reference.shape}")
    return prediction, reference


def psnr(prediction: np.ndarray, reference: np.ndarray, data_range: float | None = None) -> float:
    prediction, reference = _pair(prediction, reference)
    data_range = float(reference.max() - reference.min()) if data_range is None else float(data_range)
    mse = float(np.mean((prediction - reference) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * np.log10(data_range**2 / mse)


def affine_fit(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``a * prediction + b`` with a, b minimising the squared error to ``reference``."""
    prediction, reference = _pair(prediction, reference)
    design = np.stack([prediction.ravel(), np.ones(prediction.size)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, reference.ravel(), rcond=None)
    return a * prediction + b


def affine_psnr(prediction: np.ndarray, reference: np.ndarray) -> float:
    return psnr(affine_fit(prediction, reference), reference)


def ssim(prediction: np.ndarray, reference: np.ndarray, data_range: float | None = None, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004) with a Gaussian window, per 2D plane, averaged over planes."""
    prediction, reference = _pair(prediction, reference)
    data_range = float(reference.max() - reference.min()) if data_range is None else float(data_range)
    if prediction.ndim == 2:
        prediction, reference = prediction[None], reference[None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for x, y in zip(prediction, reference, strict=True):
        # truncate=3.5 gives the 11x11 window of the original paper for sigma 1.5.
        blur = lambda a: ndimage.gaussian_filter(a, sigma, truncate=3.5)  # noqa: E731
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        n = (2 * int(3.5 * sigma + 0.5) + 1) ** 2  # sample covariance over the window, as scikit-image does
        scale = n / (n - 1)
        vx, vy, cxy = vx * scale, vy * scale, cxy * scale
        index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        pad = int(3.5 * sigma + 0.5)
        values.append(float(index[pad:-pad, pad:-pad].mean()))
    return float(np.mean(values))


def noise_sigma(image: np.ndarray) -> float:
    """Reference-free estimate of the noise standard deviation (robust, from the finest wavelet band).

    Donoho's MAD estimator on the diagonal Haar detail coefficients; it reads the noise left in an
    image, so comparing it between input and output says how much noise was removed.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        return float(np.median([noise_sigma(plane) for plane in image]))
    h, w = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    x = image[:h, :w]
    detail = (x[0::2, 0::2] - x[0::2, 1::2] - x[1::2, 0::2] + x[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(detail - np.median(detail))) / 0.6745)


def compare(prediction: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    return {
        "psnr": psnr(prediction, reference),
        "ssim": ssim(prediction, reference),
        "psnr_affine": affine_psnr(prediction, reference),
    }
