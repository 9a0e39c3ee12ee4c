"""Experiment (not kept in the engine): does a Gaussian posterior beat the plain N2V output?

A Fast-recipe N2V network gets a second output channel, the log of the total variance of a masked
pixel given its neighbourhood (trained by its likelihood, the mean detached so that the mean channel
trains exactly as plain N2V). The prior variance is that total minus the noise model's variance; the
posterior mean combines the network's mean with the observed pixel. Compared with the plain output,
with a constant blend, and with a J-invariant mean (16 masked passes: each pixel predicted while it
is hidden), on one shared FMD image.

    python benchmarks/posterior_experiment.py fish 40      # image name, training seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import convolve

from denoise_studio.engine import training as training_module
from denoise_studio.engine.config import make_config
from denoise_studio.engine.data import normalize_channels
from denoise_studio.engine.io import load_image
from denoise_studio.engine.methods.n2v import BlindSpotMethod
from denoise_studio.engine.metrics import psnr
from denoise_studio.engine.noise_model import fit_from_prediction

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "paired" / "fmd_confocal"


class MeanAndVariance(BlindSpotMethod):
    """Channel 0: the mean (MSE on masked pixels); channel 1: log total variance (Gaussian likelihood)."""

    @staticmethod
    def loss(prediction, batch):
        mask = batch.loss_mask[:, 0]
        values = prediction.float()
        mean, log_variance = values[:, 0][mask], values[:, 1][mask]
        observed = batch.targets[:, 0][mask]
        mse = ((mean - observed) ** 2).mean()
        likelihood = 0.5 * (log_variance + (observed - mean.detach()) ** 2 * torch.exp(-log_variance)).mean()
        return mse + 0.1 * likelihood


def forward(model, image: np.ndarray) -> np.ndarray:
    height, width = image.shape
    padded = np.pad(image, ((0, -height % 4), (0, -width % 4)), "reflect")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.eval()(torch.from_numpy(padded.astype(np.float32))[None, None]).float()[0].numpy()
    return out[:, :height, :width]


def main(name: str, seconds: float) -> None:
    noisy = np.squeeze(load_image(DATA / f"{name}_noisy.tif")).astype(np.float32)
    truth = np.squeeze(load_image(DATA / f"{name}_gt_avg50.tif")).astype(np.float32)
    # The network gets two outputs (mean, log variance).
    training_module.network_channels = lambda mode, channels=1, joint=False: (1, 2)
    config = make_config("n2v", "2d", preset="fast")
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"max_time": seconds, "seed": 1})}
    )
    result = training_module.Trainer(config, method=MeanAndVariance(config)).fit(noisy[None])
    norm = result.normalization
    x = normalize_channels(noisy[None, None], [norm])[0, 0]
    mean, total = forward(result.model, x)
    total = np.exp(total)

    def raw(v):
        return v * norm.scale + norm.offset

    noise = fit_from_prediction(noisy, raw(mean)).variance(raw(mean)) / norm.scale**2
    prior = np.maximum(total - noise, 0)
    posterior = (noise * mean + prior * x) / (noise + prior + 1e-12)
    print(f"{name}: {result.steps} steps; noisy {psnr(noisy, truth):.2f} dB")
    print(f"  plain N2V output        {psnr(raw(mean), truth):.2f}")
    weight_on_pixel = float(np.mean(prior / (prior + noise)))
    print(f"  Gaussian posterior      {psnr(raw(posterior), truth):.2f} (weight on the pixel {weight_on_pixel:.3f})")
    for weight in (0.02, 0.05, 0.1):
        print(f"  constant blend w={weight:<4}   {psnr(raw((1 - weight) * mean + weight * x), truth):.2f}")
    # J-invariant: each pixel predicted while hidden (4x4 grid, replaced by its 8 neighbours' mean).
    kernel = np.ones((3, 3), np.float32)
    kernel[1, 1] = 0
    neighbours = convolve(x, kernel / 8, mode="reflect")
    hidden_mean, hidden_total = np.zeros_like(x), np.zeros_like(x)
    for dy in range(4):
        for dx in range(4):
            masked = x.copy()
            masked[dy::4, dx::4] = neighbours[dy::4, dx::4]
            out = forward(result.model, masked)
            hidden_mean[dy::4, dx::4] = out[0][dy::4, dx::4]
            hidden_total[dy::4, dx::4] = np.exp(out[1][dy::4, dx::4])
    prior = np.maximum(hidden_total - noise, 0)
    posterior = (noise * hidden_mean + prior * x) / (noise + prior + 1e-12)
    print(f"  J-invariant mean        {psnr(raw(hidden_mean), truth):.2f} (16 passes)")
    print(f"  J-invariant posterior   {psnr(raw(posterior), truth):.2f}")
    for weight in (0.05, 0.1, 0.15):
        print(f"  J-invariant blend w={weight:<4} {psnr(raw((1 - weight) * hidden_mean + weight * x), truth):.2f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fish", float(sys.argv[2]) if len(sys.argv) > 2 else 40.0)
