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
