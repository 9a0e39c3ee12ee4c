"""The U-Net used by every training method, and its receptive field.

Options: depth, base features, up-sampling (nearest / bilinear resize, or transposed convolution),
resize-convolution, blur-pool down-sampling and no top-level skip (both N2V2), batch norm and a
residual output. The receptive field is measured, not guessed, so that tiled prediction can use
the smallest overlap that still reproduces an untiled prediction exactly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool):
        layers: list[nn.Module] = []
        for index in range(2):
            layers.append(nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Module):
    """2x down-sampling: max-pool, or max-blur-pool (max over 2x2 at stride 1, then a blurred stride 2)."""

    def __init__(self, channels: int, blur: bool, probe: bool = False):
        super().__init__()
        self.blur = blur
        # The receptive-field probe swaps max for average pooling: the same support, but gradients
        # reach every input of the window instead of only the maximum.
        self.probe = probe
        if blur:
            taps = torch.tensor([1.0, 2.0, 1.0])
            kernel = (taps[:, None] * taps[None, :]) / 16.0
            self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool2d if self.probe else F.max_pool2d
        if not self.blur:
            return pool(x, 2)
        x = pool(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel.to(x.dtype), stride=2, groups=x.shape[1])


class Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mode: str, resize_conv: bool):
        super().__init__()
        self.mode = mode
        if mode == "transposed":
            self.op: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
            self.out_channels = out_channels
        elif resize_conv:
            self.op = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            self.out_channels = out_channels
        else:
            self.op = nn.Identity()
            self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transposed":
            return self.op(x)
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.op(x)


class UNet(nn.Module):
    """U-Net for denoising: ``in_channels`` (1 in 2D, 3 in 2.5D) to one output channel."""

    def __init__(self, config: ModelConfig, in_channels: int = 1, out_channels: int = 1, probe: bool = False):
        super().__init__()
        self.config = config
        self.in_channels = in_channels
        features = [config.base_features * 2**level for level in range(config.depth + 1)]
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = in_channels
        for level in range(config.depth):
            self.encoders.append(ConvBlock(channels, features[level], config.batch_norm))
            self.downs.append(Down(features[level], config.blur_pool, probe=probe))
            channels = features[level]
        self.bottleneck = ConvBlock(channels, features[config.depth], config.batch_norm)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        channels = features[config.depth]
        for level in reversed(range(config.depth)):
            up = Up(channels, features[level], config.upsampling, config.resize_conv)
            skip = features[level] if self._uses_skip(level) else 0
            self.ups.append(up)
            self.decoders.append(ConvBlock(up.out_channels + skip, features[level], config.batch_norm))
            channels = features[level]
        self.head = nn.Conv2d(channels, out_channels, 1)

    def outputs(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        """The named outputs of one forward pass, stacked as channels (a plain U-Net gives "denoised")."""
        if names != ("denoised",):
            raise ValueError(f"a plain U-Net gives only the denoised output, not {', '.join(names)}")
        return self(x)

    def _uses_skip(self, level: int) -> bool:
        return self.config.skip_connections and (level > 0 or self.config.top_skip)

    @property
    def step(self) -> int:
        """Input sides must be multiples of this."""
        return 2**self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, self.in_channels // 2 : self.in_channels // 2 + 1]
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for level, (up, decoder) in enumerate(zip(self.ups, self.decoders, strict=True)):
            x = up(x)
            depth_level = len(self.ups) - 1 - level
            if self._uses_skip(depth_level):
                x = torch.cat([x, skips[depth_level]], dim=1)
            x = decoder(x)
        out = self.head(x)
        if self.config.residual:
            out = out + centre
        return out


class DeconvUNet(UNet):
    """DecoNoising: the U-Net predicts a phantom (deconvolved) image; its output is the phantom
    blurred by a Gaussian PSF, so the blind-spot loss applies to the re-blurred image.

    ``phantom`` holds the last forward pass's pre-blur output for the positivity penalty.
    """

    def __init__(self, config: ModelConfig, in_channels: int, psf_sigma: float):
        super().__init__(config, in_channels=in_channels)
        self.psf_sigma = float(psf_sigma)
        self.psf_radius = max(1, int(math.ceil(3 * self.psf_sigma)))
        taps = torch.arange(-self.psf_radius, self.psf_radius + 1, dtype=torch.float32)
        profile = torch.exp(-0.5 * (taps / self.psf_sigma) ** 2)
        kernel = profile[:, None] * profile[None, :]
        self.register_buffer("psf", (kernel / kernel.sum())[None, None], persistent=False)
        self.phantom: torch.Tensor | None = None

    def blur(self, phantom: torch.Tensor) -> torch.Tensor:
        # Zero padding would darken the border; reflection keeps the blur local.
        padded = F.pad(phantom, (self.psf_radius,) * 4, mode="reflect")
        return F.conv2d(padded, self.psf.to(phantom.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phantom = super().forward(x)
        self.phantom = phantom
        return self.blur(phantom)

    def outputs(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        """Denoised (the re-blurred phantom) and deconvolved (the phantom) from one pass of the network."""
        phantom = super().forward(x)
        made = {"deconvolved": phantom}
        if "denoised" in names:
            made["denoised"] = self.blur(phantom)
        unknown = [name for name in names if name not in made]
        if unknown:
            raise ValueError(f"a DecoNoising U-Net gives denoised and deconvolved outputs, not {unknown[0]}")
        return torch.cat([made[name] for name in names], dim=1)


def build_model(config: ModelConfig, in_channels: int, psf_sigma: float | None = None) -> UNet:
    if psf_sigma is not None:
        return DeconvUNet(config, in_channels=in_channels, psf_sigma=psf_sigma)
    return UNet(config, in_channels=in_channels)


def prediction_radius(model: UNet) -> int:
    """How far an output pixel of ``model`` sees: the U-Net's receptive field plus any PSF head."""
    return receptive_radius(model.config, model.in_channels) + getattr(model, "psf_radius", 0)


