"""The npe2 manifest: every widget opens by its display name, docks share one session per viewer."""

from __future__ import annotations

import pytest
from npe2 import PluginManifest
from qt_helpers import PLUGIN

from denoise_studio._qt.launch import open_studio

WIDGETS = ("Denoise Studio", "Method and Data", "Configure", "Training", "Mask Review", "Results and Inference",
           "Compare")


def test_manifest_is_valid_and_lists_the_docks():
    manifest = PluginManifest.from_distribution(PLUGIN)
    names = [widget.display_name for widget in manifest.contributions.widgets]
    assert names == list(WIDGETS)
    assert {sample.key for sample in manifest.contributions.sample_data} == {"confocal", "starter", "stem", "timelapse"}


@pytest.mark.parametrize("name", WIDGETS)
def test_each_widget_docks(make_napari_viewer, name):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert dock is not None and widget is not None


def test_separate_docks_share_the_session(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _d1, method = viewer.window.add_plugin_dock_widget(PLUGIN, "Method and Data")
    _d2, config = viewer.window.add_plugin_dock_widget(PLUGIN, "Configure")
    _d3, training = viewer.window.add_plugin_dock_widget(PLUGIN, "Training")
    assert method.session is config.session is training.session
    method.method_buttons["autostructn2v"].setChecked(True)
    assert "stage2.patch_size" in config.editors and set(training.sections) == {"stage1", "extraction", "stage2"}


def test_open_studio_loads_a_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = open_studio(viewer, "confocal")
    assert "confocal noisy" in viewer.layers
    assert widget.session.source_layer == "confocal noisy"


def test_a_run_started_in_one_dock_shows_in_the_separate_docks(make_napari_viewer, qtbot, synchronous):
    from qt_helpers import TINY, line_noise_stack, set_fields

    viewer = make_napari_viewer()
    _d1, studio = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise Studio")
    _d2, training = viewer.window.add_plugin_dock_widget(PLUGIN, "Training")
    _d3, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Mask Review")
    viewer.add_image(line_noise_stack(2, 64), name="lines")
    studio.method.method_buttons["autostructn2v"].setChecked(True)
    set_fields(studio.configure, TINY, stages=("stage1", "stage2"))
    assert studio.training.start()
    assert training.run is studio.training.run and training.state == "awaiting_review"
    assert training.panels["stage1"].val_points
    assert review.reviewing and review.mask is not None
    review.approve()
    assert studio.training.state == training.state == "complete"


def test_closing_one_training_dock_leaves_the_run_to_the_other(make_napari_viewer, qtbot, synchronous):
    from qt_helpers import TINY, line_noise_stack, set_fields

    viewer = make_napari_viewer()
    _d1, studio = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise Studio")
    dock, training = viewer.window.add_plugin_dock_widget(PLUGIN, "Training")
    viewer.add_image(line_noise_stack(2, 64), name="lines")
    studio.method.method_buttons["autostructn2v"].setChecked(True)
    set_fields(studio.configure, TINY, stages=("stage1", "stage2"))
    assert studio.training.start() and studio.training.state == "awaiting_review"
    run = studio.training.run

    viewer.window.remove_dock_widget(dock)
    training.deleteLater()
    qtbot.waitUntil(lambda: studio.session._training_views == 1, timeout=5_000)
    assert not run.stop.requested and studio.training.state == "awaiting_review"

    studio.training.deleteLater()  # the last training view goes: nothing may go on unseen
    qtbot.waitUntil(lambda: run.stop.requested, timeout=5_000)
