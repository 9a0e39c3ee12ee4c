"""Prediction: tiling is exact, stacks go slice by slice, files are streamed, stop leaves nothing."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from denoise_studio.engine.data import Normalization, triplet_indices
from denoise_studio.engine.events import StopRequest
from denoise_studio.engine.io import InputError
from denoise_studio.engine.prediction import PredictionStopped, Predictor
from tests.conftest import untrained_model

UNTILED = 4096

MODELS = {
    "depth2": {"depth": 2},
    "n2v2": {"depth": 2, "blur_pool": True, "top_skip": False},
    "depth3-bilinear": {"depth": 3, "upsampling": "bilinear", "patch_size": 64},
    "transposed-residual": {"depth": 1, "upsampling": "transposed", "residual": True},
}


@pytest.fixture
def predictor(tiny_config, make_model):
    """Factory: a Predictor for a random-weight model of the given mode and options."""

    def factory(mode="2d", tile_size=UNTILED, batch_size=4, transforms=(0,), **options):
        model, norm = make_model(tiny_config(mode=mode, **options))
        return Predictor(
            model, norm, mode, tile_size=tile_size, batch_size=batch_size, device="cpu", precision="fp32",
            transforms=transforms, tile_size_z=UNTILED,
        )  # fmt: skip

    return factory


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", [(64, 64), (37, 53), (70, 41)])
@pytest.mark.parametrize("tile", [16, 24, 40])
def test_tiled_equals_untiled_2d(model, shape, tile, predictor, make_image):
    image = make_image(shape, seed=sum(shape))
    untiled = predictor(**MODELS[model]).predict(image)
    tiled = predictor(tile_size=tile, batch_size=3, **MODELS[model]).predict(image)
    assert tiled.shape == shape and tiled.dtype == np.float32
    assert np.ptp(untiled) > 0.1  # the comparison is not between two constants
    assert_same(tiled, untiled)


@pytest.mark.parametrize("tile", [16, 28])
def test_tiled_equals_untiled_2p5d(tile, predictor, make_image):
    stack = make_image((4, 45, 38))
    untiled = predictor(mode="2.5d", depth=2).predict(stack)
    tiled = predictor(mode="2.5d", depth=2, tile_size=tile).predict(stack)
    assert tiled.shape == stack.shape
    assert_same(tiled, untiled)


def test_a_large_single_image_reports_progress_tile_by_tile(predictor, make_image):
    events = []
    image = make_image((64, 64))
    tiled = predictor(tile_size=16, batch_size=2, depth=1).predict(image, callback=events.append)
    tiles = [e for e in events if e.kind == "tile"]
    assert [(e.tile, e.tiles) for e in tiles] == [(i, 8) for i in range(1, 8)]  # 16 tiles in batches of 2
    fractions = [e.fraction for e in tiles] + [events[-1].fraction]
    assert fractions == sorted(fractions) and events[-1].kind == "plane" and fractions[-1] == 1.0
    assert tiles[3].fraction == pytest.approx(0.5)
    # Typed: a tile event labels tiles as tiles (and planes as planes), never as epochs or batches.
    assert tiles[0].prediction_position == "plane 1/1, tiles 1/8" and not hasattr(tiles[0], "epoch")
    assert_same(tiled, predictor(depth=1).predict(image))  # reporting changes nothing


def test_stack_tile_progress_counts_the_planes(predictor, make_image):
    events = []
    predictor(tile_size=16, batch_size=4, depth=1).predict(make_image((3, 32, 64)), callback=events.append)
    tiles = [e for e in events if e.kind == "tile"]
    assert [(e.plane, e.tile, e.tiles) for e in tiles] == [(z, 1, 2) for z in (1, 2, 3)]  # 8 tiles, 4 a batch
    assert [round(e.fraction, 4) for e in tiles] == [round((z + 0.5) / 3, 4) for z in range(3)]


def test_tile_size_is_rounded_to_the_pooling_step(predictor):
    assert predictor(depth=2, tile_size=30).tile_size == 28
    assert predictor(depth=2, tile_size=1).tile_size == 4


def test_2d_stack_is_predicted_slice_by_slice(predictor, make_image):
    stack = make_image((3, 40, 48))
    predict = predictor(tile_size=16).predict
    out = predict(stack)
    for z in range(3):
        assert_same(out[z], predict(stack[z]))


def test_2p5d_stack_uses_each_slice_with_its_neighbours(predictor, make_image):
    stack = make_image((5, 40, 48))
    predict = predictor(mode="2.5d").predict
    out = predict(stack)
    assert out.shape == stack.shape
    for z in range(5):
        triplet = stack[list(triplet_indices(z, 5))]
        assert_same(out[z], predict(triplet)[1])
    with pytest.raises(InputError, match="at least 3 slices"):
        predict(stack[0])


@pytest.mark.parametrize("mode", ["2d", "2.5d"])
def test_predict_file_streams_and_matches_in_memory(mode, predictor, make_image, tmp_path, monkeypatch):
    stack = (make_image((5, 40, 36)) * 1000 + 2000).astype(np.uint16)
    source, target = tmp_path / "stack.tif", tmp_path / "out" / "denoised.tif"
    tifffile.imwrite(source, stack)
    predict = predictor(mode=mode, tile_size=16)
    expected = predict.predict(stack)
    planes = []
    with monkeypatch.context() as patch:
        # Streaming reads one page at a time: reading the whole file would fail here.
        patch.setattr(tifffile, "imread", lambda *a, **k: pytest.fail("the whole stack was read"))
        written = predict.predict_file(source, target, callback=planes.append)
    assert written == target
    result = tifffile.imread(target)
    assert result.shape == stack.shape and result.dtype == np.float32
    assert_same(result, expected)
    assert [e.plane for e in planes if e.kind == "plane"] == [1, 2, 3, 4, 5] and planes[-1].fraction == 1.0
    assert {e.file for e in planes} == {str(target)}  # the events say which file is being written
    assert {e.kind for e in planes} == {"plane", "tile"}  # several tile batches per plane report too
    assert sorted(p.name for p in target.parent.iterdir()) == ["denoised.tif"]


def stop_after_planes(count: int):
    stop = StopRequest()

    def callback(event):
        if event.kind == "plane" and event.plane >= count:
            stop.set()

    return stop, callback


@pytest.mark.parametrize("planes_done", [0, 2])
def test_stop_raises_and_leaves_no_file(planes_done, predictor, make_image, tmp_path):
    stack = make_image((5, 40, 36))
    source, target = tmp_path / "stack.tif", tmp_path / "denoised.tif"
    tifffile.imwrite(source, stack)
    stop, callback = stop_after_planes(planes_done)
    if planes_done == 0:
        stop.set()
    predict = predictor(tile_size=16)
    with pytest.raises(PredictionStopped):
        predict.predict_file(source, target, callback=callback, stop=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]  # no output, no partial file
    with pytest.raises(PredictionStopped):
        predict.predict(stack, stop=stop)


def test_predict_refuses_bad_input(predictor):
    with pytest.raises(InputError, match="NaN or Inf"):
        predictor().predict(np.full((32, 32), np.nan, dtype=np.float32))


# -- test-time augmentation ------------------------------------------------------------------------
@pytest.mark.parametrize("choice", range(8))
def test_each_dihedral_transform_is_undone_on_non_square_tensors(choice):
    import torch

    from denoise_studio.engine.augment import dihedral, dihedral_tensor, inverse_dihedral_tensor

    tensor = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    moved = dihedral_tensor(tensor, choice)
    np.testing.assert_array_equal(moved.numpy(), dihedral(tensor.numpy(), choice))  # the training group
    assert torch.equal(inverse_dihedral_tensor(moved, choice), tensor)


def test_tta_averages_the_network_over_the_transformed_images(predictor, make_image):
    from denoise_studio.engine.augment import dihedral

    image = make_image((40, 56), seed=2)
    plain = predictor()
    augmented = predictor(transforms=range(8))
    # Each transformed image predicted on its own, mapped back, averaged: what TTA must give.
    expected = np.mean(
        [undo_dihedral(plain.predict(np.ascontiguousarray(dihedral(image, c))), c) for c in range(8)], axis=0
    )
    result = augmented.predict(image)
    assert_same(result, expected)
    assert np.abs(result - plain.predict(image)).max() > 1e-3  # a random net is not equivariant


@pytest.mark.parametrize("mode", ["2d", "2.5d"])
def test_tiled_tta_equals_untiled_tta(predictor, make_image, mode):
    image = make_image((3, 70, 41) if mode == "2.5d" else (70, 41), seed=4)
    untiled = predictor(mode=mode, transforms=range(8)).predict(image)
    tiled = predictor(mode=mode, tile_size=16, batch_size=3, transforms=range(8)).predict(image)
    assert_same(tiled, untiled)


def test_transforms_outside_the_dihedral_group_are_refused(predictor):
    with pytest.raises(ValueError, match="dihedral elements 0-7"):
        predictor(transforms=(0, 8))


def undo_dihedral(array: np.ndarray, choice: int) -> np.ndarray:
    if choice & 4:
        array = np.swapaxes(array, -1, -2)
    if choice & 2:
        array = array[..., ::-1, :]
    if choice & 1:
        array = array[..., ::-1]
    return array


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, tuple(range(8))),
        ({"augment_rotate": False}, (0, 1, 2, 3)),  # structured noise: never turned a quarter
        ({"augment": False}, (0,)),  # never trained under a flip: run as it is
        # A horizontal struct kernel survives the flips, not the transposes.
        ({"struct_mask": [[[0, 0, 0], [1, 1, 1], [0, 0, 0]]], "neighbourhood_radius": 2}, (0, 1, 2, 3)),
        ({"struct_mask": [[[0, 0, 0], [1, 1, 0], [0, 0, 0]]], "neighbourhood_radius": 2}, (0, 2)),
    ],
)
def test_tta_uses_the_transforms_the_network_was_trained_under(tiny_config, overrides, expected):
    from denoise_studio.engine.model import TrainedModel

    config = tiny_config(**overrides)
    model = TrainedModel("n2v", config, Normalization(0.0, 1.0), untrained_model(config))
    assert model.test_time_transforms == expected
    assert model.predictor(tta=True, device="cpu").transforms == expected
    assert model.predictor(device="cpu").transforms == (0,)


def test_tta_of_a_paired_model_uses_all_eight(tiny_config):
    from denoise_studio.engine.model import TrainedModel

    config = tiny_config("care", target_from="gaussian:1.5")
    assert config.masking is None
    model = TrainedModel("care", config, Normalization(0.0, 1.0), untrained_model(config))
    assert model.test_time_transforms == tuple(range(8))


def test_the_high_quality_preset_predicts_with_tta_unless_told_not_to(tiny_settings):
    from denoise_studio.engine.config import make_config
    from denoise_studio.engine.model import TrainedModel

    config = make_config("n2v", "2d", "quality", dict(tiny_settings))
    assert config.prediction.tta and not make_config("n2v", "2d", "fast").prediction.tta
    model = TrainedModel("n2v", config, Normalization(0.0, 1.0), untrained_model(config))
    assert model.predictor(device="cpu").transforms == tuple(range(8))
    assert model.predictor(device="cpu", tta=False).transforms == (0,)
    assert make_config("n2v", "2d", "fast", {"tta": "true"}).prediction.tta  # like any field, by its name
