"""Shared fixtures: tiny configs, synthetic images, untrained models and the real-data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from denoise_studio.engine.config import make_config
from denoise_studio.engine.data import Normalization, input_channels
from denoise_studio.engine.unet import build_model

#: The shared data lives beside the repository checkout: <parent>/shared/data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Settings that make a training run take a fraction of a second on a CPU.
TINY = {
    "patch_size": 32,
    "patches_per_image": 16,
    "batch_size": 4,
    "depth": 1,
    "base_features": 8,
    "epochs": 2,
    "max_time": None,
    "early_stopping": False,
    "lr_schedule": "constant",
    "learning_rate": 1e-3,
    "precision": "fp32",
    "device": "cpu",
    "seed": 0,
}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The engine tests run tiny tensors: one thread is fastest and immune to other processes
    competing for the cores (OpenMP threads then spin-wait and slow down a hundredfold)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_config():
    """Factory: a validated config small enough to train in well under a second."""

    def factory(method: str = "n2v", mode: str = "2d", **overrides):
        return make_config(method, mode, "fast", {**TINY, **overrides})

    return factory


def synthetic_image(shape: tuple[int, ...], seed: int = 0, sigma: float = 0.3) -> np.ndarray:
    """Smooth structure (a product of sines) plus Gaussian noise, float32; ``(Z, Y, X)`` stacks
    get a slowly varying pattern along Z."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    clean = np.ones(shape)
    for axis, grid in enumerate(grids):
        clean = clean * np.sin(grid / (5.0 + 2 * axis) + axis)
    return (clean + rng.normal(0.0, sigma, shape)).astype(np.float32)


@pytest.fixture(scope="session")
def make_image():
    """Factory for :func:`synthetic_image`."""
    return synthetic_image


def untrained_model(config, seed: int = 0):
    """A U-Net with seeded random weights for ``config`` (its mode sets the input channels).

    He initialisation keeps the signal alive through the layers, so that the output varies with
    the input as a trained model's does (PyTorch's default gives a nearly constant output)."""
    torch.manual_seed(seed)
    model = build_model(config.model, input_channels(config.mode))
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


@pytest.fixture
def make_model():
    """Factory: ``(model, normalization)`` for a config, with random but fixed weights."""

    def factory(config, seed: int = 0):
        return untrained_model(config, seed), Normalization(offset=0.1, scale=0.7)

    return factory


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder (``../shared/data``), or a skip when this checkout has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} does not exist")
    return SHARED_DATA


@pytest.fixture
def tiny_settings() -> dict:
    """The TINY overrides, for configs built by other factories (e.g. autoStructN2V)."""
    return dict(TINY)
