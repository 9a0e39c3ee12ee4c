"""Docks and layers coming and going while a training runs: nothing runs on unseen, nothing is switched unasked."""

from __future__ import annotations

import numpy as np
import pytest
from qt_helpers import PLUGIN, TINY, click, noisy_image, set_fields

import denoise_studio as ds
from denoise_studio._qt.state.session import session_for
from denoise_studio._qt.widgets.training_dock import TrainingDock

LONG = {**TINY, "epochs": 500, "early_stopping": False}


@pytest.fixture
def noisy_model(tmp_path):
    config = ds.make_config("n2v", patch_size=32, depth=1, base_features=8, epochs=1, patches_per_image=4, seed=0)
    ds.train(noisy_image((64, 64)), config, run_dir=tmp_path / "model")
    return tmp_path / "model"


def test_closing_the_dock_stops_the_run_and_a_reopened_dock_can_stop_it(make_napari_viewer, qtbot, threaded):
    viewer = make_napari_viewer()
    viewer.add_image(noisy_image((96, 96)), name="noisy")
    first, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise Studio")
    single, training = viewer.window.add_plugin_dock_widget(PLUGIN, "Training")
    set_fields(widget.configure, LONG)
    session = session_for(viewer)
    assert training.start()
    run = session.training_run
    qtbot.waitUntil(lambda: run.state == "training", timeout=30_000)

    # A dock opened while the run goes on shows it and can stop it.
    again = TrainingDock(viewer)
    assert again.run is run and again.stop_button.isEnabled() and again.state == "training"
    again.deleteLater()

    viewer.window.remove_dock_widget(single)
    viewer.window.remove_dock_widget(first)
    qtbot.waitUntil(lambda: run.state == "stopped", timeout=60_000)  # no dock shows it any more
    assert "best model so far is kept" in run.message or "no model was kept" in run.message
    session.busy_changed.emit(False)  # the closed docks are disconnected: nothing calls into them


def test_renaming_the_input_during_the_run_keeps_results_beside_it(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)
    renamed = []

    def rename_on_first_epoch(event):
        if event.kind == "epoch" and not renamed:
            viewer.layers["noisy"].name = "cells"
            renamed.append(True)

    widget.session.run_started.connect(lambda run: run.progress.connect(rename_on_first_epoch))
    assert widget.training.start()
    assert widget.training.state == "complete", widget.training.status_label.text()
    assert widget.session.source_layer == "cells"
    assert "cells denoised (Noise2Void)" in viewer.layers
    noisy, results = widget.session.comparison
    assert noisy == "cells" and results == ["cells denoised (Noise2Void)"]
    assert widget.results.open_in_viewer()


def test_deleting_the_input_during_the_run_is_said_and_nothing_is_switched(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    viewer.add_image(noisy_image((64, 64), sigma=0.0), name="reference")
    widget.method.select_layer("noisy")
    set_fields(widget.configure, TINY)

    def delete_on_first_epoch(event):
        if event.kind == "epoch" and "noisy" in viewer.layers:
            viewer.layers.remove("noisy")

    widget.session.run_started.connect(lambda run: run.progress.connect(delete_on_first_epoch))
    assert widget.training.start()
    assert widget.training.state == "complete"
    assert "was deleted during the run" in widget.training.status_label.text()
    assert "noisy denoised (Noise2Void)" in viewer.layers  # the run went on with its copy
    # The training data was not silently switched to the reference image.
    assert widget.session.source_layer is None
    assert "'noisy' was deleted" in widget.method.data_status.text()
    assert not widget.training.start()
    assert widget.session.model is not None and np.isfinite(viewer.layers["noisy denoised (Noise2Void)"].data).all()


def test_a_stop_says_how_to_get_a_result(studio, qtbot, threaded):
    viewer, widget = studio
    viewer.add_image(noisy_image((96, 96)), name="noisy")
    set_fields(widget.configure, LONG)
    training = widget.training
    click(qtbot, training.start_button)
    qtbot.waitUntil(lambda: len(training.panels["training"].val_points) >= 1, timeout=60_000)
    click(qtbot, training.stop_button)
    qtbot.waitUntil(lambda: training.state == "stopped", timeout=60_000)
    assert "Results dock (Process)" in training.status_label.text()


def test_process_with_an_empty_viewer_says_what_to_do(studio, tmp_path, noisy_model):
    _viewer, widget = studio
    widget.session.import_model(noisy_model)
    widget.results.from_file.setChecked(False)
    assert not widget.results.process()
    text = widget.results.process_status.text()
    assert "no image layer to denoise" in text and "no layer named" not in text


def test_a_separate_dock_opens_as_a_tab_beside_the_studio(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QDockWidget

    viewer = make_napari_viewer(show=True)
    studio_dock, _widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise Studio")
    qtbot.wait(50)
    full_height = studio_dock.height()
    training_dock, _training = viewer.window.add_plugin_dock_widget(PLUGIN, "Training")
    window = viewer.window._qt_window
    qtbot.waitUntil(lambda: training_dock in window.tabifiedDockWidgets(studio_dock), timeout=5_000)
    assert isinstance(training_dock, QDockWidget)
    qtbot.wait(50)
    # Tabbed, not stacked: the new dock, raised, has most of the column (less its tab bar), not half of it.
    assert training_dock.isVisible() and training_dock.height() >= 0.75 * full_height
