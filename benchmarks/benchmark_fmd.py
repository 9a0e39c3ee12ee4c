"""Benchmark on the real paired data: noisy input, classical filters, N2V and N2V2 (Fast preset).

Quality: PSNR/SSIM against the high-SNR reference (and PSNR after an affine fit for W2S, whose two
images were normalised separately). Speed: training patches/s and prediction megapixels/s, each
also reported as a ratio against a baseline run in the same process -- a CAREamics-style N2V
network (U-Net depth 2, 32 features, fp32, 256-px tiles with a fixed 48-px overlap) -- because
absolute timings on shared machines are noisy.

    python benchmarks/benchmark_fmd.py                 # FMD + W2S, 120 s per model, writes docs/benchmarks.md
    python benchmarks/benchmark_fmd.py --quick         # two FMD images, 30 s per model, prints only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from denoise_studio.engine.config import ModelConfig, make_config
from denoise_studio.engine.filters import BASELINE_FILTERS, apply_filter
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import affine_psnr, psnr, ssim
from denoise_studio.engine.prediction import Predictor
from denoise_studio.engine.training import train
from denoise_studio.engine.unet import UNet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, native_bf16, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "paired"


def pairs(data: Path, quick: bool) -> list[tuple[str, Path, Path, bool]]:
    """(name, noisy, reference, needs_affine_fit)."""
    fmd = [
        (f"FMD {n}", data / "fmd_confocal" / f"{n}_noisy.tif", data / "fmd_confocal" / f"{n}_gt_avg50.tif", False)
        for n in ("fish", "BPAE_G", "BPAE_B", "mice")
    ]
    w2s = [
        (f"W2S {i}", data / "w2s_8bit" / f"w2s_{i}_avg1_noisy.tif", data / "w2s_8bit" / f"w2s_{i}_avg400_gt.tif", True)
        for i in ("085_1", "090_0", "099_0", "100_1", "105_2", "115_1")
    ]
    return fmd[:2] if quick else fmd + w2s


def scores(prediction: np.ndarray, reference: np.ndarray, affine: bool) -> dict[str, float]:
    result = {"psnr": psnr(prediction, reference), "ssim": ssim(prediction, reference)}
    if affine:
        result["psnr_affine"] = affine_psnr(prediction, reference)
    return result


def baseline_predict(model: UNet, image: np.ndarray, tile: int = 256, overlap: int = 48) -> np.ndarray:
    """CAREamics-style tiling: fixed overlap, one tile per forward pass, fp32, default memory format."""
    model = model.eval().float()
    height, width = image.shape
    step = model.step
    padded = np.pad(image, ((overlap, overlap + (-height) % step), (overlap, overlap + (-width) % step)), "reflect")
    out = np.zeros_like(padded)
    stride = tile - 2 * overlap
    with torch.no_grad():
        for y in range(0, height, stride):
            for x in range(0, width, stride):
                block = padded[y : y + tile, x : x + tile]
                th, tw = (block.shape[0] // step) * step, (block.shape[1] // step) * step
                pred = model(torch.from_numpy(np.ascontiguousarray(block[:th, :tw]))[None, None])[0, 0].numpy()
                out[y + overlap : y + th - overlap, x + overlap : x + tw - overlap] = pred[
                    overlap : th - overlap, overlap : tw - overlap
                ]
    return out[overlap : overlap + height, overlap : overlap + width]


def speed_section(noisy: np.ndarray, reference: np.ndarray, seconds: float) -> list[str]:
    """Training/prediction speed and quality of the Fast preset, in bf16 and fp32, against the baseline."""
    runs = {
        "baseline (depth 2, 32 features, fp32)": {"base_features": 32, "precision": "fp32"},
        "Fast preset, fp32": {"precision": "fp32"},
    }
    if native_bf16() or torch.cuda.is_available():  # emulated bf16 is slower than fp32: not worth a row
        runs["Fast preset, bf16 autocast"] = {"precision": "bf16"}
    rows, models = [], {}
    for label, overrides in runs.items():
        config = make_config("n2v", "2d", "fast", {"max_time": seconds, "epochs": 10_000, **overrides})
        result = train(config, noisy)
        models[label] = result
        denoised = Predictor(result.model, result.normalization, "2d", precision=config.training.precision)
        rows.append((label, result, psnr(denoised.predict(noisy), reference)))
    base_label = next(iter(runs))
    base = models[base_label]
    baseline_model = UNet(ModelConfig(depth=2, base_features=32))
    baseline_model.load_state_dict({k: v.float().cpu() for k, v in base.model.state_dict().items()})
    normalized = base.normalization.normalize(noisy)
    rates = {base_label: _rate(lambda: baseline_predict(baseline_model, normalized), noisy.size)}
    for label, result, _ in rows[1:]:
        predictor = Predictor(result.model, result.normalization, "2d", precision=result.precision)
        predictor.predict(noisy)  # warm-up: receptive-field probe, oneDNN kernel selection
        rates[label] = _rate(lambda p=predictor: p.predict(noisy), noisy.size)
    base_pps, base_rate = base.patches_per_second, rates[base_label]
    lines = [
        "",
        f"### Speed and precision against an in-process baseline (FMD fish, {seconds:.0f} s of training each)",
        "",
        "The baseline is a CAREamics-style N2V network (depth 2, 32 features, fp32) trained by our loop, "
        "predicted with 256-px tiles and a fixed 48-px overlap, one tile per pass.",
        "",
        "| run | steps | training patches/s | ratio | prediction MP/s | ratio | PSNR (dB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, result, value in rows:
        lines.append(
            f"| {label} | {result.steps} | {result.patches_per_second:.0f} "
            f"| {result.patches_per_second / base_pps:.2f}x | {rates[label]:.2f} "
            f"| {rates[label] / base_rate:.2f}x | {value:.2f} |"
        )
    return lines


def _cell(scores: dict | None, key: str, spec: str) -> str:
    return "not run" if scores is None else format(scores[key], spec)


def _rate(predict, pixels: int, repeats: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        predict()
    return repeats * pixels / 1e6 / (time.perf_counter() - start)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.split(",")[0].lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-time", type=float, default=120.0)
    parser.add_argument("--methods", nargs="+", default=["n2v", "n2v2"])
    parser.add_argument(
        "--w2s-methods", nargs="+", default=["n2v"], help="methods run on the W2S pairs (each costs max-time per image)"
    )
    parser.add_argument("--quick", action="store_true", help="two FMD images, 30 s per model, no file written")
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only the in-process speed comparison (60 s per run), written to its own section with the machine",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: the paired data folder {args.data} is not there", file=sys.stderr)
        return 0
    budget = 30.0 if args.quick else args.max_time
    if args.speed_only:
        _, noisy_path, ref_path, _ = pairs(args.data, True)[0]
        lines = ["## Speed on another machine", "", f"Machine: {machine()}."]
        lines += speed_section(load_image(noisy_path)[0], load_image(ref_path)[0].astype(np.float32), 60.0)
        text = "\n".join(lines) + "\n"
        print(text)
        # One section per kind of processor: the same CPU name with and without native bf16 differs threefold.
        kind = _slug(machine()) + ("-bf16" if native_bf16() else "")
        print(f"written: {write_section('speed-' + kind, text)}")
        return 0

    filter_names = [f"{n} {s:g}" for n, s in BASELINE_FILTERS]
    header = ["image", "noisy", *filter_names, *(m.upper() for m in args.methods)]
    psnr_rows, ssim_rows, speed_rows = [], [], []
    wins = []
    for name, noisy_path, ref_path, affine in pairs(args.data, args.quick):
        noisy, reference = load_image(noisy_path)[0], load_image(ref_path)[0].astype(np.float32)
        key = "psnr_affine" if affine else "psnr"
        results = {"noisy": scores(noisy, reference, affine)}
        for filt, size in BASELINE_FILTERS:
            results[f"{filt} {size:g}"] = scores(apply_filter(noisy, filt, size), reference, affine)
        methods = args.w2s_methods if name.startswith("W2S") else args.methods
        for method in args.methods:
            if method not in methods:
                results[method.upper()] = None
                continue
            config = make_config(method, "2d", "fast", {"max_time": budget, "epochs": 10_000})
            result = train(config, noisy)
            predictor = Predictor(result.model, result.normalization, "2d")
            predictor.predict(noisy)
            t0 = time.perf_counter()
            denoised = predictor.predict(noisy)
            rate = noisy.size / 1e6 / (time.perf_counter() - t0)
            results[method.upper()] = scores(denoised, reference, affine)
            speed_rows.append(
                f"| {name} | {method.upper()} | {result.steps} | {result.patches_per_second:.0f} | {rate:.2f} |"
            )
        best_filter = max((results[k][key], k) for k in filter_names)
        best_dl = max(results[m.upper()][key] for m in methods)
        wins.append((name, best_dl, best_filter))
        psnr_rows.append(f"| {name} | " + " | ".join(_cell(results[h], key, ".2f") for h in header[1:]) + " |")
        ssim_rows.append(f"| {name} | " + " | ".join(_cell(results[h], "ssim", ".3f") for h in header[1:]) + " |")
        print(psnr_rows[-1], flush=True)

    head = "| " + " | ".join(header) + " |\n|" + "---|" * len(header)
    lines = [
        "## Noise2Void family on real paired data",
        "",
        f"Produced by `python benchmarks/benchmark_fmd.py` (max-time {budget:g} s per model) on "
        f"{machine()}. Data: `../shared/data/paired/` "
        "(FMD confocal: single frame vs 50-frame average; W2S widefield: single shot vs 400-shot average, "
        "PSNR after an affine fit because the two were normalised separately). Each model is trained on "
        "the noisy image alone, without the reference.",
        "",
        "### PSNR (dB)",
        "",
        head,
        *psnr_rows,
        "",
        "### SSIM",
        "",
        head,
        *ssim_rows,
        "",
        "### Deep learning against the best classical filter",
        "",
        "| image | best N2V-family PSNR | best filter | margin |",
        "|---|---:|---|---:|",
        *[f"| {n} | {dl:.2f} | {f} ({fp:.2f}) | {dl - fp:+.2f} |" for n, dl, (fp, f) in wins],
        "",
        "### Speed per run",
        "",
        "| image | method | optimiser steps | training patches/s | prediction MP/s |",
        "|---|---|---:|---:|---:|",
        *speed_rows,
    ]
    _, noisy_path, ref_path, _ = pairs(args.data, True)[0]
    lines += speed_section(load_image(noisy_path)[0], load_image(ref_path)[0].astype(np.float32), min(budget, 60.0))
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        print(f"written: {write_section('noise2void-family', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
