"""Helpers shared by the widget tests (fixtures live in conftest.py)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

PLUGIN = "napari-denoise-studio"

#: Small enough for a 2-core CPU: a training takes a second or two.
TINY = {"patch_size": 32, "depth": 1, "base_features": 8, "patches_per_image": 8, "batch_size": 8, "epochs": 2}


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def set_fields(config_dock, values: dict, stages: tuple[str, ...] = ("",)) -> None:
    """Type values into the Configure dock's editors, as a user would."""
    for stage in stages:
        for name, value in values.items():
            editor = config_dock.editor(name, stage) if stage else config_dock.editor(name)
            box = editor.input
            if hasattr(box, "setChecked"):
                box.setChecked(bool(value))
            else:
                box.setValue(value)
            assert not editor.has_error, f"{name}: {editor.error_label.text()}"


def noisy_image(shape: tuple[int, ...], sigma: float = 20.0, seed: int = 0) -> np.ndarray:
    """A smooth pattern plus white Gaussian noise of standard deviation ``sigma``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[-2], : shape[-1]]
    clean = 100 + 40 * np.sin(x / 7.0) * np.cos(y / 11.0)
    if len(shape) == 3:
        clean = np.stack([clean * (1 + 0.01 * z) for z in range(shape[0])])
    return (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32)


def line_noise_stack(slices: int = 20, side: int = 64, seed: int = 1) -> np.ndarray:
    """A stack whose noise is correlated along x (like scan lines): the case autoStructN2V is for."""
    rng = np.random.default_rng(seed)
    white = rng.normal(0, 1, (slices, side, side + 2))
    structured = (white[..., :-2] + white[..., 1:-1] + white[..., 2:]) / np.sqrt(3)
    y, x = np.mgrid[:side, :side]
    clean = 100 + 30 * np.sin(x / 6.0 + y / 9.0)
    return (clean[None] + 15 * structured).astype(np.float32)
