"""autoStructN2V on structured noise: a synthetic case with ground truth, and real EM images.

1. Synthetic: a clean real image (the FMD zebrafish 50-frame average) + Poisson noise + horizontally
   correlated Gaussian noise + random row offsets (scan-line noise). Stage 1 (N2V) learns to
   reproduce the correlated noise; stage 2 (structN2V with the extracted mask) should not.
   Reports PSNR/SSIM of the noisy input, classical filters, stage 1 and stage 2, and the mask.
2. Real EM data without ground truth: the mask extracted on the STEM images (scan-line noise,
   expected: a horizontal line) and on the SEM image (about white noise, expected: a few pixels).

    python benchmarks/benchmark_structured.py            # writes its section of docs/benchmarks.md
    python benchmarks/benchmark_structured.py --quick    # shorter budgets, prints only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from denoise_studio.engine.config import make_autostruct_config
from denoise_studio.engine.filters import BASELINE_FILTERS, apply_filter
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import affine_psnr, psnr, ssim
from denoise_studio.engine.pipelines.autostruct import AutoStructPipeline
from denoise_studio.engine.prediction import Predictor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def structured_noisy(clean: np.ndarray, seed: int = 0, photons: float = 30.0, row_sigma: float = 0.0) -> np.ndarray:
    """Poisson noise + horizontally correlated noise (+ optional row offsets) on a clean image in [0, 1]."""
    rng = np.random.default_rng(seed)
    scaled = (clean - clean.min()) / (clean.max() - clean.min())
    shot = rng.poisson(scaled * photons) / photons
    white = rng.normal(0.0, 1.0, clean.shape)
    correlated = ndimage.convolve1d(white, np.array([0.5, 1, 1, 1, 0.5]) / np.sqrt(3.5), axis=1, mode="wrap")
    rows = rng.normal(0.0, 1.0, (clean.shape[0], 1))
    return (shot + 0.15 * correlated + row_sigma * rows).astype(np.float32)


def synthetic_case(stage1_time: float, stage2_time: float, row_sigma: float) -> list[str]:
    reference = load_image(DATA / "paired" / "fmd_confocal" / "fish_gt_avg50.tif")[0].astype(np.float32)
    reference = (reference - reference.min()) / (reference.max() - reference.min())
    noisy = structured_noisy(reference, row_sigma=row_sigma)
    rows = [("noisy input", noisy)]
    rows += [(f"{name} {size:g}", apply_filter(noisy, name, size)) for name, size in BASELINE_FILTERS]
    config = make_autostruct_config(
        "2d", "fast", {"stage1.max_time": stage1_time, "stage2.max_time": stage2_time, "auto_approve": True}
    )
    pipeline = AutoStructPipeline(config, noisy).run()
    steps = {}
    for stage, result in (("stage 1 (N2V)", pipeline.stage1), ("stage 2 (structN2V, extracted mask)", pipeline.stage2)):
        rows.append((stage, Predictor(result.model, pipeline.normalization, "2d").predict(noisy)))
        steps[stage] = result.steps
    offsets = f" + row offsets (sigma {row_sigma:g}, constant along each 512-px row)" if row_sigma else ""
    title = "with row offsets" if row_sigma else "horizontally correlated noise"
    stage1_psnr, stage2_psnr = psnr(rows[-2][1], reference), psnr(rows[-1][1], reference)
    lines = [
        f"### Synthetic structured noise, {title} (ground truth known)",
        "",
        "Clean image: FMD zebrafish 50-frame average, scaled to [0, 1]; noise: Poisson (30 photons at the "
        f"maximum) + horizontally correlated Gaussian (kernel [0.5, 1, 1, 1, 0.5], sigma 0.15){offsets}. "
        f"Stage 1: {stage1_time:g} s ({steps['stage 1 (N2V)']} steps), stage 2: {stage2_time:g} s "
        f"({steps['stage 2 (structN2V, extracted mask)']} steps), Fast preset, extracted mask approved as it came. "
        "PSNR after a least-squares affine fit to the reference shows how much of a gap is a gain or offset error.",
        "",
        "| result | PSNR (dB) | PSNR after affine fit (dB) | SSIM |",
        "|---|---:|---:|---:|",
        *[
            f"| {name} | {psnr(image, reference):.2f} | {affine_psnr(image, reference):.2f} "
            f"| {ssim(image, reference):.3f} |"
            for name, image in rows
        ],
        "",
        f"Extracted mask ({pipeline.extraction.summary()}):",
        "",
        "```",
        pipeline.extraction.to_text_grid(),
        "```",
        "",
        f"Stage 2 minus stage 1: {stage2_psnr - stage1_psnr:+.2f} dB.",
        "",
    ]
    print("\n".join(lines), flush=True)
    return lines


def em_masks(stage1_time: float) -> list[str]:
    lines = [
        "### Masks extracted on real electron-microscopy images (no ground truth)",
        "",
        f"Stage 1 trained for {stage1_time:g} s on each image (Fast preset, no augmentation).",
        "",
    ]
    cases = [
        ("STEM HAADF SrTiO3 (Tecnai Osiris), scan lines", DATA / "em" / "stem_haadf_SrTiO3_TecnaiOsiris.tif", None),
        ("STEM SrTiO3 (NCEM), scan lines", DATA / "em" / "stem_SrTiO3_NCEM_16_STOimage.tif", None),
        ("HR-SEM REBCO, about white noise (rows < 884)", DATA / "em" / "sem_REBCO_FEI_StrataDB_with_databar.tif", 884),
    ]
    for title, path, rows in cases:
        image = load_image(path)[0]
        if rows is not None:
            image = image[:rows]
        config = make_autostruct_config("2d", "fast", {"stage1.max_time": stage1_time})
        pipeline = AutoStructPipeline(config, image)
        pipeline.run_stage1()
        result = pipeline.extract_mask()
        lines += [f"**{title}**: {result.summary()}", "", "```", result.to_text_grid(), "```", ""]
        print(lines[-5], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} is not there", file=sys.stderr)
        return 0
    stage1, stage2 = (20.0, 40.0) if args.quick else (90.0, 120.0)
    lines = ["## autoStructN2V on structured noise", "", "Produced by `python benchmarks/benchmark_structured.py`.", ""]
    lines += [f"Machine: {machine()}.", ""]
    lines += synthetic_case(stage1, stage2, row_sigma=0.0)
    if not args.quick:
        lines += synthetic_case(stage1, stage2, row_sigma=0.08)
    lines += em_masks(stage1 / 2)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        print(f"written: {write_section('autostructn2v', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
