"""GainTuning (Mohan et al., "Adaptive denoising via GainTuning", NeurIPS 2021): adapt a trained
network to one test image by tuning a gain per feature channel.

Every learnable convolution's output channel gets a multiplicative gain, initialised at 1; only the
gains are trained (a few hundred numbers against tens of thousands of weights), with a blind-spot
loss on the test image itself, so the adaptation needs no clean image and cannot overfit the way
fine-tuning every weight on one image does. Training keeps the network in evaluation mode (batch
statistics frozen). Held-out blocks of the image are never trained on: their blind-spot loss picks
the best gains, and the original network (all gains 1) is one of the candidates, so an adaptation
that does not help leaves the model as it was.

A gain right after a convolution is a rescaling of its weights and bias, so the adapted network is
folded back into an ordinary network of the same architecture: the adapted model is a normal run
folder that every face (prediction, export, continue training) takes as it is.

The loss target is the noisy image in the network's *output* intensities. For models trained on the
noisy images alone that is the input's. Paired methods (CARE, Noise2Noise) answer in their target's
intensities (a clean acquisition may be ten times brighter): the noisy image is first put on that
scale with the affine relation between the unadapted model's answer and the image, fitted on the
image, so the adaptation changes what the model removes, not the scale it answers in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .config import DenoiseConfig, MaskingConfig
from .errors import ConfigError
from .masking import MaskedBatch
from .methods import BlindSpotMethod

#: The convolution types whose output channels get a gain (the DecoNoising PSF is a fixed tensor, not one).
_TUNED = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)

#: The adaptation's defaults: GainTuning's few parameters take a larger step than full training.
ADAPT_DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-3,
    "max_time": 60.0,
    "patience": 8,
    "patches_per_image": 160,
    "batch_size": 16,
    "val_fraction": 0.2,
}
#: Pixels the output relation of a paired model is fitted on (a central block).
RELATION_PIXELS = 1_000_000


class GainTunedNetwork(nn.Module):
    """A frozen network with a trainable gain on every output channel of every convolution."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        self.gains = nn.ParameterDict()
        self._names: list[str] = []
        self._hooks = []
        for name, module in network.named_modules():
            if isinstance(module, _TUNED):
                key = name.replace(".", "__")
                self.gains[key] = nn.Parameter(torch.ones(module.out_channels, device=module.weight.device))
                self._hooks.append(module.register_forward_hook(self._hook(key)))
                self._names.append(name)
        if not self._names:
            raise ConfigError("GainTuning: the network has no convolution to tune")

    def _hook(self, key: str):
        def scale(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            gain = self.gains[key].to(output.dtype)
            return output * gain.view(1, -1, *([1] * (output.dim() - 2)))

        return scale

    @property
    def parameter_count(self) -> int:
        return sum(gain.numel() for gain in self.gains.values())

    @property
    def phantom(self) -> torch.Tensor | None:
        """DecoNoising's pre-blur output of the last pass (for its positivity penalty)."""
        return getattr(self.network, "phantom", None)

    def train(self, mode: bool = True) -> GainTunedNetwork:
        # The network stays in evaluation mode: its batch statistics are part of what is kept fixed.
        super().train(mode)
        self.network.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def unwrap(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """The network alone with the gains of ``state`` folded into its weights (its hooks removed,
        its parameters trainable again): an ordinary network of the same architecture."""
        folded = self.folded_state(state)
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        self.network.load_state_dict(folded)
        for parameter in self.network.parameters():
            parameter.requires_grad_(True)
        return self.network

    def folded_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The network's own state dict with the gains of ``state`` (this module's state dict)
        multiplied into each convolution's weights and bias."""
        folded = {key[len("network.") :]: value.clone() for key, value in state.items() if key.startswith("network.")}
        for name in self._names:
            gain = state[f"gains.{name.replace('.', '__')}"].to(folded[f"{name}.weight"].dtype)
            module = self.network.get_submodule(name)
            weight = folded[f"{name}.weight"]
            # A transposed convolution stores (in, out, ...): its output channels are the second axis.
            axis = 1 if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
            shape = [1] * weight.dim()
            shape[axis] = -1
            folded[f"{name}.weight"] = weight * gain.view(shape)
            if f"{name}.bias" in folded:
                folded[f"{name}.bias"] = folded[f"{name}.bias"] * gain
        return folded


class GainTuningLoss(BlindSpotMethod):
    """The blind-spot loss on the test image, its target mapped into the network's output intensities."""

    def __init__(self, config: DenoiseConfig, groups: int, scale: np.ndarray, shift: np.ndarray):
        super().__init__(config, groups)
        self.scale = torch.as_tensor(scale, dtype=torch.float32).view(1, -1, *([1] * (3 if config.mode == "3d" else 2)))
        self.shift = torch.as_tensor(shift, dtype=torch.float32).view_as(self.scale)

    def make_batch(self, patches: np.ndarray, generator: torch.Generator) -> MaskedBatch:
        batch = super().make_batch(patches, generator)
        batch.targets = batch.targets * self.scale + self.shift
        return batch


def masking_for(config: DenoiseConfig) -> MaskingConfig:
    """The blind-spot masking of the adaptation: the model's own (a blind-spot model saw exactly such
    inputs while it trained, struct kernel included), else Noise2Self-style random-neighbour masking."""
    if config.masking is not None:
        return config.masking
    return MaskingConfig(mask_percent=5.0, strategy="uniform", neighbourhood_radius=2)


def adaptation_config(
    config: DenoiseConfig,
    *,
    max_time: float | None = None,
    learning_rate: float | None = None,
    seed: int | None = None,
) -> DenoiseConfig:
    """The config of an adaptation run: the model's (its network, data layout, output scale), with
    the adaptation's training settings (a time budget, a constant learning rate, early stopping)."""
    data = config.to_dict()
    data["preset"] = None
    data["data"].update(
        patches_per_image=ADAPT_DEFAULTS["patches_per_image"], val_fraction=ADAPT_DEFAULTS["val_fraction"]
    )
    data["training"].update(
        epochs=10_000, batch_size=ADAPT_DEFAULTS["batch_size"], lr_schedule="constant", early_stopping=True,
        patience=ADAPT_DEFAULTS["patience"],
        learning_rate=ADAPT_DEFAULTS["learning_rate"] if learning_rate is None else learning_rate,
        max_time=ADAPT_DEFAULTS["max_time"] if max_time is None else max_time,
    )  # fmt: skip
    if seed is not None:
        data["training"]["seed"] = seed
    return DenoiseConfig.from_dict(data)


def output_relation(model, block: np.ndarray) -> list[tuple[float, float]]:
    """Per channel, ``(a, b)`` with ``model(x) ≈ a·s + b`` on ``block`` (``(C, Z, Y, X)``, raw), ``s`` the
    signal in the input's intensities: how the model's output intensities relate to its input's.

    The input is regressed on the answer, not the answer on the input: the answer is nearly noise-free
    and the input is not, and a slope fitted across the noise would shrink by Var(s) / (Var(s) + Var(n))."""
    answer = model.predict(block, axes="CZYX")
    relation = []
    for channel in range(block.shape[0]):
        x = block[channel].astype(np.float64).ravel()
        y = answer[channel].astype(np.float64).ravel()
        covariance = float(np.mean((x - x.mean()) * (y - y.mean())))
        a = float(y.var()) / covariance if covariance > 0 else 1.0
        relation.append((a, float(y.mean() - a * x.mean())))
    return relation


def adaptation_patch(config: DenoiseConfig, stacks: list[np.ndarray]) -> DenoiseConfig:
    """``config`` with a patch small enough for the smallest image (``(C, Z, Y, X)``): the network is
    convolutional, so the adaptation may draw smaller patches than it trained on, and a crop of a few
    patches still leaves room beside its held-out blocks. At most half the smallest side, a multiple of
    the U-Net's step, and never below the smallest patch the network takes."""
    step = 2**config.model.depth
    side = min(min(stack.shape[-2:]) for stack in stacks)
    fitting = max((side // 2) // step * step, 4 * step)
    if fitting >= config.data.patch_size:
        return config
    return config.updated({"data.patch_size": fitting})


def gain_tuning_loss(
    config: DenoiseConfig,
    groups: int,
    input_norms: list,
    output_norms: list,
    relation: list[tuple[float, float]] | None = None,
) -> GainTuningLoss:
    """The loss of an adaptation of a network trained with ``config``: targets in the input's
    normalisation, put on the output's scale by ``relation`` (raw ``a·x + b`` per channel, see
    :func:`output_relation`; None: the same scale) and normalised as the output (``raw = value·scale + offset``)."""
    masked = config.model_copy(update={"masking": masking_for(config), "method": "n2v"})
    ins, outs = input_norms[:groups], output_norms[:groups]
    if len(outs) < len(ins):
        outs = outs * len(ins)
    relation = relation or [(1.0, 0.0)]
    if len(relation) < len(ins):
        relation = relation * len(ins)
    # raw target a·(n·s_in + o_in) + b, normalised by the output: (a·(n·s_in + o_in) + b − o_out) / s_out.
    scale = [a * i.scale / o.scale for (a, _b), i, o in zip(relation, ins, outs, strict=False)]
    shift = [(a * i.offset + b - o.offset) / o.scale for (a, b), i, o in zip(relation, ins, outs, strict=False)]
    return GainTuningLoss(masked, groups, np.array(scale, np.float32), np.array(shift, np.float32))
