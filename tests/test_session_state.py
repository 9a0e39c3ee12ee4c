"""The docks' shared state is an evented model without Qt: it runs on napari's Qt-free ViewerModel."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("napari")


def test_the_session_imports_no_qt():
    code = (
        "import sys, denoise_studio._qt.state.session\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt6', 'PyQt5', 'PySide6'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_layers_are_held_by_reference_and_signals_fire_without_qt():
    from napari.components import ViewerModel

    from denoise_studio._qt.state.session import Session

    viewer = ViewerModel()
    session = Session(viewer)
    seen = []
    session.data_changed.connect(lambda: seen.append("data"))
    session.comparison_changed.connect(lambda value: seen.append(value))
    viewer.add_image(np.random.default_rng(0).random((32, 32), dtype=np.float32), name="cells")
    viewer.add_image(np.zeros((32, 32, 2), np.float32), name="two")
    session.set_source_layer("cells")
    assert session.data_status() == (True, "cells: 32×32, ready for 2D training")
    viewer.layers["cells"].name = "nuclei"
    assert session.source_layer == "nuclei"  # a rename is followed
    viewer.add_image(np.ones((32, 32), np.float32), name="nuclei denoised")
    session.set_comparison("nuclei", ["nuclei denoised"])
    assert session.comparison == ("nuclei", ["nuclei denoised"])
    viewer.layers.remove("nuclei")
    assert session.source_layer is None and session.comparison is None
    ok, message = session.data_status()
    assert not ok and "'nuclei' was deleted" in message
    session.set_source_layer("two")
    ok, message = session.data_status()
    assert not ok and "layer 'two': looks like a 2-channel image" in message
    assert seen.count("data") >= 3 and None in seen


def test_axes_come_from_the_layer_and_the_layout_check_uses_them():
    from napari.components import ViewerModel

    from denoise_studio._qt.state.session import Session

    viewer = ViewerModel()
    session = Session(viewer)
    seen = []
    session.axes_changed.connect(seen.append)
    # Our own result layers keep their axes under "denoise_studio"; readers put them at the top level.
    viewer.add_image(np.zeros((2, 32, 32), np.float32), name="ours", metadata={"denoise_studio": {"axes": "cyx"}})
    session.set_source_layer("ours")
    assert session.axes == "CYX" and seen == ["CYX"]
    assert session.data_status() == (True, "ours: 2 channels, 32×32, ready for 2D training")
    session.set_axes("czyx")
    ok, message = session.data_status()
    assert not ok and message.startswith("layer 'ours': axes: invalid axes 'CZYX' (4 letters for an image of 3")
    session.set_source_layer("ours")  # choosing the same layer again keeps the edit
    assert session.axes == "CZYX"
    session.set_mode("2.5d")
    session.set_axes("ZYX")
    ok, message = session.data_status()
    assert not ok and "insufficient stack depth for 2.5D: 2 slices, need 20" in message
    session.set_mode("2d")

    # A guess that drops a singleton dimension is no axes string for the shape: the field stays empty.
    viewer.add_image(np.zeros((1, 32, 32), np.float32), name="one plane")
    session.set_source_layer("one plane")
    assert session.axes == "" and session.axes_for("one plane") is None
    assert session.data_status() == (True, "one plane: 32×32, ready for 2D training")

    viewer.add_image(
        np.zeros((2, 32, 32), np.float32), name="scaled", metadata={"axes": "CYX", "channel_names": ["dapi", "gfp"]},
        scale=(1, 0.2, 0.2), translate=(0, 5, 0),
    )  # fmt: skip
    assert session.axes_for("scaled") == "CYX"  # another layer's own axes, not the field's
    meta = session.layer_meta("scaled", "CYX")
    assert meta.scales == {"Y": 0.2, "X": 0.2} and meta.translation == {"Y": 5.0}
    assert meta.channel_names == ("dapi", "gfp")
    assert session.layer_meta("ours", "CYX").scales == {}  # napari's default scale says nothing of pixel sizes
