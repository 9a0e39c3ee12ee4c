"""Simulation-based training (SBD, after Mohan et al., "Deep denoising for scientific discovery"): the
noise of the images to denoise, drawn afresh on clean images for every batch.

The noise is the Poisson–Gaussian model of :mod:`.noise_model` in the intensity units of the images
to denoise: ``x = s + gain · (Poisson(λ) − λ) + N(0, read_variance)`` with ``λ = max(s − offset, 0) / gain``
(shot noise above the dark level, zero-mean everywhere), plus, for scanned (EM) images, an offset
shared by each row (``row_sigma``). Clean images from another sample
are first put on the target's scale: their 2nd–98th percentile range is mapped onto the target's
signal range (``signal_low``–``signal_high``, the ends of the noise model's measured bins), so the
simulated images have the target's intensities and signal-to-noise ratio, and the noise is drawn
where the noise model was measured (offset and read noise are not separately identifiable from
data alone, so the noise model is trusted only inside its measured range).

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

#: The percentiles of a clean image mapped onto the target's signal range: the means of the first and
#: last of the noise model's 24 quantile bins sit near them.
CLEAN_PERCENTILES = (2.0, 98.0)


def check_simulation(config: SimulationConfig | None) -> SimulationConfig:
    """The simulation settings of an SBD run, refused (naming the fields) when they hold no noise model."""
    if config is None or not config.ready:
        message = "SBD needs a noise model: set simulation.gain and simulation.read_variance (not both 0)"
        raise ConfigError(message, [("simulation.gain", message), ("simulation.read_variance", message)])
    return config


def add_noise(raw: torch.Tensor, config: SimulationConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """``raw`` clean intensities (any shape whose last two axes are Y, X) with simulated noise."""
    noisy = raw.clone()
    if config.gain:
        # Zero-mean shot noise: below the dark level there is none, and the mean stays the clean value
        # (a clamp to the dark level would teach the network a biased background).
        photons = (raw - config.offset).clamp(min=0.0) / config.gain
        noisy = noisy + config.gain * (torch.poisson(photons, generator=generator) - photons)
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
    """A clean ``(C, Z, Y, X)`` image on the target's intensity scale (see ``signal_low``)."""
    clean = np.asarray(clean, dtype=np.float32)
    if config.signal_range is None:
        return clean
    low, high = (float(v) for v in np.percentile(clean, CLEAN_PERCENTILES))
    if not high > low:
        raise InputError(f"{name}: has no intensity range to map (its 2nd and 98th percentiles are both {low:g})")
    target_low, target_high = config.signal_range
    return (target_low + (clean - low) * ((target_high - target_low) / (high - low))).astype(np.float32)


def signal_range(noise_model: NoiseModel) -> tuple[float, float] | None:
    """The signal range of the image a noise model was measured on: the means of its lowest and highest
    intensity bins (quantile bins of the denoised intensity), or None without bins."""
    bins = noise_model.bins
    if bins is None or len(bins.signal) < 2:
        return None
    return float(bins.signal[0]), float(bins.signal[-1])


def simulation_settings(
    noise_model: NoiseModel, signal: tuple[float, float] | None = None, source: str = ""
) -> dict[str, Any]:
    """The ``simulation.*`` config values for a noise model (``signal`` range default: its image's)."""
    signal = signal or signal_range(noise_model)
    return {
        "simulation.gain": noise_model.gain,
        "simulation.offset": noise_model.offset,
        "simulation.read_variance": noise_model.read_variance,
        "simulation.row_sigma": round(math.sqrt(noise_model.row_variance), 6),
        "simulation.signal_low": None if signal is None else signal[0],
        "simulation.signal_high": None if signal is None else signal[1],
        "simulation.noise_source": source,
    }


def simulation_noise_model(config: SimulationConfig) -> NoiseModel:
    """The noise model a simulation draws from (kept with the trained model, as its noise model)."""
    return NoiseModel(
        config.gain or 0.0, config.offset, config.read_variance or 0.0, source="given",
        row_variance=config.row_sigma**2,
    )  # fmt: skip


def complete_simulation(config, settings: dict[str, Any]):
    """``config`` (an SBD DenoiseConfig) with the ``simulation.*`` values of ``settings`` filled in
    where the user left them unset (gain and read variance empty, no scan lines, no scale, no source):
    what the user typed wins over what was fitted."""
    current = config.simulation
    unset = {
        "gain": current.gain is None,
        # The dark level belongs to the fitted gain (the curve is gain·(s − offset) + read).
        "offset": current.gain is None,
        "read_variance": current.read_variance is None,
        "row_sigma": current.row_sigma == 0.0,  # 0: none typed; the noise model's, if it has scan lines
        "signal_low": current.signal_range is None,
        "signal_high": current.signal_range is None,
        "noise_source": not current.noise_source,
    }
    filled = {key: value for key, value in settings.items() if unset.get(key.split(".", 1)[-1], False)}
    return config.updated(filled) if filled else config
