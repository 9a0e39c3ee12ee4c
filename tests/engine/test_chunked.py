"""Out-of-core prediction: dask blocks give the whole-image prediction, in process and on a cluster."""

from __future__ import annotations

import copy
import pickle
import threading

import dask
import dask.array as da
import distributed  # noqa: F401 - its config defaults must be loaded before a test overrides one of them
import numpy as np
import pytest
import torch

from denoise_studio.engine.chunked import (
    BlockPredictor,
    aligned_chunks,
    block_predictor,
    compute_context,
    halo_for,
    predict_chunked,
    predict_lazy,
    steps_for,
)
from denoise_studio.engine.config import ModelConfig
from denoise_studio.engine.data import Normalization
from denoise_studio.engine.errors import InputError
from denoise_studio.engine.prediction import NonFiniteOutputError, Predictor
from denoise_studio.engine.unet import build_model
from denoise_studio.engine.zarr_io import read_ome_zarr, write_ome_zarr

OFFSET, SCALE = 100.0, 20.0


def make_predictor(mode: str = "2d", seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(depth=2, base_features=4), in_channels=3 if mode == "2.5d" else 1)
    # He initialisation keeps the signal alive through the layers (the default gives a nearly constant output).
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return Predictor(model.eval(), Normalization(OFFSET, SCALE), mode, device="cpu", precision="fp32")


