"""autoStructN2V pipeline: states, review gate, files, and a really trained stage 1 finding a line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from denoise_studio.engine.config import ConfigError, MaskExtractorConfig, make_autostruct_config
from denoise_studio.engine.data import kernel_symmetries
from denoise_studio.engine.errors import PipelineStateError
from denoise_studio.engine.events import StopRequest
from denoise_studio.engine.io import load_image
from denoise_studio.engine.persistence import ModelFileError, load_model
from denoise_studio.engine.pipelines.autostruct import AutoStructPipeline, AutoStructState, stage2_mask_percent
from denoise_studio.engine.prediction import Predictor
from denoise_studio.samples import sample_path


@pytest.fixture
def tiny_autostruct(tiny_settings):
    def factory(mode: str = "2d", **extra):
        return make_autostruct_config(mode, "fast", {**tiny_settings, **extra})

    return factory


def blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = ndimage.gaussian_filter(rng.random(shape), sigma=(0,) * (len(shape) - 2) + (4, 4))
    return (signal - signal.mean()) / signal.std()


def horizontal_noise(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kernel = np.array([0.5, 1, 1, 1, 0.5])
    return ndimage.convolve1d(rng.normal(size=shape), kernel / np.linalg.norm(kernel), axis=-1, mode="wrap")


@pytest.fixture
def noisy_2d():
    return (0.5 * blobs((2, 64, 64)) + horizontal_noise((2, 64, 64))).astype(np.float32)


def test_states_regenerate_edit_approve_and_files(tmp_path, noisy_2d, tiny_autostruct):
    events = []
    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d, callback=events.append, run_dir=tmp_path)
    assert pipeline.state == AutoStructState.PENDING
    pipeline.run_stage1()
    assert (tmp_path / "stage1.pth").exists()
    first = pipeline.extract_mask()
    assert pipeline.state == AutoStructState.AWAITING_REVIEW
    assert first.mask.shape == (1, 11, 11) and first.mask[0, 5, 5]

    strict = pipeline.regenerate(MaskExtractorConfig(max_pixels=1))
    assert strict.active_pixels == 1
    assert pipeline.config.extractor.max_pixels == 1

    edited = strict.mask.copy()
    edited[0, 5, 4:7] = True  # the user adds a 3-px horizontal line
    pipeline.approve(edited)
    assert pipeline.stage2_config().masking.struct_mask == edited.tolist()
    pipeline.run_stage2()
    assert pipeline.state == AutoStructState.DONE
    states = [e.stage for e in events if e.kind == "state"]
    assert states == ["stage1", "extracting", "awaiting_review", "extracting", "awaiting_review", "stage2", "done"]
    assert {e.stage for e in events if e.kind == "epoch"} == {"stage1", "stage2"}

    for name in ("config.json", "stage1.pth", "stage2.pth", "mask.npy"):
        assert (tmp_path / name).exists(), name
    np.testing.assert_array_equal(np.load(tmp_path / "mask.npy"), edited)
    loaded = load_model(tmp_path)
    assert loaded.method == "autostructn2v"
    assert set(loaded.stage_networks) == {"stage1", "stage2"}
    np.testing.assert_array_equal(loaded.mask, edited)
    expected = Predictor(pipeline.stage2.model, pipeline.normalization, "2d", precision="fp32").predict(noisy_2d)
    restored = Predictor(loaded.network, loaded.normalization, "2d", precision="fp32").predict(noisy_2d)
    np.testing.assert_allclose(restored, expected, atol=1e-5)


def test_skip_stage2_keeps_stage1(tmp_path, noisy_2d, tiny_autostruct):
    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d, run_dir=tmp_path)
    pipeline.run_stage1()
    pipeline.extract_mask()
    pipeline.skip_stage2()
    assert pipeline.state == AutoStructState.SKIPPED
    assert pipeline.final is pipeline.stage1
    loaded = load_model(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["final_stage"] == "stage1"
    assert set(loaded.stage_networks) == {"stage1"} and loaded.network is loaded.stage_networks["stage1"]
    with pytest.raises(PipelineStateError):
        pipeline.run_stage2()


def test_out_of_order_steps_are_refused(noisy_2d, tiny_autostruct):
    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d)
    with pytest.raises(PipelineStateError):
        pipeline.extract_mask()
    with pytest.raises(PipelineStateError):
        pipeline.approve()
    with pytest.raises(PipelineStateError):
        pipeline.run_stage2()


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.ones((1, 4, 4), bool), "odd"),
        (np.zeros((1, 5, 5), bool), "centre"),
        (np.ones((2, 5, 5), bool), "shape"),
    ],
)
def test_bad_edited_masks_are_refused(noisy_2d, tiny_autostruct, mask, message):
    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d)
    with pytest.raises(ConfigError, match=message):
        pipeline.use_mask(mask)


def test_stop_during_stage1_keeps_a_usable_model(noisy_2d, tiny_autostruct):
    stop = StopRequest()

    def stop_at_second_batch(event):
        if event.kind == "batch" and event.batch == 2:
            stop.set()

    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d, callback=stop_at_second_batch, stop=stop)
    pipeline.run_stage1()
    assert pipeline.state == AutoStructState.STOPPED
    assert pipeline.stage1.stop_reason == "stopped"
    assert pipeline.extract_mask().mask[0, 5, 5]  # the mask can still be extracted and reviewed


def test_stop_before_stage2_trains_keeps_stage1(tmp_path, noisy_2d, tiny_autostruct):
    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d, run_dir=tmp_path)
    pipeline.run_stage1()
    pipeline.extract_mask()
    pipeline.approve()
    pipeline.stop.set()  # the user pressed Stop just as stage 2 began
    pipeline.run_stage2()
    assert pipeline.state == AutoStructState.STOPPED and pipeline.stage2 is None
    assert pipeline.final is pipeline.stage1
    assert set(load_model(tmp_path).stage_networks) == {"stage1"} and not (tmp_path / "stage2.pth").exists()
    assert json.loads((tmp_path / "config.json").read_text())["final_stage"] == "stage1"


def test_given_mask_trains_stage2_only_with_symmetric_flips(tmp_path, noisy_2d, tiny_autostruct):
    mask = np.zeros((1, 5, 5), bool)
    mask[0, 2, :] = True
    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d, run_dir=tmp_path)
    pipeline.use_mask(mask)
    pipeline.run_stage2()
    assert pipeline.stage1 is None and pipeline.state == AutoStructState.DONE
    # A horizontal line survives flips but not 90-degree rotations or transposes.
    assert kernel_symmetries(mask) == (0, 1, 2, 3)
    loaded = load_model(tmp_path)
    assert set(loaded.stage_networks) == {"stage2"} and loaded.network is loaded.stage_networks["stage2"]
    assert json.loads((tmp_path / "config.json").read_text())["final_stage"] == "stage2"


@pytest.mark.parametrize(
    ("pixels", "configured", "expected"),
    [(1, 10.0, 10.0), (3, 10.0, 10.0), (7, 10.0, 40 / 7), (19, 6.25, 40 / 19), (225, 10.0, 0.178)],
)
def test_stage2_blind_spots_leave_the_network_most_of_its_input(pixels, configured, expected):
    mask = np.zeros((3, 15, 15), bool)
    mask[1].flat[:pixels] = True
    mask[0, 7, 7] = mask[2, 7, 7] = True  # the neighbour planes do not cover the centre slice's pixels
    assert stage2_mask_percent(configured, mask, 40.0) == pytest.approx(expected, rel=1e-2)
    assert stage2_mask_percent(configured, mask, 40.0) * pixels <= max(40.0, configured) + 1e-9


def test_stage2_config_and_state_message_carry_the_lowered_percentage(noisy_2d, tiny_autostruct):
    mask = np.zeros((1, 11, 11), bool)
    mask[0, 5, :] = True  # an 11-pixel scan line
    pipeline = AutoStructPipeline(tiny_autostruct(**{"stage2.mask_percent": 10.0}), noisy_2d)
    pipeline.use_mask(mask)
    assert pipeline.stage2_config().masking.mask_percent == pytest.approx(40 / 11)
    events = []
    pipeline.callback = events.append
    pipeline.run_stage2()
    messages = [e.message for e in events if e.kind == "state"]
    assert any("lowered from 10 %" in m for m in messages), messages
    assert pipeline.stage2.config.masking.mask_percent == pytest.approx(40 / 11)
    wide = AutoStructPipeline(tiny_autostruct(**{"stage2.mask_percent": 10.0, "stage2_max_coverage": 100}), noisy_2d)
    wide.use_mask(mask)
    assert wide.stage2_config().masking.mask_percent == pytest.approx(100 / 11)


def test_2p5d_mask_has_three_planes(tiny_autostruct):
    stack = (0.5 * blobs((20, 64, 64)) + horizontal_noise((20, 64, 64))).astype(np.float32)
    pipeline = AutoStructPipeline(tiny_autostruct("2.5d", epochs=1), stack)
    pipeline.run_stage1()
    result = pipeline.extract_mask()
    assert result.mask.shape == (3, 11, 11) and result.mask[1, 5, 5]
    pipeline.approve()
    assert len(pipeline.stage2_config().masking.struct_mask) == 3


def test_missing_stage_weights_are_reported(tmp_path, noisy_2d, tiny_autostruct):
    pipeline = AutoStructPipeline(tiny_autostruct(), noisy_2d, run_dir=tmp_path)
    pipeline.run_stage1()
    pipeline.extract_mask()
    pipeline.approve()
    pipeline.run_stage2()
    (tmp_path / "stage2.pth").unlink()
    with pytest.raises(ModelFileError, match="stage2.pth"):
        load_model(tmp_path)


def row_offset_noise(shape: tuple[int, ...], seed: int = 3) -> np.ndarray:
    """White noise plus a random offset per image row: the scan-line noise of SEM/STEM."""
    rng = np.random.default_rng(seed)
    return 0.5 * rng.normal(size=shape) + 0.5 * rng.normal(size=(*shape[:-1], 1))


def assert_horizontal_line(result, min_pixels: int = 5) -> None:
    mask = result.mask[0]
    rows, cols = np.nonzero(mask)
    assert set(rows) == {mask.shape[0] // 2}, f"not a horizontal line:\n{result.to_text_grid()}"
    assert len(cols) >= min_pixels, result.to_text_grid()
    np.testing.assert_array_equal(mask, mask[:, ::-1])


def trained_extraction(image: np.ndarray, epochs: int):
    """A really trained N2V stage 1 (the Fast recipe, about 200 optimiser steps), then extraction."""
    config = make_autostruct_config("2d", "fast", {"stage1.epochs": epochs, "stage1.max_time": None, "seed": 0})
    pipeline = AutoStructPipeline(config, image)
    pipeline.run_stage1()
    return pipeline.extract_mask()


def test_trained_stage1_finds_the_scan_lines_of_synthetic_data():
    """N2V reproduces row offsets from the row's other pixels, so its residual is negatively
    correlated along x only; the extractor turns that into a horizontal line."""
    stack = (blobs((4, 128, 128)) + row_offset_noise((4, 128, 128))).astype(np.float32)
    assert_horizontal_line(trained_extraction(stack, epochs=4))  # 4 slices x 200 patches / 16 per batch x 4


def test_trained_stage1_finds_the_scan_lines_of_real_stem_data():
    """The bundled HAADF-STEM crop (real horizontal scan-line noise) gives a horizontal line."""
    result = trained_extraction(load_image(sample_path("stem_haadf_SrTiO3_crop.tif")), epochs=16)
    assert_horizontal_line(result)
    assert result.correlation[0, 5, 4] < -0.1  # the residual is anti-correlated along the scan line
