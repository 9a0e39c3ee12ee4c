"""Training from pairs: Noise2Noise (two noisy acquisitions), CARE (noisy -> clean, or a filter-made
target) and the autoencoder (noisy -> noisy through a bottleneck without skip connections).

Every pixel contributes to the loss, unlike blind-spot training.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import DenoiseConfig
from ..data import input_channels
from ..masking import MaskedBatch


class SupervisedMethod:
    """Splits a patch batch into input channels and the paired target; L2 or L1 on every pixel."""

    struct_kernel = None

    def __init__(self, config: DenoiseConfig, groups: int = 1):
        """``groups``: image channels trained jointly (each a group of 1 or 3 network input channels)."""
        self.config = config
        self.in_channels = input_channels(config.mode)
        self.groups = groups
        self.needs_target = config.method != "autoencoder"

    def make_batch(self, patches: np.ndarray, generator: torch.Generator) -> MaskedBatch:
        tensor = torch.from_numpy(patches).float()
        width = self.in_channels * self.groups
        inputs = tensor[:, :width]
        if self.needs_target:
            targets = tensor[:, width : width + self.groups]
        else:
            centres = [k * self.in_channels + self.in_channels // 2 for k in range(self.groups)]
            targets = inputs[:, centres]
        every_pixel = torch.ones_like(targets, dtype=torch.bool)
        return MaskedBatch(inputs=inputs.contiguous(), targets=targets.contiguous(), loss_mask=every_pixel)

    def loss(self, prediction: torch.Tensor, batch: MaskedBatch) -> torch.Tensor:
        diff = prediction.float() - batch.targets
        if self.config.supervised.loss == "l1":
            return diff.abs().mean()
        return (diff * diff).mean()

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | None:
        return None
