"""Paired and other methods on the FMD confocal data, against N2V and the classical filters.

1. CARE (noisy -> 50-frame average) against N2V on each FMD pair: trained on the three other
   pairs (leave one out), and trained on three quadrants of the same pair (same field of view).
2. Noise2Noise on two synthetic noisy realisations of the fish ground truth (Poisson-Gaussian
   noise of about the real frame's level), against N2V on one realisation.
3. On the real fish frame: the autoencoder, CARE with a filter-made target, DecoNoising.

    python benchmarks/benchmark_paired.py            # writes its section of docs/benchmarks.md
    python benchmarks/benchmark_paired.py --quick    # 20 s per model, prints only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from denoise_studio.engine.config import make_config
from denoise_studio.engine.filters import BASELINE_FILTERS, apply_filter
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import psnr, ssim
from denoise_studio.engine.prediction import Predictor
from denoise_studio.engine.training import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

FMD = Path(__file__).resolve().parents[2] / "shared" / "data" / "paired" / "fmd_confocal"
IMAGES = ("fish", "BPAE_G", "BPAE_B", "mice")
HELD_OUT = "fish"


def load_pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    noisy = load_image(FMD / f"{name}_noisy.tif")[0].astype(np.float32)
    return noisy, load_image(FMD / f"{name}_gt_avg50.tif")[0].astype(np.float32)


def fit_and_predict(method: str, inputs, image: np.ndarray, budget: float, targets=None, **overrides) -> np.ndarray:
    config = make_config(method, "2d", "fast", {"max_time": budget, "epochs": 10_000, **overrides})
    result = train(config, inputs, targets=targets)
    predictor = Predictor(result.model, result.normalization, "2d", output_normalization=result.target_normalization)
    return predictor.predict(image)


def best_filter(noisy: np.ndarray, reference: np.ndarray) -> tuple[str, np.ndarray]:
    candidates = {f"{n} {s:g}": apply_filter(noisy, n, s) for n, s in BASELINE_FILTERS}
    name = max(candidates, key=lambda k: psnr(candidates[k], reference))
    return f"best filter ({name})", candidates[name]


def table(rows: list[tuple[str, np.ndarray]], reference: np.ndarray) -> list[str]:
    lines = ["| result | PSNR (dB) | SSIM |", "|---|---:|---:|"]
    lines += [f"| {name} | {psnr(image, reference):.2f} | {ssim(image, reference):.3f} |" for name, image in rows]
    return lines


def quadrants(image: np.ndarray) -> list[np.ndarray]:
    """The four quadrants, top-left, top-right, bottom-left, bottom-right; the last is held out."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return [image[:h, :w], image[:h, w:], image[h:, :w], image[h:, w:]]


def care_case(budget: float) -> list[str]:
    """CARE is trained on pairs and must generalise to new images; N2V trains on the image it denoises.

    Two designs: (a) leave one image out: CARE learns from the three other FMD samples, whose
    acquisitions differ (fish is about five times noisier per grey level than the others); (b) one
    field of view: CARE learns from three quadrants of the pair and denoises the fourth, the way CARE is
    used when one experiment provides its own training pairs. N2V trains on the whole noisy image (it
    needs no reference), and every result is scored on the same pixels.
    """
    pairs = {name: load_pair(name) for name in IMAGES}
    n2v = {name: fit_and_predict("n2v", noisy, noisy, budget) for name, (noisy, _ref) in pairs.items()}
    lines = [
        "### CARE against N2V on the FMD confocal pairs",
        "",
        f"{budget:g} s of training per model (Fast preset). N2V trains on the noisy image it denoises "
        "(it needs no reference). CARE learns noisy -> 50-frame average from other pairs:",
        "",
        "- **leave one out**: CARE trained on the three other FMD samples, applied to the whole held-out image;",
        "- **same field**: CARE trained on three quadrants of the pair, applied to the held-out (bottom-right) "
        "quadrant; N2V and the filter are scored on that quadrant too.",
        "",
        "| image | noisy | best filter | N2V | CARE, leave one out | CARE, same field (quadrant) "
        "| N2V on that quadrant | filter on that quadrant |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (noisy, reference) in pairs.items():
        others = [pairs[other] for other in IMAGES if other != name]
        loo = fit_and_predict("care", [p[0] for p in others], noisy, budget, targets=[p[1] for p in others])
        noisy_q, reference_q = quadrants(noisy), quadrants(reference)
        same_field = fit_and_predict("care", noisy_q[:3], noisy_q[3], budget, targets=reference_q[:3])
        filter_name, filtered = best_filter(noisy, reference)
        held_ref = reference_q[3]
        lines.append(
            f"| {name} | {psnr(noisy, reference):.2f} | {psnr(filtered, reference):.2f} "
            f"({filter_name[13:-1]}) | {psnr(n2v[name], reference):.2f} | {psnr(loo, reference):.2f} "
            f"| {psnr(same_field, held_ref):.2f} | {psnr(quadrants(n2v[name])[3], held_ref):.2f} "
            f"| {psnr(quadrants(filtered)[3], held_ref):.2f} |"
        )
        print(lines[-1], flush=True)
    return lines


def n2n_case(budget: float) -> list[str]:
    _, reference = load_pair(HELD_OUT)
    rng = np.random.default_rng(0)
    scaled = reference / reference.max()
    peak = 40.0  # photons at the brightest pixel: about the real single frame's noise level

    def realisation() -> np.ndarray:
        return (rng.poisson(scaled * peak) / peak + rng.normal(0, 0.02, scaled.shape)).astype(np.float32)

    first, second = realisation(), realisation()
    rows = [
        ("noisy realisation 1", first),
        best_filter(first, scaled),
        ("N2V on realisation 1", fit_and_predict("n2v", first, first, budget)),
        ("Noise2Noise (realisation 1 -> 2)", fit_and_predict("n2n", first, first, budget, targets=second)),
    ]
    return [
        "### Noise2Noise: two synthetic noisy realisations of the fish ground truth",
        "",
        f"Poisson noise at {peak:g} photons at the maximum plus Gaussian noise (sigma 2 % of the maximum); "
        f"{budget:g} s of training per model; PSNR against the scaled ground truth.",
        "",
        *table(rows, scaled),
    ]


def single_image_case(budget: float) -> list[str]:
    noisy, reference = load_pair(HELD_OUT)
    rows = [
        ("noisy input", noisy),
        best_filter(noisy, reference),
        ("autoencoder (noisy -> noisy, no skips)", fit_and_predict("autoencoder", noisy, noisy, budget)),
        ("CARE with a Gaussian-1.5 target", fit_and_predict("care", noisy, noisy, budget, target_from="gaussian:1.5")),
        ("N2V + DecoNoising (PSF sigma 1), denoised output", fit_and_predict("n2v", noisy, noisy, budget, psf_sigma=1)),
    ]
    return [
        f"### Other methods on the real {HELD_OUT} frame (no ground truth used in training)",
        "",
        *table(rows, reference),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-time", type=float, default=90.0)
    args = parser.parse_args(argv)
    if not FMD.is_dir():
        print(f"skipped: {FMD} is not there", file=sys.stderr)
        return 0
    budget = 20.0 if args.quick else args.max_time
    lines = ["## Paired and other methods", "", "Produced by `python benchmarks/benchmark_paired.py`.", ""]
    lines += [f"Machine: {machine()}.", ""]
    for case in (care_case, n2n_case, single_image_case):
        lines += case(budget) + [""]
        print("\n".join(lines), flush=True)
    text = "\n".join(lines)
    if not args.quick:
        print(f"written: {write_section('paired-methods', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
