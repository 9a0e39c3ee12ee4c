"""The 3D U-Net: shapes with and without Z pooling, several outputs with a residual, the 2D weight
layout, DecoNoising in 3D, and the per-axis receptive field as an exact bound."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from denoise_studio.engine.config import ModelConfig
from denoise_studio.engine.unet import (
    DeconvUNet,
    UNet,
    build_model,
    centre_channels,
    prediction_radii,
    prediction_radius,
    receptive_radii,
    receptive_radius,
)

#: (blur_pool, top_skip): the plain U-Net and the N2V2 variant.
VARIANTS = {"plain": (False, True), "n2v2": (True, False)}


def model_config(depth=1, upsampling="nearest", variant="plain", pool_z=True, **extra) -> ModelConfig:
    blur_pool, top_skip = VARIANTS[variant]
    return ModelConfig(
        depth=depth,
        base_features=4,
        upsampling=upsampling,
        blur_pool=blur_pool,
        top_skip=top_skip,
        pool_z=pool_z,
        **extra,
    )


def seeded(config: ModelConfig, in_channels=1, out_channels=1, dims=3, seed=0) -> UNet:
    torch.manual_seed(seed)
    return UNet(config, in_channels=in_channels, out_channels=out_channels, dims=dims).eval()


def zero_head(model: UNet) -> UNet:
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    return model


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("upsampling", ["nearest", "bilinear", "transposed"])
@pytest.mark.parametrize("pool_z", [True, False])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_3d_output_shape_and_steps(depth, pool_z, upsampling, variant):
    model = seeded(model_config(depth, upsampling, variant, pool_z), in_channels=2, out_channels=2)
    step = 2**depth
    sz = step if pool_z else 1
    assert model.dims == 3
    assert model.step == step
    assert model.steps == (sz, step, step)
    x = torch.randn(2, 2, 3 * sz, step, 2 * step)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 2, 3 * sz, step, 2 * step)
    assert torch.isfinite(out).all()


def test_without_z_pooling_every_level_keeps_the_slices():
    model = seeded(model_config(depth=2, pool_z=False))
    shapes = []
    for down in model.downs:
        down.register_forward_hook(lambda _module, _inputs, output: shapes.append(tuple(output.shape[2:])))
    with torch.no_grad():
        model(torch.randn(1, 1, 3, 8, 8))
    assert shapes == [(3, 4, 4), (3, 2, 2)]


def test_2d_steps_and_layers_stay_2d():
    model = seeded(model_config(depth=2), dims=2)
    assert model.dims == 2 and model.steps == (4, 4)
    assert not any(isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d)) for m in model.modules())


def test_dims_must_be_2_or_3():
    with pytest.raises(ValueError, match="dims"):
        UNet(model_config(), dims=1)


#: The weights of today's 2D network (depth 1, base features 4, residual, 3 inputs): saved models
#: must keep loading.
LAYOUT_2D = [
    ("encoders.0.0.weight", (4, 3, 3, 3)),
    ("encoders.0.0.bias", (4,)),
    ("encoders.0.2.weight", (4, 4, 3, 3)),
    ("encoders.0.2.bias", (4,)),
    ("bottleneck.0.weight", (8, 4, 3, 3)),
    ("bottleneck.0.bias", (8,)),
    ("bottleneck.2.weight", (8, 8, 3, 3)),
    ("bottleneck.2.bias", (8,)),
    ("ups.0.op.weight", (4, 8, 3, 3)),
    ("ups.0.op.bias", (4,)),
    ("decoders.0.0.weight", (4, 8, 3, 3)),
    ("decoders.0.0.bias", (4,)),
    ("decoders.0.2.weight", (4, 4, 3, 3)),
    ("decoders.0.2.bias", (4,)),
    ("head.weight", (1, 4, 1, 1)),
    ("head.bias", (1,)),
]


def test_2d_state_dict_layout_is_unchanged():
    config = model_config(residual=True)
    torch.manual_seed(0)
    old_way = UNet(config, in_channels=3)
    new_way = seeded(config, in_channels=3, dims=2)
    assert [(k, tuple(v.shape)) for k, v in old_way.state_dict().items()] == LAYOUT_2D
    assert [(k, tuple(v.shape)) for k, v in new_way.state_dict().items()] == LAYOUT_2D
    new_way.load_state_dict(old_way.state_dict())
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(old_way.eval()(x), new_way(x))
    # Non-persistent buffers (blur kernels, PSF) stay out of saved weights in every mode.
    deconv = DeconvUNet(model_config(variant="n2v2"), in_channels=1, psf_sigma=1.0, out_channels=2, dims=3)
    assert not any(key.endswith(("kernel", "psf")) for key in deconv.state_dict())


def test_3d_weights_carry_the_2d_names_with_a_z_extent():
    config = model_config(residual=True)
    volume = seeded(config, in_channels=3, dims=3)
    layout = [(k, tuple(v.shape)) for k, v in volume.state_dict().items()]
    expected = [(k, shape if len(shape) < 4 else (*shape[:2], shape[2], *shape[2:])) for k, shape in LAYOUT_2D]
    assert layout == expected


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "centres"),
    [(1, 1, (0,)), (3, 1, (1,)), (2, 2, (0, 1)), (6, 2, (1, 4)), (9, 3, (1, 4, 7)), (4, 2, (1, 3))],
)
def test_centre_channels(in_channels, out_channels, centres):
    assert centre_channels(in_channels, out_channels) == centres


@pytest.mark.parametrize(("in_channels", "out_channels"), [(5, 2), (1, 2), (3, 0)])
def test_centre_channels_needs_one_group_per_output(in_channels, out_channels):
    with pytest.raises(ValueError, match="multiple"):
        centre_channels(in_channels, out_channels)
    if out_channels:
        with pytest.raises(ValueError, match="multiple"):
            UNet(model_config(residual=True), in_channels=in_channels, out_channels=out_channels)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("in_channels", "out_channels"), [(3, 1), (6, 2), (2, 2)])
def test_residual_adds_each_outputs_centre_channel(dims, in_channels, out_channels):
    model = zero_head(seeded(model_config(residual=True), in_channels, out_channels, dims=dims))
    spatial = (4, 8, 8) if dims == 3 else (8, 8)
    x = torch.randn(2, in_channels, *spatial)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, out_channels, *spatial)
    group = in_channels // out_channels
    for index in range(out_channels):
        assert torch.equal(out[:, index], x[:, index * group + group // 2])


def test_several_outputs_without_residual_need_no_grouping():
    model = seeded(model_config(), in_channels=1, out_channels=3)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 2, 4, 4)).shape == (1, 3, 2, 4, 4)


def test_deconv_3d_blurs_each_channel_laterally_only():
    model = DeconvUNet(model_config(), in_channels=2, psf_sigma=1.0, out_channels=2, dims=3).eval()
    r = model.psf_radius
    phantom = torch.zeros(1, 2, 5, 12, 12)
    phantom[0, 1, 2, 6, 6] = 1.0
    blurred = model.blur(phantom)
    assert blurred.shape == phantom.shape
    assert torch.count_nonzero(blurred[0, 0]) == 0  # channels do not mix
    assert torch.count_nonzero(blurred[0, 1, [0, 1, 3, 4]]) == 0  # slices do not mix
    plane = blurred[0, 1, 2]
    assert plane.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.count_nonzero(plane) == (2 * r + 1) ** 2
    # The same Gaussian as the 2D model's.
    flat = DeconvUNet(model_config(), in_channels=1, psf_sigma=1.0).blur(phantom[:, 1:, 2])
    torch.testing.assert_close(plane, flat[0, 0])


@pytest.mark.parametrize("dims", [2, 3])
def test_deconv_outputs_stack_every_channel_of_each_name(dims):
    torch.manual_seed(0)
    model = build_model(model_config(), in_channels=2, psf_sigma=1.0, out_channels=2, dims=dims).eval()
    assert isinstance(model, DeconvUNet) and model.dims == dims
    x = torch.randn(1, 2, *((2, 8, 8) if dims == 3 else (8, 8)))
    with torch.no_grad():
        denoised = model(x)
        phantom = model.phantom
        both = model.outputs(x, ("deconvolved", "denoised"))
        assert torch.equal(model.outputs(x, ("denoised",)), denoised)
    assert both.shape == (1, 4, *x.shape[2:])
    assert torch.equal(both[:, :2], phantom) and torch.equal(both[:, 2:], denoised)
    with pytest.raises(ValueError, match="not sharpened"):
        model.outputs(x, ("denoised", "sharpened"))


def test_build_model_gives_a_plain_3d_unet_without_psf():
    model = build_model(model_config(), in_channels=1, out_channels=2, dims=3)
    assert type(model) is UNet and model.dims == 3 and model.out_channels == 2


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_radii_3d(depth, variant):
    pooled = receptive_radii(model_config(depth, variant=variant), dims=3)
    lateral_only = receptive_radii(model_config(depth, variant=variant, pool_z=False), dims=3)
    flat = receptive_radius(model_config(depth, variant=variant))
    assert receptive_radii(model_config(depth, variant=variant)) == (flat, flat)
    # With Z pooling the network is isotropic; Y and X never depend on the Z pooling.
    assert pooled == (flat, flat, flat)
    assert lateral_only[1:] == (flat, flat)
    assert 0 < lateral_only[0] < pooled[0]
    # Input channels are summed by the first layer: they change nothing.
    assert receptive_radii(model_config(depth, variant=variant, pool_z=False), in_channels=3, dims=3) == lateral_only


def test_receptive_radii_grow_with_depth_in_z_without_pooling():
    radii = [receptive_radii(model_config(depth, pool_z=False), dims=3)[0] for depth in (1, 2, 3)]
    assert all(a < b for a, b in itertools.pairwise(radii))


def test_prediction_radii_add_the_psf_laterally():
    config = model_config(depth=2, pool_z=False)
    deconv = DeconvUNet(config, in_channels=1, psf_sigma=1.5, out_channels=2, dims=3)
    rz, ry, rx = receptive_radii(config, dims=3)
    p = deconv.psf_radius
    assert prediction_radii(deconv) == (rz, ry + p, rx + p)
    assert prediction_radius(deconv) == ry + p
    assert prediction_radii(UNet(config, dims=3)) == (rz, ry, rx)
    flat = DeconvUNet(config, in_channels=1, psf_sigma=1.5)
    assert prediction_radii(flat) == (ry + p, rx + p)
    assert prediction_radius(flat) == receptive_radius(config) + p


def connectivity(model: UNet) -> UNet:
    """All weights one, no biases, float64: fed zeros and a few positive voxels, an output is
    positive exactly where those voxels can reach it (every ReLU passes, a positive value wins every
    max-pool, nothing cancels)."""
    model = model.double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model


BOUND_CASES = [
    (1, "nearest", "plain", True),
    (1, "transposed", "plain", False),
    (1, "bilinear", "n2v2", True),
    (2, "nearest", "n2v2", False),
    (2, "bilinear", "plain", False),
    (2, "transposed", "plain", True),
]


@pytest.mark.parametrize(("depth", "upsampling", "variant", "pool_z"), BOUND_CASES)
def test_receptive_radii_are_an_exact_bound_per_axis(depth, upsampling, variant, pool_z):
    """Outputs of one pooling cell ignore every voxel farther than the radius along any axis, and
    along each axis a single voxel at exactly the radius reaches them."""
    config = model_config(depth, upsampling, variant, pool_z)
    radii = receptive_radii(config, dims=3)
    steps = seeded(config).steps
    # The cell [c, c + step) on each axis sits on the pooling grid with room for the radius around it.
    starts = [-(-(r + s) // s) * s for r, s in zip(radii, steps, strict=True)]
    shape = tuple(2 * c + s for c, s in zip(starts, steps, strict=True))
    near = (slice(None), slice(None), *(slice(c - r, c + s + r) for c, r, s in zip(starts, radii, steps, strict=True)))
    cell = (slice(None), 0, *(slice(c, c + s) for c, s in zip(starts, steps, strict=True)))

    # A trained-like (random) network: changing every voxel beyond the radius changes nothing.
    model = seeded(config, seed=depth)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, *shape, generator=generator)
    far = torch.randn(x.shape, generator=generator)
    far[near] = x[near]
    with torch.no_grad():
        torch.testing.assert_close(model(far)[cell], model(x)[cell], rtol=0, atol=1e-6)

    # The connectivity itself: no voxel beyond the radius reaches the cell (a positive value there
    # would show in some output of the cell, nothing can cancel it)...
    wired = connectivity(seeded(config))
    probes = torch.zeros(4, 1, *shape, dtype=torch.float64)
    probes[0] = 1.0
    probes[(0, *near[1:])] = 0
    # ... while along each axis a voxel at exactly the radius, on one side or the other, does: the
    # two such voxels of axis a (in the cell's corner on the other axes) go into volume 1 + a.
    for axis in range(3):
        c, r, s = starts[axis], radii[axis], steps[axis]
        for position in (c - r, c + s - 1 + r):
            voxel = [1 + axis, 0, *starts]
            voxel[2 + axis] = position
            probes[tuple(voxel)] = 1.0
    with torch.no_grad():
        reached = wired(probes)[cell].flatten(1).amax(dim=1)
    assert reached[0] == 0
    assert (reached[1:] > 0).all(), f"radii {radii}: a voxel at the radius reaches the cell per axis {reached[1:]}"
