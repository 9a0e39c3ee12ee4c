"""Paired and other methods on the FMD confocal data, against N2V and the classical filters.

1. CARE trained on three FMD pairs (noisy -> 50-frame average), applied to the fourth (fish),
   against N2V trained on the fish image itself.
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
from report import write_section  # noqa: E402

FMD = Path(__file__).resolve().parents[2] / "shared" / "data" / "paired" / "fmd_confocal"
TRAIN_ON = ("BPAE_B", "BPAE_G", "mice")
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


def care_case(budget: float) -> list[str]:
    noisy, reference = load_pair(HELD_OUT)
    train_pairs = [load_pair(name) for name in TRAIN_ON]
    inputs = [pair[0] for pair in train_pairs]
    targets = [pair[1] for pair in train_pairs]
    rows = [
        ("noisy input", noisy),
        best_filter(noisy, reference),
        (f"N2V trained on {HELD_OUT} itself", fit_and_predict("n2v", noisy, noisy, budget)),
        (f"CARE trained on {', '.join(TRAIN_ON)}", fit_and_predict("care", inputs, noisy, budget, targets=targets)),
    ]
    return [
        f"### CARE: trained on three pairs, applied to the fourth ({HELD_OUT})",
        "",
        f"{budget:g} s of training per model (Fast preset).",
        "",
        *table(rows, reference),
    ]


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
    for case in (care_case, n2n_case, single_image_case):
        lines += case(budget) + [""]
        print("\n".join(lines), flush=True)
    text = "\n".join(lines)
    if not args.quick:
        print(f"written: {write_section('paired-methods', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
