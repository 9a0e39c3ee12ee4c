"""Comparing results: numbers against a reference when there is one, honest indicators when not.

With a reference: PSNR, SSIM and SNR (signal power over error power, in dB). Without one, the
noise each result removed and the noise it kept are estimated from the images alone: the standard
deviation of the residual ``noisy - result`` and the wavelet noise estimate of the result.

The input's noise estimate (:func:`~denoise_studio.engine.metrics.noise_sigma`) assumes white noise.
Noise correlated between neighbouring pixels (scan lines, the case of autoStructN2V) hides from it,
so a good result of such data removes "more than the input's noise". Each result therefore gets a
verdict that looks at *what* was removed, not only how much (:func:`judge_removal`):

- the removed part follows the image (its smoothed residual correlates with the result): structure
  went with the noise, whatever the amounts say;
- the removed part is spatially correlated (lag-1 autocorrelation along rows or columns clearly
  non-zero) but not like the image: correlated noise, which the white-noise estimate underestimates;
- otherwise the amount removed is set against the input's noise estimate.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .assessment import Denoiser, assess, estimate_range
from .errors import InputError
from .metrics import noise_sigma, psnr, ssim
from .noise_model import NoiseModel

#: |lag-1 autocorrelation| of the residual above which it counts as spatially correlated.
CORRELATED_RHO = 0.1
#: Correlation of the (slightly smoothed) residual with the result above which structure was removed.
STRUCTURE_CORR = 0.5
#: Residual std over the input's noise estimate above which the removal is "far above" the noise.
FAR_ABOVE = 1.5
#: ... and below which the result removed little of the noise.
LITTLE = 0.5

#: Verdict codes of :func:`judge_removal`; only "structure" condemns a result.
VERDICTS = ("fine", "little", "correlated", "check", "structure", "scale")


def snr(prediction: np.ndarray, reference: np.ndarray) -> float:
    reference = np.asarray(reference, dtype=np.float64)
    error = np.mean((np.asarray(prediction, dtype=np.float64) - reference) ** 2)
    signal = np.mean((reference - reference.mean()) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(signal / error))


def lag1_autocorrelation(image: np.ndarray, axis: int) -> float:
    """Correlation of each pixel with its neighbour along ``axis`` (0 when the image is constant)."""
    image = np.asarray(image, dtype=np.float64)
    image = image - image.mean()
    power = float(np.mean(image * image))
    if image.shape[axis] < 2 or power == 0:
        return 0.0
    first = np.take(image, range(image.shape[axis] - 1), axis=axis)
    second = np.take(image, range(1, image.shape[axis]), axis=axis)
    return float(np.mean(first * second) / power)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return 0.0 if norm == 0 else float(np.sum(a * b) / norm)


def judge_removal(noisy: np.ndarray, image: np.ndarray, input_noise: float | None = None) -> dict[str, float | str]:
    """What ``image`` removed from ``noisy``, judged without a reference.

    Returns ``rho_rows`` / ``rho_cols`` (lag-1 autocorrelation of the residual along x and along y),
    ``structure_corr`` (correlation of the residual, smoothed over one pixel so white noise drops
    out, with the result), ``ratio`` (residual std over the input's white-noise estimate), and
    ``verdict`` (a code of :data:`VERDICTS`) with ``verdict_text`` (a sentence for the user).
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    image = np.asarray(image, dtype=np.float64)
    input_noise = noise_sigma(noisy) if input_noise is None else float(input_noise)
    residual = noisy - image
    spread = float(np.std(residual))
    rho_rows, rho_cols = lag1_autocorrelation(residual, -1), lag1_autocorrelation(residual, -2)
    sigma = [0.0] * (residual.ndim - 2) + [1.0, 1.0]  # within each plane of a stack
    structure = _correlation(ndimage.gaussian_filter(residual, sigma), image) if spread > 0 else 0.0
    ratio = spread / input_noise if input_noise > 0 else (0.0 if spread == 0 else float("inf"))
    offset = float(np.mean(residual))
    rho, along = (rho_rows, "rows (x)") if abs(rho_rows) >= abs(rho_cols) else (rho_cols, "columns (y)")
    correlated = abs(rho) > CORRELATED_RHO
    correlated_note = (
        f"the removed part is spatially correlated (lag-1 rho = {rho:+.2f} along {along}) and does not follow the "
        "image: the input's noise estimate assumes white noise and underestimates correlated noise"
    )
    times = f"{ratio:.2g} times the input's noise estimate"
    if abs(offset) > max(spread, 3 * input_noise) or structure < -STRUCTURE_CORR:
        verdict = "scale"
        text = (
            "the result is on another intensity scale or adds contrast the input lacks (e.g. a paired or "
            "deconvolved result): these noise numbers cannot judge it; use a reference"
        )
    elif structure > STRUCTURE_CORR:
        verdict = "structure"
        text = f"the removed part follows the image (r = {structure:.2f}): structure was removed with the noise"
    elif ratio > FAR_ABOVE and correlated:
        verdict = "correlated"
        text = f"removed {times}, but {correlated_note}, so this is no sign of lost structure"
    elif ratio > FAR_ABOVE:
        verdict = "check"
        text = (
            f"removed {times}; the removed part does not follow the image, but fine detail may have gone "
            "with the noise: look at noisy - result"
        )
    elif ratio < LITTLE:
        verdict = "little"
        text = f"removed only {times}: much of the noise is left"
    elif correlated:
        verdict = "correlated"
        text = f"removed {times}; {correlated_note}"
    else:
        verdict = "fine"
        text = f"removed {times}, and the removed part does not follow the image"
    return {
        "rho_rows": rho_rows,
        "rho_cols": rho_cols,
        "structure_corr": structure,
        "ratio": ratio,
        "verdict": verdict,
        "verdict_text": text[:1].upper() + text[1:] + ".",
    }


def compare_results(
    noisy: np.ndarray,
    results: dict[str, np.ndarray],
    reference: np.ndarray | None = None,
    *,
    noise_model: NoiseModel | None = None,
    denoisers: dict[str, Denoiser] | None = None,
) -> list[dict[str, float | str]]:
    """One row per image (the noisy input first): PSNR/SSIM/SNR with a reference, noise estimates always.

    Every result row also holds :func:`judge_removal`'s diagnostics and verdict (the noisy input's
    row has the verdict ""), which is what can be said without a reference. With a ``noise_model``,
    each result row also gets ``psnr_estimate``: the reference-free estimate of
    :func:`~denoise_studio.engine.assessment.assess` over :func:`estimate_range`, using the
    result's entry of ``denoisers`` (the function that made it) when there is one.
    """
    noisy = np.asarray(noisy, dtype=np.float64)
    input_noise = noise_sigma(noisy)
    data_range = estimate_range(noisy, reference) if noise_model is not None else None
    rows = []
    for index, (name, image) in enumerate({"noisy input": noisy, **results}.items()):
        image = np.asarray(image, dtype=np.float64)
        if image.shape != noisy.shape:
            raise ValueError(f"{name}: shape {image.shape} differs from the noisy input {noisy.shape}")
        row: dict[str, float | str] = {
            "name": name,
            "noise_left": noise_sigma(image),
            "residual_std": float(np.std(noisy - image)),
            "input_noise": input_noise,
        }
        if index == 0:
            row.update(rho_rows=0.0, rho_cols=0.0, structure_corr=0.0, ratio=0.0, verdict="", verdict_text="")
        else:
            row.update(judge_removal(noisy, image, input_noise))
        if noise_model is not None:
            if index == 0:
                row.update(psnr_estimate=float("nan"), estimate_method="", residual_verdict="")
            else:
                try:
                    found = assess(
                        noisy, image, noise_model, denoiser=(denoisers or {}).get(name), data_range=data_range
                    )
                    row.update(
                        psnr_estimate=found.psnr_estimate, estimate_method=found.mse_method,
                        residual_verdict=f"{found.whiteness.verdict}: {found.whiteness.explanation}",
                    )  # fmt: skip
                except InputError as err:  # e.g. channels: the other numbers still stand
                    row.update(psnr_estimate=float("nan"), estimate_method=f"not estimated: {err}", residual_verdict="")
        if reference is not None:
            row.update(psnr=psnr(image, reference), ssim=ssim(image, reference), snr=snr(image, reference))
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, float | str]]) -> str:
    """A Markdown table of :func:`compare_results` rows; without a reference, each result's verdict follows."""
    with_reference = "psnr" in rows[0]
    header = ["result", "PSNR (dB)", "SSIM", "SNR (dB)"] if with_reference else ["result"]
    header += ["noise left (sigma)", "removed (residual std)"]
    estimated = "psnr_estimate" in rows[0]
    if estimated:
        header.append("estimated PSNR (dB, no reference)")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [str(row["name"])]
        if with_reference:
            cells += [f"{row['psnr']:.2f}", f"{row['ssim']:.3f}", f"{row['snr']:.2f}"]
        cells += [f"{row['noise_left']:.4g}", f"{row['residual_std']:.4g}"]
        if estimated:
            value = float(row["psnr_estimate"])
            cells.append(f"{value:.2f}" if np.isfinite(value) else ("" if np.isnan(value) else "∞"))
        lines.append("| " + " | ".join(cells) + " |")
    verdicts = [f"- {row['name']}: {row['verdict_text']}" for row in rows if row.get("verdict_text")]
    if verdicts and not with_reference:
        lines += ["", "Without a reference (what each result removed):", *verdicts]
    return "\n".join(lines)
