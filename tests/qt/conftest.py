"""Fixtures for the napari widget tests: a private workspace, the docked plugin, tiny training settings.

pytest-xvfb starts an X server; napari's ``make_napari_viewer`` fixture comes with napari itself.
"""

from __future__ import annotations

import pytest
from qt_helpers import PLUGIN

from denoise_studio._qt.state import settings
from denoise_studio._qt.workers import worker


@pytest.fixture(autouse=True)
def workspace(tmp_path):
    """Every test writes models and results into its own temporary workspace."""
    folder = tmp_path / "workspace"
    settings.set_default_workspace(folder)
    yield folder
    settings.set_default_workspace(None)


@pytest.fixture
def synchronous():
    """Run engine jobs on the GUI thread (the DENOISE_STUDIO_NOTHREADS switch)."""
    worker.set_synchronous(True)
    yield
    worker.set_synchronous(None)


@pytest.fixture
def studio(make_napari_viewer):
    """A viewer with the all-in-one Denoise Studio dock."""
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise Studio")
    return viewer, widget


@pytest.fixture
def threaded():
    """Run engine jobs in napari's worker thread even when DENOISE_STUDIO_NOTHREADS is set."""
    worker.set_synchronous(False)
    yield
    worker.set_synchronous(None)
