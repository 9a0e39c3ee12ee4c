"""Noise2Void, N2V2 and structN2V: blind-spot training on noisy data alone."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DenoiseConfig
from ..data import input_channels
from ..masking import MaskedBatch, mask_batch, struct_kernel_array


class BlindSpotMethod:
    """Builds masked batches and the masked-pixel loss for N2V / N2V2 / structN2V."""

    def __init__(self, config: DenoiseConfig, groups: int = 1):
        """``groups``: image channels trained jointly (each a group of 1 or 3 network input channels)."""
        self.config = config
        self.in_channels = input_channels(config.mode)
        self.groups = groups
        self.struct_kernel = struct_kernel_array(config.masking.struct_mask, self.in_channels)
        self.zero_level: float | torch.Tensor = 0.0

    @property
    def masking(self):
        """The blind-spot settings (the validation repeats its blocks with independent masks)."""
        return self.config.masking

    def make_batch(self, patches: np.ndarray, generator: torch.Generator) -> MaskedBatch:
        """Blind spots in every channel group, drawn independently per channel: the noise of one
        channel is independent of the others', so seeing another channel's value at a blind spot
        does not reveal the hidden noise."""
        masking = self.config.masking
        tensor = torch.from_numpy(patches)
        g = self.in_channels
        parts = [
            mask_batch(
                tensor[:, k * g : (k + 1) * g],
                percent=masking.mask_percent,
                strategy=masking.strategy,
                radius=masking.neighbourhood_radius,
                generator=generator,
                struct_kernel=self.struct_kernel,
            )
            for k in range(self.groups)
        ]
        if len(parts) == 1:
            return parts[0]
        return MaskedBatch(
            inputs=torch.cat([part.inputs for part in parts], dim=1),
            targets=torch.cat([part.targets for part in parts], dim=1),
            loss_mask=torch.cat([part.loss_mask for part in parts], dim=1),
        )

    @staticmethod
    def loss(prediction: torch.Tensor, batch: MaskedBatch) -> torch.Tensor:
        """Mean squared error on the blind-spot centres only."""
        mask = batch.loss_mask
        diff = (prediction.float() - batch.targets)[mask]
        return (diff * diff).mean()

    def set_normalization(self, normalizations) -> None:
        """The normalisation of each output channel (one, or one per jointly trained channel)."""
        # Zero intensity in normalised units: the floor of the DecoNoising positivity penalty.
        if not isinstance(normalizations, (list, tuple)):
            normalizations = [normalizations]
        levels = [-norm.offset / norm.scale for norm in normalizations]
        self.zero_level = levels[0] if len(levels) == 1 else torch.tensor(levels)

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | None:
        """DecoNoising: lambda * mean(max(0, -phantom)) in raw intensities (normalised units here)."""
        phantom = getattr(model, "phantom", None)
        if phantom is None or not self.config.deconv.positivity:
            return None
        zero = self.zero_level
        if isinstance(zero, torch.Tensor):  # one level per output channel, broadcast over (Z,) Y, X
            zero = zero.to(phantom.device).view(1, -1, *([1] * (phantom.dim() - 2)))
        below_zero = torch.relu(zero - phantom.float())
        return self.config.deconv.positivity * below_zero.mean()
