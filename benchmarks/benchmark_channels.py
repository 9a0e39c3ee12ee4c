"""Two channels of one field: independent vs joint training, against the best classical filter.

The image is a CYX stack of two real FMD confocal frames of the same BPAE cells: channel 0 the
nuclei (BPAE_B), channel 1 F-actin (BPAE_G). Each channel is scored (PSNR, SSIM) against its own
50-frame average. Both trainings get the same wall-time budget through the one run API, with the
same preset.

    python benchmarks/benchmark_channels.py            # writes its section of docs/benchmarks.md
    python benchmarks/benchmark_channels.py --quick    # 20 s per model, prints only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import denoise_studio as ds
from denoise_studio.engine.filters import BASELINE_FILTERS, apply_filter
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import psnr, ssim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

FMD = Path(__file__).resolve().parents[2] / "shared" / "data" / "paired" / "fmd_confocal"
CHANNELS = ("BPAE_B", "BPAE_G")


def load_channels() -> tuple[np.ndarray, np.ndarray]:
    noisy = np.stack([load_image(FMD / f"{name}_noisy.tif")[0] for name in CHANNELS]).astype(np.float32)
    clean = np.stack([load_image(FMD / f"{name}_gt_avg50.tif")[0] for name in CHANNELS]).astype(np.float32)
    return noisy, clean


def best_filter(noisy: np.ndarray, clean: np.ndarray) -> tuple[str, np.ndarray]:
    """The classical filter with the best PSNR on this channel (chosen with the reference: a generous baseline)."""
    candidates = {f"{name} {size:g}": apply_filter(noisy, name, size) for name, size in BASELINE_FILTERS}
    best = max(candidates, key=lambda key: psnr(candidates[key], clean))
    return best, candidates[best]


def train_and_predict(noisy: np.ndarray, channels: str, budget: float, method: str) -> tuple[np.ndarray, float]:
    config = ds.make_config(method, "2d", "fast", max_time=budget, epochs=10_000, channels=channels, seed=0)
    start = time.perf_counter()
    model = ds.train(noisy, config, axes="CYX").model
    elapsed = time.perf_counter() - start
    return model.predict(noisy, axes="CYX"), elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 s per model, print only")
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    args = parser.parse_args(argv)
    if not FMD.exists():
        print(f"skipped: {FMD} is absent (the real FMD data lives in ../shared/data)")
        return 0
    budget = 20.0 if args.quick else args.budget
    noisy, clean = load_channels()
    rows: dict[str, list[tuple[float, float]]] = {}
    names: dict[str, str] = {}
    rows["noisy"] = [(psnr(noisy[c], clean[c]), ssim(noisy[c], clean[c])) for c in range(2)]
    filtered = [best_filter(noisy[c], clean[c]) for c in range(2)]
    rows["best classical filter"] = [(psnr(f, clean[c]), ssim(f, clean[c])) for c, (_n, f) in enumerate(filtered)]
    names["best classical filter"] = " / ".join(name for name, _ in filtered)
    times = {}
    for method in ("n2v", "n2v2"):
        for channels in ("independent", "joint"):
            label = f"{ds.METHODS[method].label}, {channels}"
            denoised, times[label] = train_and_predict(noisy, channels, budget, method)
            rows[label] = [(psnr(denoised[c], clean[c]), ssim(denoised[c], clean[c])) for c in range(2)]
            print(label, rows[label], f"{times[label]:.0f} s", flush=True)
    lines = [
        "## Two channels: independent vs joint",
        "",
        f"Machine: {machine()}. Budget: {budget:g} s of training per model (preset fast, seed 0), one "
        f"model for both channels. Image: CYX, channel 0 = FMD BPAE_B (nuclei), channel 1 = BPAE_G "
        "(F-actin), the same field; each channel scored against its own 50-frame average.",
        "",
        "| result | ch0 PSNR (dB) | ch0 SSIM | ch1 PSNR (dB) | ch1 SSIM |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, values in rows.items():
        extra = f" ({names[label]})" if label in names else ""
        cells = " | ".join(f"{p:.2f} | {s:.3f}" for p, s in values)
        lines.append(f"| {label}{extra} | {cells} |")
    lines += [
        "",
        "Command: `python benchmarks/benchmark_channels.py`. Independent: each channel its own "
        "normalisation and patches, one network (1 channel in, 1 out) shared by both. Joint: one network "
        "with both channels in and out, blind spots drawn per channel.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section("two-channels", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