def raw_stack(shape, seed: int = 0) -> np.ndarray:
    return (OFFSET + SCALE * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def assert_same(chunked: np.ndarray, whole: np.ndarray) -> None:
    """Equal to float tolerance on the normalised scale."""
    assert chunked.shape == whole.shape and chunked.dtype == np.float32
    assert np.ptp(whole) > SCALE  # not a comparison between two constants
    np.testing.assert_allclose(chunked / SCALE, whole / SCALE, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def predictors() -> dict[str, Predictor]:
    return {"2d": make_predictor("2d"), "2.5d": make_predictor("2.5d")}


# Sides that are not multiples of the step (4); chunk sides that do not divide them, are below the
# halo (28), or leave a last chunk shorter than the halo (folded into the one before).
SHAPE = (5, 150, 133)
CHUNKS = [(1, 32, 32), (2, 40, 60), (3, 18, 36), (4, 61, 45), (16, 512, 512)]


def test_halo_and_steps_follow_the_predictor(predictors):
    flat, stacked = predictors["2d"], predictors["2.5d"]
    assert flat.margin % flat.model.step == 0 and flat.margin > 0
    assert halo_for(flat) == (0, flat.margin, flat.margin)
    assert halo_for(stacked) == (1, stacked.margin, stacked.margin)
    assert steps_for(flat) == steps_for(stacked) == (1, 4, 4)


@pytest.mark.parametrize("chunks", CHUNKS)
def test_chunks_start_on_the_step_and_are_not_shorter_than_the_halo(chunks):
    halo, steps = (1, 28, 28), (1, 4, 4)
    layout = aligned_chunks(SHAPE, halo=halo, steps=steps, chunks=chunks)
    for axis, sizes in enumerate(layout):
        assert sum(sizes) == SHAPE[axis]
        starts = np.cumsum((0, *sizes[:-1]))
        assert all(start % steps[axis] == 0 for start in starts)
        assert all(size % steps[axis] == 0 for size in sizes[:-1])
        assert len(sizes) == 1 or min(sizes) >= halo[axis]


@pytest.mark.parametrize("mode", ["2d", "2.5d"])
@pytest.mark.parametrize("chunks", CHUNKS)
def test_chunked_equals_whole_image_prediction(mode, chunks, predictors):
    predictor = predictors[mode]
    stack = raw_stack(SHAPE, seed=len(chunks))
    whole = predictor.predict(stack)
    lazy = predict_chunked(
        da.from_array(stack, chunks=(2, 50, 50)),
        block_predictor(predictor),
        halo=halo_for(predictor),
        steps=steps_for(predictor),
        chunks=chunks,
    )
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32
    with compute_context():
        assert_same(lazy.compute(), whole)


def test_several_chunks_along_every_axis_are_exercised():
    layout = aligned_chunks(SHAPE, halo=(1, 28, 28), steps=(1, 4, 4), chunks=(2, 40, 60))
    assert layout == ((2, 2, 1), (40, 40, 40, 30), (60, 73))


@pytest.mark.parametrize(
    ("halo", "steps"),
    [((0, 8, 8), (1, 4, 4)), ((0, 28, 28), (1, 1, 1))],
    ids=["halo-below-the-receptive-radius", "chunk-starts-off-the-pooling-grid"],
)
def test_breaking_a_condition_of_exactness_changes_the_result(halo, steps, predictors):
    """The conditions are needed, so the equality tests above can fail."""
    predictor = predictors["2d"]
    stack = raw_stack((1, 120, 120), seed=3)
    lazy = predict_chunked(stack, block_predictor(predictor), halo=halo, steps=steps, chunks=(1, 30, 30))
    with compute_context():
        difference = np.abs(lazy.compute() - predictor.predict(stack)) / SCALE
    assert difference.max() > 1e-3


def test_numpy_source_and_the_lazy_helper(predictors):
    predictor = predictors["2.5d"]
    stack = raw_stack((3, 70, 53), seed=4)
    with compute_context():
        assert_same(predict_lazy(predictor, stack, chunks=(1, 28, 28)).compute(), predictor.predict(stack))


def test_a_2p5d_prediction_needs_three_slices(predictors):
    with pytest.raises(InputError, match="at least 3 slices"):
        predict_lazy(predictors["2.5d"], raw_stack((2, 40, 40)))


def test_constant_background_blocks_do_not_fail(predictors):
    predictor = predictors["2d"]
    stack = raw_stack((2, 150, 150), seed=5)
    stack[:, :, 80:] = 7.0  # whole chunks of empty background
    with compute_context():
        result = predict_lazy(predictor, stack, chunks=(1, 40, 40)).compute()
        assert_same(result, predictor.predict(stack))
        constant = predict_lazy(predictor, np.full((1, 64, 64), 3, np.uint16), chunks=(1, 32, 32)).compute()
    assert np.isfinite(constant).all() and constant.dtype == np.float32


def test_integer_blocks_are_read_as_intensities(predictors):
    predictor = predictors["2d"]
    stack = np.clip(raw_stack((1, 64, 64), seed=6), 0, None).astype(np.uint16)
    block = BlockPredictor(predictor)(stack)
    assert block.dtype == np.float32
    assert_same(block, predictor.predict(stack))


def test_a_damaged_model_is_reported(predictors):
    broken = make_predictor("2d")
    with torch.no_grad():
        next(broken.model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteOutputError):
        BlockPredictor(broken)(raw_stack((1, 32, 32)))


def test_the_block_predictor_survives_pickling(predictors):
    predictor = predictors["2.5d"]
    stack = raw_stack((3, 48, 40), seed=7)
    original = block_predictor(predictor)
    copy = pickle.loads(pickle.dumps(original))
    assert isinstance(copy, BlockPredictor) and copy.resolve() is not predictor
    np.testing.assert_array_equal(copy(stack), original(stack))
    # Pickled again (a scheduler forwarding a task), it is still the same predictor.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(copy))(stack), original(stack))


def test_an_unpickled_predictor_is_built_once_per_thread(predictors):
    data = pickle.dumps(block_predictor(predictors["2d"]))
    first, second = pickle.loads(data), pickle.loads(data)
    assert first.resolve() is second.resolve()
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(first.resolve()))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first.resolve()
    assert pickle.loads(pickle.dumps(block_predictor(predictors["2d"]))).resolve() is not first.resolve()


def test_the_in_process_context_runs_synchronously():
    before = dask.config.get("scheduler", None)
    with compute_context() as client:
        assert client is None
        assert dask.config.get("scheduler") == "synchronous"
    assert dask.config.get("scheduler", None) == before


def worker_threads() -> tuple[int, bool]:
    from denoise_studio.engine import chunked

    return torch.get_num_threads(), chunked._worker_threads_limited


def test_a_two_process_local_cluster_gives_the_in_process_result(tmp_path, predictors):
    """The whole out-of-core path on a cluster: OME-Zarr in, blocks on worker processes, OME-Zarr out."""
    predictor = predictors["2.5d"]
    stack = raw_stack((4, 96, 90), seed=8)
    source = write_ome_zarr(tmp_path / "in.ome.zarr", stack, "ZYX", chunks=(2, 48, 48))
    with compute_context():
        local = predict_lazy(predictor, read_ome_zarr(source).data, chunks=(2, 32, 32)).compute()
    # Without distributed's OMP_NUM_THREADS=1, torch in each worker starts with a thread per core:
    # the block predictor must bring it down to one.
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}), compute_context(workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        lazy = predict_lazy(predictor, read_ome_zarr(source).data, chunks=(2, 32, 32))
        clustered = lazy.compute()
        written = write_ome_zarr(tmp_path / "out.ome.zarr", lazy, "ZYX", chunks=(2, 32, 32))
        threads = client.run(worker_threads)
    assert any(limited for _, limited in threads.values())
    assert all(count == 1 for count, limited in threads.values() if limited)
    np.testing.assert_allclose(clustered, local, rtol=0, atol=1e-5 * SCALE)
    assert_same(clustered, predictor.predict(stack))
    np.testing.assert_array_equal(read_ome_zarr(written).data.compute(), clustered)


def test_an_unreachable_scheduler_is_an_input_error_naming_it():
    with (
        pytest.raises(InputError, match="tcp://127.0.0.1:9"),
        compute_context(scheduler="tcp://127.0.0.1:9", connect_timeout=1),
    ):
        pass


def test_workers_and_a_scheduler_together_are_refused():
    with pytest.raises(InputError, match="not both"), compute_context(workers=2, scheduler="tcp://127.0.0.1:9"):
        pass
    with pytest.raises(InputError, match="at least 1"), compute_context(workers=0):
        pass


def test_a_gpu_predictor_falls_back_to_the_cpu_on_a_worker_without_one(predictors, monkeypatch):
    from denoise_studio.engine import chunked

    state = BlockPredictor(predictors["2d"]).__getstate__()
    on_gpu = copy.copy(state["predictor"])
    on_gpu.device, on_gpu.precision = torch.device("cuda"), "fp16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rebuilt = chunked._rebuild({**state, "predictor": on_gpu})
    assert rebuilt.device.type == "cpu" and next(rebuilt.model.parameters()).device.type == "cpu"
    assert rebuilt.precision != "fp16"  # chosen for the CPU, not the GPU's
    stack = raw_stack((1, 40, 40), seed=10)
    # The CPU's own precision: bf16 where the processor has it natively, else fp32.
    on_cpu = copy.copy(predictors["2d"])
    on_cpu.precision = rebuilt.precision
    assert_same(BlockPredictor(rebuilt)(stack), on_cpu.predict(stack))


def test_a_predictor_fitted_per_channel_uses_the_chosen_channels_normalisation():
    base = make_predictor("2d")
    second = Normalization(OFFSET + 50, SCALE * 2)
    per_channel = Predictor(base.model, [base.normalization, second], "2d", device="cpu", precision="fp32")
    alone = Predictor(base.model, second, "2d", device="cpu", precision="fp32")
    stack = raw_stack((1, 48, 48), seed=11) * 2
    np.testing.assert_array_equal(BlockPredictor(per_channel, channel=1)(stack), BlockPredictor(alone)(stack))
    with pytest.raises(ValueError, match="channel 2 out of range"):
        BlockPredictor(per_channel, channel=2)


def test_unknown_modes_are_refused(predictors):
    other = copy.copy(predictors["2d"])
    other.mode = "4d"
    with pytest.raises(ValueError, match="2D, 2.5D and 3D"):
        BlockPredictor(other)


@pytest.mark.parametrize("pool_z", [True, False])
def test_3d_blocks_equal_the_in_memory_3d_prediction(pool_z):
    torch.manual_seed(3)
    model = build_model(ModelConfig(depth=1, base_features=4, pool_z=pool_z), 1, dims=3)
    predictor = Predictor(model, Normalization(100.0, 20.0), "3d", device="cpu", precision="fp32")
    stack = raw_stack((30, 70, 45), seed=5)
    expected = predictor.predict(stack)
    lazy = predict_lazy(predictor, stack, chunks=(4, 32, 32))
    assert len(lazy.chunks[0]) > 1 and len(lazy.chunks[1]) > 1  # really several blocks on every axis
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-5, atol=1e-3)
