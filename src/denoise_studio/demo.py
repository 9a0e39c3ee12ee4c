"""The main job on bundled data: train on a real noisy confocal image, denoise it, show the result.

Writes ``denoised.tif``, ``side_by_side.png`` (noisy | denoised | 50-frame average) and the trained
model into the output folder, and prints PSNR/SSIM against the reference.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .engine.config import make_config
from .engine.figures import side_by_side, write_png
from .engine.io import load_image, write_tiff
from .engine.metrics import psnr, ssim
from .engine.model_files import save_model
from .engine.prediction import Predictor
from .engine.training import train
from .samples import sample_path

NOISY = "fmd_fish_confocal_noisy.tif"
REFERENCE = "fmd_fish_confocal_avg50.tif"


def run_demo(out: Path, max_time: float = 60.0, force: bool = False) -> dict:
    if out.exists() and any(out.iterdir()):
        if not force:
            from .cli import UsageError

            raise UsageError(f"{out} already exists; pass --force to overwrite it or --out to choose another")
        shutil.rmtree(out)
    noisy = load_image(sample_path(NOISY))[0]
    reference = load_image(sample_path(REFERENCE))[0]
    from .cli import ProgressPrinter

    config = make_config("n2v", "2d", "fast", {"max_time": max_time})
    printer = ProgressPrinter()
    result = train(config, noisy, callback=printer)
    save_model(out / "model", config, result.normalization, result.model.state_dict(), result.summary())
    denoised = Predictor(result.model, result.normalization, config.mode).predict(noisy, callback=printer)
    write_tiff(out / "denoised.tif", denoised)
    figures = {
        "psnr_noisy": psnr(noisy, reference),
        "psnr_denoised": psnr(denoised, reference),
        "ssim_noisy": ssim(noisy, reference),
        "ssim_denoised": ssim(denoised, reference),
    }
    panels = [
        (f"noisy {figures['psnr_noisy']:.2f} dB", noisy),
        (f"denoised {figures['psnr_denoised']:.2f} dB", denoised),
        ("reference (avg of 50)", reference),
    ]
    write_png(out / "side_by_side.png", side_by_side(panels, reference))
    print(
        f"PSNR {figures['psnr_noisy']:.2f} dB -> {figures['psnr_denoised']:.2f} dB, "
        f"SSIM {figures['ssim_noisy']:.3f} -> {figures['ssim_denoised']:.3f} "
        f"(against the 50-frame average; {result.summary()['steps']} steps in {result.elapsed:.0f} s)"
    )
    print(f"denoised image: {out / 'denoised.tif'}")
    print(f"side-by-side:   {out / 'side_by_side.png'}")
    print(f"model:          {out / 'model'}")
    return figures
