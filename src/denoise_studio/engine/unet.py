"""The U-Net used by every training method, and its receptive field.

Options: depth, base features, up-sampling (nearest / bilinear resize, or transposed convolution),
resize-convolution, blur-pool down-sampling and no top-level skip (both N2V2), batch norm and a
residual output. The receptive field is measured, not guessed, so that tiled prediction can use
the smallest overlap that still reproduces an untiled prediction exactly.

``dims=3`` builds the same network from 3D layers for true 3D (volume) mode. Without Z pooling
(``ModelConfig.pool_z`` off, for anisotropic stacks of few, thick slices) every down- and
up-sampling acts on Y and X only, so the network keeps full Z resolution at every level and needs
no Z multiple beyond 1. In 3D the receptive field differs per axis, hence :func:`receptive_radii`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

DIMS = (2, 3)


def _check_dims(dims: int) -> None:
    if dims not in DIMS:
        raise ValueError(f"a U-Net is 2D or 3D (dims 2 or 3), not dims={dims!r}")


def _sampling_factor(dims: int, pool_z: bool) -> int | tuple[int, int, int]:
    """Kernel, stride and scale factor of one down- or up-sampling: 2 in 2D, per axis (Z, Y, X) in 3D."""
    return 2 if dims == 2 else (2 if pool_z else 1, 2, 2)


def centre_channels(in_channels: int, out_channels: int) -> tuple[int, ...]:
    """The input channels a residual U-Net adds to its outputs, one per output channel.

    The input is read as ``out_channels`` groups of ``in_channels // out_channels`` channels, one
    group per output (in 2.5D a group is slices Z-1, Z, Z+1 of one image channel); each output adds
    the middle channel of its group. With one output this is channel ``in_channels // 2``.
    """
    if out_channels < 1 or in_channels < 1 or in_channels % out_channels:
        raise ValueError(
            f"a residual U-Net needs the input channels ({in_channels}) to be a multiple of the output "
            f"channels ({out_channels}): one group of input channels per output"
        )
    group = in_channels // out_channels
    return tuple(group // 2 + index * group for index in range(out_channels))


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, dims: int = 2):
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        layers: list[nn.Module] = []
        for index in range(2):
            layers.append(conv(in_channels if index == 0 else out_channels, out_channels, 3, padding=1))
            if batch_norm:
                layers.append(norm(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Module):
    """2x down-sampling: max-pool, or max-blur-pool (max over 2x2 at stride 1, then a blurred stride 2).

    In 3D the window is 2x2x2, or 1x2x2 without Z pooling (then Z is neither pooled nor blurred).
    """

    def __init__(self, channels: int, blur: bool, probe: bool = False, dims: int = 2, pool_z: bool = True):
        super().__init__()
        self.blur = blur
        self.dims = dims
        self.pool_z = pool_z
        self.window = _sampling_factor(dims, pool_z)
        # The receptive-field probe swaps max for average pooling: the same support, but gradients
        # reach every input of the window instead of only the maximum.
        self.probe = probe
        if blur:
            taps = torch.tensor([1.0, 2.0, 1.0])
            if dims == 2:
                kernel = (taps[:, None] * taps[None, :]) / 16.0
            else:
                z_taps = taps if pool_z else torch.ones(1)
                kernel = z_taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
                kernel = kernel / kernel.sum()
            self.register_buffer("kernel", kernel.expand(channels, 1, *kernel.shape).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 2:
            pool = F.avg_pool2d if self.probe else F.max_pool2d
            if not self.blur:
                return pool(x, 2)
            x = pool(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)
            kernel = self.kernel.to(x.dtype)
            return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, stride=2, groups=x.shape[1])
        pool = F.avg_pool3d if self.probe else F.max_pool3d
        if not self.blur:
            return pool(x, self.window)
        z_pad = 1 if self.pool_z else 0
        x = pool(F.pad(x, (0, 1, 0, 1, 0, z_pad), mode="replicate"), self.window, stride=1)
        padded = F.pad(x, (1, 1, 1, 1, z_pad, z_pad), mode="reflect")
        return F.conv3d(padded, self.kernel.to(x.dtype), stride=self.window, groups=x.shape[1])


class Up(nn.Module):
    """2x up-sampling (1x2x2 in 3D without Z pooling): transposed convolution, or a resize that a
    resize-convolution may follow."""

    def __init__(
        self, in_channels: int, out_channels: int, mode: str, resize_conv: bool, dims: int = 2, pool_z: bool = True
    ):
        super().__init__()
        self.mode = mode
        self.dims = dims
        self.scale = _sampling_factor(dims, pool_z)
        if mode == "transposed":
            transposed = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
            self.op: nn.Module = transposed(in_channels, out_channels, self.scale, stride=self.scale)
            self.out_channels = out_channels
        elif resize_conv:
            self.op = (nn.Conv2d if dims == 2 else nn.Conv3d)(in_channels, out_channels, 3, padding=1)
            self.out_channels = out_channels
        else:
            self.op = nn.Identity()
            self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transposed":
            return self.op(x)
        if self.mode == "bilinear":
            linear = "bilinear" if self.dims == 2 else "trilinear"
            x = F.interpolate(x, scale_factor=self.scale, mode=linear, align_corners=False)
        else:
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.op(x)


class UNet(nn.Module):
    """U-Net for denoising: ``in_channels`` (1 in 2D, 3 in 2.5D) to ``out_channels`` (usually one).

    ``dims=3`` takes ``(B, C, Z, Y, X)`` volumes; input sides must be multiples of :attr:`steps`.
    """

    def __init__(
        self, config: ModelConfig, in_channels: int = 1, out_channels: int = 1, probe: bool = False, dims: int = 2
    ):
        super().__init__()
        _check_dims(dims)
        self.config = config
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dims = dims
        self.residual_channels = centre_channels(in_channels, out_channels) if config.residual else ()
        pool_z = config.pool_z
        features = [config.base_features * 2**level for level in range(config.depth + 1)]
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = in_channels
        for level in range(config.depth):
            self.encoders.append(ConvBlock(channels, features[level], config.batch_norm, dims))
            self.downs.append(Down(features[level], config.blur_pool, probe=probe, dims=dims, pool_z=pool_z))
            channels = features[level]
        self.bottleneck = ConvBlock(channels, features[config.depth], config.batch_norm, dims)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        channels = features[config.depth]
        for level in reversed(range(config.depth)):
            up = Up(channels, features[level], config.upsampling, config.resize_conv, dims=dims, pool_z=pool_z)
            skip = features[level] if self._uses_skip(level) else 0
            self.ups.append(up)
            self.decoders.append(ConvBlock(up.out_channels + skip, features[level], config.batch_norm, dims))
            channels = features[level]
        self.head = (nn.Conv2d if dims == 2 else nn.Conv3d)(channels, out_channels, 1)

    def outputs(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        """The named outputs of one forward pass, stacked as channels (a plain U-Net gives "denoised")."""
        if names != ("denoised",):
            raise ValueError(f"a plain U-Net gives only the denoised output, not {', '.join(names)}")
        return self(x)

    def _uses_skip(self, level: int) -> bool:
        return self.config.skip_connections and (level > 0 or self.config.top_skip)

    @property
    def step(self) -> int:
        """Input sides in Y and X must be multiples of this (in 2D: every side)."""
        return 2**self.config.depth

    @property
    def steps(self) -> tuple[int, ...]:
        """The multiple each input side must be, per spatial axis: ``(Y, X)`` in 2D, ``(Z, Y, X)`` in 3D
        (Z is 1 without Z pooling). Shifts by these keep the network translation-equivariant."""
        if self.dims == 2:
            return (self.step, self.step)
        return (self.step if self.config.pool_z else 1, self.step, self.step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x
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
            out = out + inputs[:, list(self.residual_channels)]
        return out


class DeconvUNet(UNet):
    """DecoNoising: the U-Net predicts a phantom (deconvolved) image; its output is the phantom
    blurred by a Gaussian PSF, so the blind-spot loss applies to the re-blurred image.

    The blur acts on each output channel separately and, in 3D, on each slice (Y and X only): the
    PSF model here is lateral. ``phantom`` holds the last forward pass's pre-blur output for the
    positivity penalty.
    """

    def __init__(self, config: ModelConfig, in_channels: int, psf_sigma: float, out_channels: int = 1, dims: int = 2):
        super().__init__(config, in_channels=in_channels, out_channels=out_channels, dims=dims)
        self.psf_sigma = float(psf_sigma)
        self.psf_radius = max(1, int(math.ceil(3 * self.psf_sigma)))
        taps = torch.arange(-self.psf_radius, self.psf_radius + 1, dtype=torch.float32)
        profile = torch.exp(-0.5 * (taps / self.psf_sigma) ** 2)
        kernel = profile[:, None] * profile[None, :]
        kernel = kernel / kernel.sum()
        # One kernel per output channel for a grouped convolution; a unit Z extent in 3D.
        shape = (out_channels, 1, *kernel.shape) if dims == 2 else (out_channels, 1, 1, *kernel.shape)
        self.register_buffer("psf", kernel.expand(shape).clone(), persistent=False)
        self.phantom: torch.Tensor | None = None

    def blur(self, phantom: torch.Tensor) -> torch.Tensor:
        # Zero padding would darken the border; reflection keeps the blur local.
        r = self.psf_radius
        psf = self.psf.to(phantom.dtype)
        if self.dims == 2:
            return F.conv2d(F.pad(phantom, (r, r, r, r), mode="reflect"), psf, groups=self.out_channels)
        return F.conv3d(F.pad(phantom, (r, r, r, r, 0, 0), mode="reflect"), psf, groups=self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phantom = super().forward(x)
        self.phantom = phantom
        return self.blur(phantom)

    def outputs(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        """Denoised (the re-blurred phantom) and deconvolved (the phantom) from one pass of the network,
        each ``out_channels`` channels, stacked in the order of ``names``."""
        phantom = super().forward(x)
        made = {"deconvolved": phantom}
        if "denoised" in names:
            made["denoised"] = self.blur(phantom)
        unknown = [name for name in names if name not in made]
        if unknown:
            raise ValueError(f"a DecoNoising U-Net gives denoised and deconvolved outputs, not {unknown[0]}")
        return torch.cat([made[name] for name in names], dim=1)


def build_model(
    config: ModelConfig, in_channels: int, psf_sigma: float | None = None, out_channels: int = 1, dims: int = 2
) -> UNet:
    if psf_sigma is not None:
        return DeconvUNet(config, in_channels=in_channels, psf_sigma=psf_sigma, out_channels=out_channels, dims=dims)
    return UNet(config, in_channels=in_channels, out_channels=out_channels, dims=dims)


def prediction_radius(model: UNet) -> int:
    """How far an output pixel of ``model`` sees: the U-Net's receptive field plus any PSF head
    (in 3D the largest of the per-axis :func:`prediction_radii`)."""
    return max(prediction_radii(model))


def prediction_radii(model: UNet) -> tuple[int, ...]:
    """:func:`receptive_radii` of ``model`` plus its PSF radius on Y and X (the PSF is lateral)."""
    radii = receptive_radii(model.config, model.in_channels, model.dims)
    psf = getattr(model, "psf_radius", 0)
    return (*radii[:-2], *(radius + psf for radius in radii[-2:]))


def receptive_radius(config: ModelConfig, in_channels: int = 1) -> int:
    """How far (pixels) an output pixel of the 2D network can see, measured by back-propagation
    through a probe net."""
    return _receptive_radius(_probe_key(config, dims=2), in_channels)


#: The deepest U-Net the config allows (ModelConfig.depth).
MAX_DEPTH = 5


def field_of_view(config: ModelConfig, in_channels: int = 1) -> int:
    """The side (pixels) of the square an output pixel of the 2D network sees."""
    return 2 * receptive_radius(config, in_channels) + 1


def depth_for_field_of_view(config: ModelConfig, pixels: int, in_channels: int = 1) -> int:
    """The smallest depth at which the network (otherwise ``config``) sees at least ``pixels`` across;
    MAX_DEPTH when none does."""
    for depth in range(1, MAX_DEPTH + 1):
        if field_of_view(config.model_copy(update={"depth": depth}), in_channels) >= pixels:
            return depth
    return MAX_DEPTH


def receptive_radii(config: ModelConfig, in_channels: int = 1, dims: int = 2) -> tuple[int, ...]:
    """How far an output pixel can see along each spatial axis: ``(Y, X)`` in 2D, ``(Z, Y, X)`` in 3D.

    In 3D with Z pooling the network is isotropic and the three radii are equal (and equal to the
    2D radius); without Z pooling the Z radius is that of the convolutions alone, much smaller.
    """
    _check_dims(dims)
    if dims == 2:
        radius = receptive_radius(config, in_channels)
        return (radius, radius)
    return _receptive_radii_3d(_probe_key(config, dims=3), in_channels)


def _probe_key(config: ModelConfig, dims: int) -> str:
    """The cache key of a probe: only the options that shape the receptive field (a valid config:
    the probe's own width is set in :func:`_positive_probe`)."""
    update: dict = {"base_features": 4, "batch_norm": False}
    if dims == 2:
        update["pool_z"] = True  # a 2D network ignores it
    return config.model_copy(update=update).model_dump_json()


def _positive_probe(config_json: str, in_channels: int, dims: int) -> UNet:
    # Two features per level: the support does not depend on the width, the cost does.
    config = ModelConfig.model_validate_json(config_json).model_copy(update={"base_features": 2})
    probe = UNet(config, in_channels=in_channels, probe=True, dims=dims)
    with torch.no_grad():
        # Positive weights and inputs keep every ReLU open, so the gradient's support is the full
        # receptive field rather than the part a random initialisation happens to use.
        for parameter in probe.parameters():
            parameter.copy_(parameter.abs() + 0.01)
    return probe


@lru_cache(maxsize=64)
def _receptive_radius(config_json: str, in_channels: int) -> int:
    # Thin probes along Y and along X (see _probe_axis): a square probe of a depth-5 network took
    # seconds, and the Method dock asks for the field of view as the user picks the depth.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        probe = _positive_probe(config_json, in_channels, dims=2)
        return max(_axis_radius(probe, in_channels, axis) for axis in (0, 1))


@lru_cache(maxsize=64)
def _receptive_radii_3d(config_json: str, in_channels: int) -> tuple[int, int, int]:
    # The probe must not consume the caller's random numbers (a seeded training run would change).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        probe = _positive_probe(config_json, in_channels, dims=3)
        # Y and X pass through identical layers, and so does Z with Z pooling: one lateral probe
        # serves for all three then, and Z needs its own only without Z pooling.
        lateral = _axis_radius(probe, in_channels, axis=1)
        axial = _axis_radius(probe, in_channels, axis=0) if not probe.config.pool_z else lateral
        return (axial, lateral, lateral)


def _axis_radius(probe: UNet, in_channels: int, axis: int) -> int:
    bound = 12 * probe.steps[axis] + 16  # above every supported option's radius; Z without pooling needs far less
    while True:
        radius = _probe_axis(probe, in_channels, axis, bound)
        if radius < bound:
            return radius
        bound *= 2  # pragma: no cover - the first bound suffices for every supported option


def _probe_axis(probe: UNet, in_channels: int, axis: int, bound: int) -> int:
    """The receptive radius along one axis, from a probe that is long on that axis and one pooling
    cell thin on the others (2D or 3D).

    Every layer acts on each axis independently (its support is a box, pooling and up-sampling map
    each coordinate on its own, paddings only remap coordinates within an axis), and every path of
    the network contains the identity offset on each axis. The support along the long axis is
    therefore the same as in a probe that is large on every axis, at a few thousandth of its memory.
    """
    steps = probe.steps
    step = steps[axis]
    size = ((2 * bound + 2 * step) // step + 1) * step
    shape = list(steps)
    shape[axis] = size
    x = torch.rand((1, in_channels, *shape), requires_grad=True)
    # Every output position of one pooling cell in the middle (the thin axes are exactly one cell):
    # pixels at different phases of the pooling grid see slightly different windows, and tiles must
    # cover them all.
    c = (size // 2 // step) * step
    cell: list[slice] = [slice(None)] * len(steps)
    cell[axis] = slice(c, c + step)
    probe(x)[(0, 0, *cell)].sum().backward()
    others = tuple(1 + other for other in range(len(steps)) if other != axis)
    support = torch.nonzero(x.grad[0].abs().sum(dim=(0, *others)) > 0)[:, 0]
    low, high = int(support.min()), int(support.max())
    return max(c - low, high - (c + step - 1))
