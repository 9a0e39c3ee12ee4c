"""The main job on bundled data: train on a real noisy confocal image, denoise it, show the result.

Writes ``denoised.tif``, ``side_by_side.png`` (noisy | denoised | 50-frame average) and the trained
model into the output folder, and prints PSNR/SSIM against the reference. Uses the public API only.
"""

from __future__ import annotations

from pathlib import Path

from . import api
from .engine.events import ProgressCallback
from .engine.figures import side_by_side, write_png
from .engine.io import load_image, write_tiff
from .engine.metrics import psnr, ssim
from .samples import sample_path

NOISY = "fmd_fish_confocal_noisy.tif"
REFERENCE = "fmd_fish_confocal_avg50.tif"


def run_demo(out: Path, max_time: float = 60.0, callback: ProgressCallback | None = None) -> dict:
    """Train for ``max_time`` seconds on the bundled fish image and write the results into ``out``
    (an earlier demo's files there are replaced)."""
    noisy = load_image(sample_path(NOISY))[0]
    reference = load_image(sample_path(REFERENCE))[0]
    config = api.make_config("n2v", "2d", "fast", max_time=max_time)
    run = api.train(noisy, config, run_dir=out / "model", overwrite=True, callback=callback)
    if run.model is None:
        raise RuntimeError(run.message)
    denoised = run.model.predict(noisy, callback=callback)
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
    summary = run.summary
    print(
        f"PSNR {figures['psnr_noisy']:.2f} dB -> {figures['psnr_denoised']:.2f} dB, "
        f"SSIM {figures['ssim_noisy']:.3f} -> {figures['ssim_denoised']:.3f} "
        f"(against the 50-frame average; {summary['steps']} steps in {summary['elapsed_s']:.0f} s)"
    )
    print(f"denoised image: {out / 'denoised.tif'}")
    print(f"side-by-side:   {out / 'side_by_side.png'}")
    print(f"model:          {out / 'model'}")
    return figures
