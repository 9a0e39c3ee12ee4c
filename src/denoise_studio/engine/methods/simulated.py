"""Simulation-based training (SBD): noise drawn afresh on clean patches for every batch; the clean
patch is the target (every pixel counts, L2 or L1 as the supervised methods)."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DenoiseConfig
from ..masking import MaskedBatch
from ..simulation import add_noise, check_simulation
from .supervised import SupervisedMethod


class SimulatedNoiseMethod(SupervisedMethod):
    """Input: the clean patch (every input plane) with simulated noise; target: the clean centre plane."""

    def __init__(self, config: DenoiseConfig, groups: int = 1):
        super().__init__(config, groups)
        self.needs_target = False
        self.simulation = check_simulation(config.simulation)
        self.offset, self.scale = 0.0, 1.0

    def set_normalization(self, normalizations) -> None:
        """The noise is drawn in raw intensities: patches arrive normalised (one channel per run)."""
        norm = normalizations[0] if isinstance(normalizations, (list, tuple)) else normalizations
        self.offset, self.scale = float(norm.offset), float(norm.scale)

    def make_batch(self, patches: np.ndarray, generator: torch.Generator) -> MaskedBatch:
        clean = torch.from_numpy(patches).float()
        raw = clean * self.scale + self.offset
        noisy = (add_noise(raw, self.simulation, generator) - self.offset) / self.scale
        centre = self.in_channels // 2
        targets = clean[:, centre : centre + 1]
        every_pixel = torch.ones_like(targets, dtype=torch.bool)
        return MaskedBatch(inputs=noisy.contiguous(), targets=targets.contiguous(), loss_mask=every_pixel)
