"""Noise2Void, N2V2 and structN2V: blind-spot training on noisy data alone."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DenoiseConfig
from ..data import input_channels
from ..masking import MaskedBatch, mask_batch, struct_kernel_array


class BlindSpotMethod:
    """Builds masked batches and the masked-pixel loss for N2V / N2V2 / structN2V."""

    def __init__(self, config: DenoiseConfig):
        self.config = config
        self.in_channels = input_channels(config.mode)
        self.struct_kernel = struct_kernel_array(config.masking.struct_mask, self.in_channels)
        self.zero_level = 0.0

    def make_batch(self, patches: np.ndarray, generator: torch.Generator) -> MaskedBatch:
        masking = self.config.masking
        return mask_batch(
            torch.from_numpy(patches),
            percent=masking.mask_percent,
            strategy=masking.strategy,
            radius=masking.neighbourhood_radius,
            generator=generator,
            struct_kernel=self.struct_kernel,
        )

    @staticmethod
    def loss(prediction: torch.Tensor, batch: MaskedBatch) -> torch.Tensor:
        """Mean squared error on the blind-spot centres only."""
        mask = batch.loss_mask
        diff = (prediction.float() - batch.targets)[mask]
        return (diff * diff).mean()

    def set_normalization(self, normalization) -> None:
        # Zero intensity in normalised units: the floor of the DecoNoising positivity penalty.
        self.zero_level = -normalization.offset / normalization.scale

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | None:
        """DecoNoising: lambda * mean(max(0, -phantom)) in raw intensities (normalised units here)."""
        phantom = getattr(model, "phantom", None)
        if phantom is None or not self.config.deconv.positivity:
            return None
        below_zero = torch.relu(self.zero_level - phantom.float())
        return self.config.deconv.positivity * below_zero.mean()
