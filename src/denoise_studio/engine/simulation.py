"""Simulation-based training (SBD, after Mohan et al., "Deep denoising for scientific discovery"): the
noise of the images to denoise, drawn afresh on clean images for every batch.

The noise is the Poisson–Gaussian model of :mod:`.noise_model` in the intensity units of the images
to denoise: ``x = offset + gain · Poisson((s − offset) / gain) + N(0, read_variance)``, plus, for
scanned (EM) images, an offset shared by each row (``row_sigma``). Clean images from another sample
are first put on the target's scale (``signal_mean``): their mean signal above the dark level becomes
the target's, so the simulated images have the target's signal-to-noise ratio.

Where the noise model comes from: a trained model's (measured on its training image against its
result, the better estimate), or fitted on the noisy image alone (:func:`.noise_model.fit_from_noisy`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .config import SimulationConfig
from .errors import ConfigError, InputError
from .noise_model import NoiseModel


def check_simulation(config: SimulationConfig | None) -> SimulationConfig:
    """The simulation settings of an SBD run, refused (naming the fields) when they hold no noise model."""
    if config is None or not config.ready:
        message = "SBD needs a noise model: set simulation.gain and simulation.read_variance (not both 0)"
        raise ConfigError(message, [("simulation.gain", message), ("simulation.read_variance", message)])
    return config


def add_noise(raw: torch.Tensor, config: SimulationConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """``raw`` clean intensities (any shape whose last two axes are Y, X) with simulated noise."""
    signal = (raw - config.offset).clamp(min=0.0)
    noisy = torch.full_like(raw, config.offset)
    if config.gain:
        noisy = noisy + config.gain * torch.poisson(signal / config.gain, generator=generator)
    else:
        noisy = noisy + signal
    if config.read_variance:
        noisy = noisy + math.sqrt(config.read_variance) * torch.randn(raw.shape, generator=generator)
    if config.row_sigma:
        rows = (*raw.shape[:-1], 1)  # one offset per row of every plane, the same along X
        noisy = noisy + config.row_sigma * torch.randn(rows, generator=generator)
    return noisy


def simulate(raw: np.ndarray, config: SimulationConfig, seed: int = 0) -> np.ndarray:
    """A noisy version of the clean ``raw`` array (numpy in, numpy out)."""
    generator = torch.Generator().manual_seed(seed)
    return add_noise(torch.from_numpy(np.asarray(raw, dtype=np.float32)), config, generator).numpy()


def on_target_scale(clean: np.ndarray, config: SimulationConfig, name: str = "clean image") -> np.ndarray:
    """A clean ``(C, Z, Y, X)`` image on the target's intensity scale (see ``signal_mean``)."""
    clean = np.asarray(clean, dtype=np.float32)
    if config.signal_mean is None:
        return clean
    mean = float(clean.mean())
    if not mean > 0:
        raise InputError(f"{name}: its mean intensity is {mean:g}; SBD scales clean images by their mean signal")
    return (config.offset + clean * (config.signal_mean / mean)).astype(np.float32)


def mean_signal(noise_model: NoiseModel) -> float | None:
    """The mean signal above the dark level of the image a noise model was measured on (its bins are
    quantiles of the denoised intensity), or None without bins."""
    bins = noise_model.bins
    if bins is None or not bins.counts or sum(bins.counts) == 0:
        return None
    mean = float(np.average(np.asarray(bins.signal), weights=np.asarray(bins.counts, dtype=np.float64)))
    return max(mean - noise_model.offset, 1e-6)


def row_sigma(noise_model: NoiseModel, signal: float | None) -> float:
    """Scan-line noise in a measured noise model: row offsets correlate the noise along X at every
    lag alike, so the correlation at the kernel's farthest X lag is their share of the variance."""
    kernel = noise_model.correlation_kernel
    if kernel.shape[0] < 3:
        return 0.0
    centre = kernel.shape[0] // 2
    share = max(float(kernel[centre, -1]), 0.0)
    level = noise_model.offset + (signal or 0.0)
    return math.sqrt(share * float(noise_model.variance(level)))


def simulation_settings(noise_model: NoiseModel, signal_mean: float | None = None, source: str = "") -> dict[str, Any]:
    """The ``simulation.*`` config values for a noise model (``signal_mean`` default: its image's)."""
    if signal_mean is None:
        signal_mean = mean_signal(noise_model)
    return {
        "simulation.gain": noise_model.gain,
        "simulation.offset": noise_model.offset,
        "simulation.read_variance": noise_model.read_variance,
        "simulation.row_sigma": round(row_sigma(noise_model, signal_mean), 6),
        "simulation.signal_mean": signal_mean,
        "simulation.noise_source": source,
    }


def simulation_noise_model(config: SimulationConfig) -> NoiseModel:
    """The noise model a simulation draws from (kept with the trained model, as its noise model)."""
    return NoiseModel(config.gain or 0.0, config.offset, config.read_variance or 0.0, source="given")
