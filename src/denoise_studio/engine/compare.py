"""Comparing results: numbers against a reference when there is one, honest indicators when not.

With a reference: PSNR, SSIM and SNR (signal power over error power, in dB). Without one, the
noise each result removed and the noise it kept are estimated from the images alone: the standard
deviation of the residual ``noisy - result`` and the wavelet noise estimate of the result; a
residual much larger than the input's noise estimate means the result removed structure too.
"""

from __future__ import annotations

import numpy as np

from .metrics import noise_sigma, psnr, ssim


def snr(prediction: np.ndarray, reference: np.ndarray) -> float:
    reference = np.asarray(reference, dtype=np.float64)
    error = np.mean((np.asarray(prediction, dtype=np.float64) - reference) ** 2)
    signal = np.mean((reference - reference.mean()) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(signal / error))


def compare_results(
    noisy: np.ndarray, results: dict[str, np.ndarray], reference: np.ndarray | None = None
) -> list[dict[str, float | str]]:
    """One row per image (the noisy input first): PSNR/SSIM/SNR with a reference, noise estimates always."""
    noisy = np.asarray(noisy, dtype=np.float64)
    input_noise = noise_sigma(noisy)
    rows = []
    for name, image in {"noisy input": noisy, **results}.items():
        image = np.asarray(image, dtype=np.float64)
        if image.shape != noisy.shape:
            raise ValueError(f"{name}: shape {image.shape} differs from the noisy input {noisy.shape}")
        row: dict[str, float | str] = {
            "name": name,
            "noise_left": noise_sigma(image),
            "residual_std": float(np.std(noisy - image)),
            "input_noise": input_noise,
        }
        if reference is not None:
            row.update(psnr=psnr(image, reference), ssim=ssim(image, reference), snr=snr(image, reference))
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, float | str]]) -> str:
    """A Markdown table of :func:`compare_results` rows."""
    with_reference = "psnr" in rows[0]
    header = ["result", "PSNR (dB)", "SSIM", "SNR (dB)"] if with_reference else ["result"]
    header += ["noise left (sigma)", "removed (residual std)"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [str(row["name"])]
        if with_reference:
            cells += [f"{row['psnr']:.2f}", f"{row['ssim']:.3f}", f"{row['snr']:.2f}"]
        cells += [f"{row['noise_left']:.4g}", f"{row['residual_std']:.4g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
