"""2D vs 2.5D vs 3D on a volume with ground truth, same training budget.

No real volumetric stack with ground truth is in ../shared/data (SOURCES.md), so the volume is
synthetic, made from a real image: the FMD fish 50-frame average, cropped to 256 x 256, is swept
through 32 slices (a sub-pixel shift of 0.6 px and a slow change of brightness per slice, like an
axially oversampled stack, so that neighbouring slices share structure), then every voxel gets
independent Poisson-Gaussian noise of about the real frame's level. Each mode trains N2V for the
same wall-time budget through the one run API; PSNR and SSIM are over the whole volume.

    python benchmarks/benchmark_modes.py            # writes its section of docs/benchmarks.md
    python benchmarks/benchmark_modes.py --quick    # 20 s per model, prints only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import denoise_studio as ds
from denoise_studio.engine.filters import apply_filter
from denoise_studio.engine.io import load_image
from denoise_studio.engine.metrics import psnr, ssim
from denoise_studio.engine.registry import mode_label

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

FMD = Path(__file__).resolve().parents[2] / "shared" / "data" / "paired" / "fmd_confocal"
SLICES, SIDE = 32, 256


def make_volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = load_image(FMD / "fish_gt_avg50.tif")[0].astype(np.float32)[128 : 128 + SIDE + 32, 128 : 128 + SIDE + 32]
    clean = np.empty((SLICES, SIDE, SIDE), np.float32)
    for z in range(SLICES):
        shifted = ndimage.shift(gt, (0.6 * z, 0.3 * z), order=3, mode="reflect")[:SIDE, :SIDE]
        clean[z] = shifted * (0.8 + 0.4 * np.sin(np.pi * z / SLICES))
    clean = np.clip(clean, 0, None)
    gain = 2.0  # photons per grey level: about the real confocal frame's noise
    noisy = rng.poisson(clean * gain) / gain + rng.normal(0, 2.0, clean.shape)
    return clean, noisy.astype(np.float32)


def volume_scores(image: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    data_range = float(clean.max() - clean.min())
    return psnr(image, clean, data_range=data_range), float(
        np.mean([ssim(image[z], clean[z], data_range=data_range) for z in range(len(clean))])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--budget", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not FMD.exists():
        print(f"skipped: {FMD} is absent (the real FMD data lives in ../shared/data)")
        return 0
    budget = 20.0 if args.quick else args.budget
    clean, noisy = make_volume()
    rows = [("noisy", *volume_scores(noisy, clean), "")]
    filters = {f"{name} {size:g}": apply_filter(noisy, name, size) for name, size in
               (("gaussian", 1.0), ("gaussian", 1.5), ("median", 3), ("box3d", 3))}  # fmt: skip
    best = max(filters, key=lambda key: volume_scores(filters[key], clean)[0])
    rows.append((f"best classical filter ({best})", *volume_scores(filters[best], clean), ""))
    settings = {
        "2d": {},
        "2.5d": {},
        "3d": {"patch_size": 32, "patch_size_z": 8, "patches_per_image": 64, "batch_size": 4},
    }
    for mode, extra in settings.items():
        config = ds.make_config("n2v", mode, "fast", max_time=budget, epochs=10_000, seed=0, **extra)
        start = time.perf_counter()
        run = ds.train(noisy, config)
        elapsed = time.perf_counter() - start
        denoised = run.model.predict(noisy)
        steps = run.summary.get("steps", 0)
        rows.append((f"N2V {mode_label(mode)}", *volume_scores(denoised, clean), f"{steps} steps, {elapsed:.0f} s"))
        print(rows[-1], flush=True)
    lines = [
        "## 2D vs 2.5D vs 3D",
        "",
        f"Machine: {machine()}. Volume: **synthetic from a real image** ({SLICES} x {SIDE} x {SIDE}: the FMD fish "
        "50-frame average swept through the slices with a 0.6 px shift and a slow brightness change per slice, "
        "independent Poisson-Gaussian noise per voxel); no real volume with ground truth is available here. "
        f"N2V, preset fast, {budget:g} s of training per mode (3D: patches 8 x 32 x 32).",
        "",
        "| result | PSNR (dB) | SSIM (mean over slices) | training |",
        "|---|---:|---:|---|",
        *[f"| {name} | {p:.2f} | {s:.3f} | {extra} |" for name, p, s, extra in rows],
        "",
        "Command: `python benchmarks/benchmark_modes.py`.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section("modes-2d-2p5d-3d", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
