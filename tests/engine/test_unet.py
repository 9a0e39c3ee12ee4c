"""The U-Net: output shapes for every option, the residual output, and the measured receptive field."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from denoise_studio.engine.config import ModelConfig
from denoise_studio.engine.unet import UNet, receptive_radius

UPSAMPLING = ("nearest", "bilinear", "transposed")
#: (blur_pool, top_skip): the plain U-Net and the N2V2 variant.
VARIANTS = {"plain": (False, True), "n2v2": (True, False)}


def model_config(depth=2, upsampling="nearest", resize_conv=True, variant="plain", **extra) -> ModelConfig:
    blur_pool, top_skip = VARIANTS[variant]
    return ModelConfig(
        depth=depth,
        base_features=8,
        upsampling=upsampling,
        resize_conv=resize_conv,
        blur_pool=blur_pool,
        top_skip=top_skip,
        **extra,
    )


def seeded_unet(config: ModelConfig, channels: int = 1, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(config, in_channels=channels).eval()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("resize_conv", [True, False])
@pytest.mark.parametrize("upsampling", UPSAMPLING)
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_output_shape(depth, upsampling, resize_conv, variant):
    config = model_config(depth, upsampling, resize_conv, variant)
    step = 2**depth
    for channels in (1, 3):
        model = seeded_unet(config, channels)
        assert model.step == step
        x = torch.randn(2, channels, 2 * step, 3 * step)
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, 1, 2 * step, 3 * step)
        assert torch.isfinite(out).all()


def test_top_skip_and_blur_pool_change_the_network():
    plain, n2v2 = seeded_unet(model_config(variant="plain")), seeded_unet(model_config(variant="n2v2"))
    # Without the top skip the last decoder sees only the up-sampled features.
    assert plain.decoders[-1][0].in_channels == 16
    assert n2v2.decoders[-1][0].in_channels == 8
    assert n2v2.downs[0].blur and not plain.downs[0].blur


def test_residual_output_adds_the_centre_channel():
    model = seeded_unet(model_config(residual=True), channels=3)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        x = torch.randn(1, 3, 16, 16)
        assert torch.equal(model(x), x[:, 1:2])


@pytest.mark.parametrize("variant", VARIANTS)
def test_receptive_radius_is_positive_and_grows_with_depth(variant):
    radii = [receptive_radius(model_config(depth, variant=variant)) for depth in (1, 2, 3, 4)]
    assert radii[0] > 0
    assert all(a < b for a, b in itertools.pairwise(radii))
    # A 3-channel (2.5D) input sees just as far.
    assert receptive_radius(model_config(2, variant=variant), 3) == radii[1]


EXACTNESS_CASES = [
    *itertools.product([1, 2, 3], UPSAMPLING, [True], VARIANTS),
    *itertools.product([2], ["nearest", "bilinear"], [False], VARIANTS),
    (4, "nearest", True, "plain"),
]


def connectivity_unet(config: ModelConfig) -> UNet:
    """All weights one, no biases, float64: fed zeros and a few positive pixels, an output is
    positive exactly where those pixels can reach it (every ReLU passes, a positive value wins every
    max-pool, nothing cancels). Any other weights reach the same outputs or fewer."""
    model = seeded_unet(config).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model


@pytest.mark.parametrize(("depth", "upsampling", "resize_conv", "variant"), EXACTNESS_CASES)
def test_receptive_radius_is_an_exact_bound(depth, upsampling, resize_conv, variant):
    """Outputs of one pooling cell ignore every input farther than the radius, and some input at
    exactly the radius reaches them."""
    config = model_config(depth, upsampling, resize_conv, variant)
    radius, step = receptive_radius(config), 2**depth
    c = -(-(radius + step) // step) * step  # the cell [c, c + step) sits on the pooling grid
    size = 2 * c + step
    lo, hi = c - radius, c + step - 1 + radius  # the inputs within the radius of the cell
    near = (..., slice(lo, hi + 1), slice(lo, hi + 1))
    inner = (..., slice(lo + 1, hi), slice(lo + 1, hi))
    cell = (..., slice(c, c + step), slice(c, c + step))

    # A trained-like (random) network: changing every input beyond the radius changes nothing.
    model = seeded_unet(config, seed=depth)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, size, size, generator=generator)
    far = torch.randn(x.shape, generator=generator)
    far[near] = x[near]
    with torch.no_grad():
        torch.testing.assert_close(model(far)[cell], model(x)[cell], rtol=0, atol=1e-6)

    # The connectivity itself: nothing beyond the radius reaches the cell, the ring at the radius does.
    model = connectivity_unet(config)
    beyond = torch.ones(1, 1, size, size, dtype=torch.float64)
    beyond[near] = 0
    ring = torch.zeros_like(beyond)
    ring[near] = 1
    ring[inner] = 0
    with torch.no_grad():
        assert torch.count_nonzero(model(beyond)[cell]) == 0
        assert model(ring)[cell].min() >= 0 and model(ring)[cell].max() > 0