def receptive_radius(config: ModelConfig, in_channels: int = 1) -> int:
    """How far (pixels) an output pixel can see, measured by back-propagation through a probe net."""
    key = config.model_dump_json()
    return _receptive_radius(key, in_channels)


@lru_cache(maxsize=64)
def _receptive_radius(config_json: str, in_channels: int) -> int:
    config = ModelConfig.model_validate_json(config_json).model_copy(update={"base_features": 2, "batch_norm": False})
    probe = UNet(config, in_channels=in_channels, probe=True)
    with torch.no_grad():
        # Positive weights and inputs keep every ReLU open, so the gradient's support is the full
        # receptive field rather than the part a random initialisation happens to use.
        for parameter in probe.parameters():
            parameter.copy_(parameter.abs() + 0.01)
    step = probe.step
    bound = 12 * step + 16  # above the measured radius of every option; doubled if ever reached
    while True:
        radius = _probe_radius(probe, in_channels, bound)
        if radius < bound:
            return radius
        bound *= 2  # pragma: no cover - the first bound suffices for every supported option


def _probe_radius(probe: UNet, in_channels: int, bound: int) -> int:
    step = probe.step
    size = ((2 * bound + 2 * step) // step + 1) * step
    x = torch.rand((1, in_channels, size, size), requires_grad=True)
    # Every output position of one pooling cell in the middle of the grid: pixels at different
    # phases of the pooling grid see slightly different windows, and tiles must cover them all.
    c = (size // 2 // step) * step
    probe(x)[0, 0, c : c + step, c : c + step].sum().backward()
    support = torch.nonzero(x.grad[0].abs().sum(0) > 0)
    low, high = support.min(dim=0).values, support.max(dim=0).values
    return int(max((c - low).max().item(), (high - (c + step - 1)).max().item()))
