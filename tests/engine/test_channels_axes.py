"""Axes and channels: any of S T C Z Y X from the file or the user, independent or joint channels stored
in the model, metadata (axes, pixel sizes, channel names) carried to the outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

import denoise_studio as ds
from denoise_studio.engine.axes import ImageMeta, layout_for, parse_axes
from denoise_studio.engine.io import InputError, read_image_meta, write_ome_tiff
from denoise_studio.engine.persistence import CONFIG_FILE, FORMAT_VERSION


@pytest.fixture
def two_channels(make_image):
    """A CYX image whose second channel is the first on another intensity scale (x100, +500)."""
    first = make_image((64, 64), seed=1)
    return np.stack([first, first * 100 + 500]).astype(np.float32)


# -- axes strings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("axes", "ndim", "problem"),
    [
        ("CZY", 3, "no X"),
        ("CQYX", 4, "unknown letter Q"),
        ("CCYX", 4, "C repeated"),
        ("CYX", 4, "3 letters for an image of 4 dimensions"),
        ("ZZA", 3, "unknown letter A; Z repeated; no Y or X"),
    ],
)
def test_a_wrong_axes_string_is_one_clear_error(axes, ndim, problem):
    with pytest.raises(InputError) as raised:
        parse_axes(axes, ndim)
    message = str(raised.value)
    assert f"invalid axes {axes!r} ({problem})" in message and "STCZYX" not in message.split("(")[0]
    assert "S (samples), T (time), C (channels), Z (depth)" in message


@pytest.mark.parametrize(
    ("axes", "shape", "canonical"),
    [
        ("YX", (20, 30), (1, 1, 1, 20, 30)),
        ("CYX", (2, 20, 30), (1, 2, 1, 20, 30)),
        ("YXC", (20, 30, 3), (1, 3, 1, 20, 30)),
        ("ZCYX", (4, 2, 20, 30), (1, 2, 4, 20, 30)),
        ("TCZYX", (3, 2, 4, 20, 30), (3, 2, 4, 20, 30)),
        ("STYX", (2, 3, 20, 30), (6, 1, 1, 20, 30)),
    ],
)
def test_layouts_map_onto_ncdyx_and_back(axes, shape, canonical):
    array = np.random.default_rng(0).random(shape).astype(np.float32)
    layout = layout_for(shape, array.dtype, axes)
    moved = layout.to_canonical(array)
    assert moved.shape == canonical
    np.testing.assert_array_equal(layout.from_canonical(moved), array)
    if "C" in axes:  # channel c of the canonical array is channel c of the input
        np.testing.assert_array_equal(moved[0, 1, 0], np.take(array, 1, axis=axes.index("C")).reshape(-1, 20, 30)[0])


def test_arrays_without_axes_keep_the_historical_reading():
    assert layout_for((1, 1, 40, 50), np.float32).canonical_shape == (1, 1, 1, 40, 50)
    assert layout_for((5, 40, 50), np.float32).canonical_shape == (1, 1, 5, 40, 50)
    with pytest.raises(InputError, match="give them"):
        layout_for((2, 5, 40, 50), np.float32)


# -- files ------------------------------------------------------------------------------------------
def test_ome_tiff_axes_pixel_sizes_and_channel_names_are_read(tmp_path, two_channels):
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        path, two_channels, ome=True, photometric="minisblack",
        metadata={"axes": "CYX", "PhysicalSizeX": 0.13, "PhysicalSizeY": 0.13, "Channel": {"Name": ["DAPI", "GFP"]}},
    )  # fmt: skip
    image, meta = read_image_meta(path)
    assert image.shape == (2, 64, 64) and meta.axes == "CYX"
    assert meta.scales == {"X": 0.13, "Y": 0.13} and meta.channel_names == ("DAPI", "GFP")


def test_imagej_hyperstack_axes_and_spacing_are_read(tmp_path):
    stack = np.random.default_rng(0).random((3, 2, 32, 40)).astype(np.float32)
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.2, 1 / 0.2), metadata={"axes": "ZCYX", "spacing": 0.7,
                                                                                       "unit": "um"})
    image, meta = read_image_meta(path)
    assert meta.axes == "ZCYX" and image.shape == (3, 2, 32, 40)
    assert meta.scales["Z"] == pytest.approx(0.7) and meta.scales["X"] == pytest.approx(0.2)


def test_user_axes_override_the_file_and_must_fit_it(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((2, 32, 32), np.float32), photometric="minisblack")
    assert read_image_meta(path)[1].axes is None  # a plain stack: guessed later, as ZYX
    assert read_image_meta(path, "cyx")[1].axes == "CYX"
    with pytest.raises(InputError, match="4 letters for an image of 3 dimensions"):
        read_image_meta(path, "CZYX")


def test_an_ome_tiff_round_trip_keeps_axes_sizes_and_names(tmp_path):
    data = np.random.default_rng(0).random((3, 2, 32, 40)).astype(np.float32)
    meta = ImageMeta("SCYX", {"X": 0.2, "Y": 0.2}, {"X": "µm", "Y": "µm"}, channel_names=("a", "b"))
    write_ome_tiff(tmp_path / "o.ome.tif", data, "SCYX", meta)
    back, read = read_image_meta(tmp_path / "o.ome.tif")
    np.testing.assert_array_equal(back, data)
    # OME's S is colour samples: our samples are written as its time axis, a sample axis for us too.
    assert read.axes == "TCYX" and read.scales == meta.scales and read.channel_names == ("a", "b")


# -- training and prediction -------------------------------------------------------------------------
def test_independent_channels_get_their_own_normalisation_and_share_one_network(two_channels, tiny_config, tmp_path):
    run = ds.train(two_channels, tiny_config(), axes="CYX", run_dir=tmp_path / "run")
    model = run.model
    assert model.channels == 2 and not model.joint and model.network.head.out_channels == 1
    low, high = model.normalizations
    assert high.offset == pytest.approx(low.offset * 100 + 500, rel=1e-4)
    assert high.scale == pytest.approx(low.scale * 100, rel=1e-4)
    denoised = model.predict(two_channels, axes="CYX")
    assert denoised.shape == two_channels.shape and denoised.dtype == np.float32
    # One network on identically normalised channels: the second output is the first on its own scale.
    np.testing.assert_allclose(denoised[1], denoised[0] * 100 + 500, rtol=1e-4, atol=1e-2)
    record = json.loads((tmp_path / "run" / CONFIG_FILE).read_text())
    assert record["channels"] == 2 and record["format_version"] == FORMAT_VERSION and record["input_axes"] == "CYX"
    loaded = ds.load_model(tmp_path / "run")
    np.testing.assert_allclose(loaded.predict(two_channels, axes="CYX"), denoised, rtol=1e-5, atol=1e-3)


def test_joint_channels_go_through_the_network_together(two_channels, tiny_config, tmp_path):
    run = ds.train(two_channels, tiny_config(channels="joint"), axes="CYX", run_dir=tmp_path / "run")
    model = run.model
    assert model.joint and model.network.head.out_channels == 2
    assert model.network.encoders[0][0].in_channels == 2
    denoised = model.predict(two_channels, axes="CYX")
    assert denoised.shape == (2, 64, 64) and np.isfinite(denoised).all()
    loaded = ds.load_model(tmp_path / "run")
    assert loaded.joint
    np.testing.assert_allclose(loaded.predict(two_channels, axes="CYX"), denoised, rtol=1e-5, atol=1e-3)


def test_joint_2p5d_stacks_and_joint_care(make_image, tiny_config):
    stack = np.stack([make_image((24, 64, 64), seed=s) for s in (1, 2)], axis=1)  # ZCYX
    run = ds.train(stack, tiny_config(mode="2.5d", channels="joint"), axes="ZCYX")
    assert run.model.network.encoders[0][0].in_channels == 6 and run.model.network.head.out_channels == 2
    assert run.model.predict(stack, axes="ZCYX").shape == stack.shape
    clean = stack[:3].mean(axis=0, keepdims=True).repeat(24, axis=0)
    care = ds.train(stack, tiny_config("care", channels="joint"), targets=clean, axes="ZCYX")
    assert care.model.network.head.out_channels == 2 and len(care.model.output_normalizations) == 2


def test_time_and_samples_are_independent_training_images(make_image, tiny_config):
    frames = np.stack([make_image((64, 64), seed=s) for s in range(3)])
    run = ds.train(frames, tiny_config(), axes="TYX")
    assert run.model.channels == 1 and run.model.predict(frames, axes="TYX").shape == frames.shape
    with pytest.raises(InputError, match="insufficient stack depth for 2.5D: 1 slice"):
        ds.train(np.stack([make_image((48, 48), seed=s) for s in range(24)]), tiny_config(mode="2.5d"), axes="TYX")


def test_a_channel_count_that_does_not_match_the_model_is_refused_with_both_counts(two_channels, tiny_config):
    model = ds.train(two_channels, tiny_config(), axes="CYX").model
    three = np.concatenate([two_channels, two_channels[:1]])
    with pytest.raises(InputError, match="has 3 channels, but the model was trained on 2"):
        model.predict(three, axes="CYX")
    with pytest.raises(InputError, match="has 1 channel, but the model was trained on 2"):
        model.predict(two_channels[0])


def test_a_cyx_ome_tiff_is_trained_as_two_channels_not_two_slices(tmp_path, two_channels, tiny_config):
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, two_channels, ome=True, photometric="minisblack", metadata={"axes": "CYX"})
    model = ds.train(path, tiny_config()).model
    assert model.channels == 2 and model.mode == "2d"


def test_predict_file_keeps_axes_pixel_sizes_names_and_can_keep_the_dtype(tmp_path, two_channels, tiny_config):
    source = tmp_path / "cells.ome.tif"
    data = np.clip(two_channels * 10, 0, 60000).astype(np.uint16)
    tifffile.imwrite(
        source, data, ome=True, photometric="minisblack",
        metadata={"axes": "CYX", "PhysicalSizeX": 0.13, "PhysicalSizeY": 0.11, "Channel": {"Name": ["DAPI", "GFP"]}},
    )  # fmt: skip
    model = ds.train(source, tiny_config()).model
    out = ds.predict_file(model, source, tmp_path / "out.ome.tif", dtype="input")
    image, meta = read_image_meta(out)
    assert image.dtype == np.uint16 and image.shape == data.shape
    assert meta.axes == "CYX" and meta.scales == {"X": 0.13, "Y": 0.11} and meta.channel_names == ("DAPI", "GFP")
    floats = ds.predict_file(model, source, tmp_path / "float.ome.tif")
    as_float = tifffile.imread(floats)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(image, np.clip(np.rint(as_float), 0, 65535).astype(np.uint16))


def test_decon_with_independent_channels_is_refused(two_channels, tiny_config):
    with pytest.raises(InputError, match="DecoNoising with 2 independent channels"):
        ds.train(two_channels, tiny_config(psf_sigma=1.0), axes="CYX")
