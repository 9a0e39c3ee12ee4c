"""Out of memory, go smaller: prediction halves its batch then its tile; training halves its batch.

The errors are injected on the CPU (CI has no GPU): the network raises torch's out-of-memory error
(or the CPU allocator's message) whenever a forward pass is larger than a limit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import denoise_studio as ds
from denoise_studio.engine.data import Normalization
from denoise_studio.engine.events import StateEvent
from denoise_studio.engine.memory import is_out_of_memory
from denoise_studio.engine.prediction import Predictor
from denoise_studio.engine.unet import UNet
from tests.conftest import untrained_model

CPU_MESSAGE = "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate"


class Limited(torch.nn.Module):
    """``network`` that runs out of memory above ``batch`` tiles or ``pixels`` per tile."""

    def __init__(self, network: UNet, batch: int = 10**9, pixels: int = 10**12, error=torch.OutOfMemoryError):
        super().__init__()
        self.network, self.batch, self.pixels, self.error = network, batch, pixels, error
        self.step, self.dims, self.config, self.in_channels = network.step, network.dims, network.config, 1
        self.refused = 0

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.shape[0] > self.batch or tensor.shape[-1] * tensor.shape[-2] > self.pixels:
            self.refused += 1
            message = CPU_MESSAGE if self.error is RuntimeError else "CUDA out of memory. Tried to allocate 2.00 GiB"
            raise self.error(message)
        return self.network(tensor)


@pytest.fixture
def network(tiny_config):
    return untrained_model(tiny_config())


def test_the_errors_of_a_full_device_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError(CPU_MESSAGE))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, RuntimeError])
def test_prediction_halves_the_batch_then_the_tile_and_gives_the_same_result(network, make_image, error):
    image = make_image((100, 90), seed=1)
    norm = Normalization(0.1, 0.7)
    expected = Predictor(network, norm, "2d", tile_size=64, batch_size=4, device="cpu", precision="fp32").predict(image)
    margin = Predictor(network, norm, "2d").margin
    limited = Limited(network, batch=1, pixels=(32 + 2 * margin) ** 2, error=error)
    predictor = Predictor(limited, norm, "2d", tile_size=64, batch_size=4, device="cpu", precision="fp32")
    np.testing.assert_allclose(predictor.predict(image), expected, rtol=0, atol=1e-5)
    assert (predictor.batch_size, predictor.tile_size) == (1, 32)
    assert predictor.memory_notes == [
        "out of memory: 2 tile(s) per forward pass now",
        "out of memory: 1 tile(s) per forward pass now",
        "out of memory: tiles of 32 px now",
    ]


def test_prediction_that_never_fits_says_so(network, make_image):
    predictor = Predictor(Limited(network, batch=0), Normalization(0.1, 0.7), "2d", tile_size=16, device="cpu")
    with pytest.raises(MemoryError, match="out of memory even with one tile of 2 px"):
        predictor.predict(make_image((40, 40)))


def test_other_errors_are_not_retried(network, make_image):
    class Broken(Limited):
        def forward(self, tensor):
            self.refused += 1
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    broken = Broken(network)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        Predictor(broken, Normalization(0.1, 0.7), "2d", device="cpu").predict(make_image((40, 40)))
    assert broken.refused == 1


def test_training_halves_its_batch_says_so_and_goes_on(tiny_settings, make_image, monkeypatch, tmp_path):
    forward = UNet.forward

    def limited(self, tensor):
        if self.training and tensor.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return forward(self, tensor)

    monkeypatch.setattr(UNet, "forward", limited)
    events = []
    config = ds.make_config("n2v", "2d", "fast", {**tiny_settings, "batch_size": 8})
    run = ds.train(make_image((64, 64), seed=2), config, callback=events.append, run_dir=tmp_path / "run")
    assert run.state.value == "complete" and run.summary["steps"] > 0
    notes = ["out of memory: batch size halved to 4; training goes on",
             "out of memory: batch size halved to 2; training goes on"]  # fmt: skip
    assert run.summary["memory_notes"] == notes
    assert [e.message for e in events if isinstance(e, StateEvent) and e.kind == "notice"] == notes
    assert ("Memory", notes[-1]) in ds.load_model(tmp_path / "run").summary_lines()


def test_training_that_cannot_fit_one_patch_fails_with_the_error(tiny_settings, make_image, monkeypatch):
    def never(self, tensor):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(UNet, "forward", never)
    config = ds.make_config("n2v", "2d", "fast", {**tiny_settings, "batch_size": 4})
    with pytest.raises(torch.OutOfMemoryError):
        ds.train(make_image((64, 64), seed=2), config)
