"""The Noise2Void workflow clicked through the docks: sample, method, preset, Start, Complete, result layer."""

from __future__ import annotations

import json

import numpy as np
from qt_helpers import PLUGIN, TINY, click, noisy_image, set_fields
from qtpy.QtCore import QThread, QTimer
from qtpy.QtWidgets import QApplication

from denoise_studio.engine.metrics import noise_sigma


def test_n2v_on_the_confocal_sample_in_a_real_thread(studio, qtbot, workspace, threaded):
    viewer, widget = studio
    viewer.open_sample(PLUGIN, "confocal")
    assert widget.method.layer_combo.currentText() == "confocal noisy"
    assert widget.method.data_status.text().startswith("✓")

    click(qtbot, widget.method.method_buttons["n2v"])
    click(qtbot, widget.configure.preset_buttons["fast"])
    set_fields(widget.configure, TINY)
    assert widget.session.config.training.epochs == TINY["epochs"]

    # The event loop must keep turning while the engine trains in napari's thread_worker.
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    gui_thread = QApplication.instance().thread()
    progress_threads = []

    click(qtbot, widget.training.start_button)
    run = widget.training.run
    run.progress.connect(lambda _event: progress_threads.append(QThread.currentThread() is gui_thread))
    assert widget.training.state == "training"
    ticks_at_start = len(ticks)
    qtbot.waitUntil(lambda: widget.training.state == "complete", timeout=90_000)
    timer.stop()

    assert len(ticks) - ticks_at_start >= 5, "the GUI thread was blocked during training"
    assert progress_threads and all(progress_threads), "progress reached widgets outside the GUI thread"
    panel = widget.training.panels["training"]
    assert [epoch for epoch, _loss in panel.val_points] == [1, 2]
    assert panel.best_card.value.text() != "–"
    assert panel.progress.value() == panel.progress.maximum()

    name = "confocal noisy denoised (Noise2Void)"
    assert name in viewer.layers
    noisy = viewer.layers["confocal noisy"].data
    denoised = viewer.layers[name].data
    assert denoised.shape == noisy.shape
    assert noise_sigma(denoised) < 0.5 * noise_sigma(noisy)

    model = widget.session.model
    assert model is not None and model.run_dir.parent.parent == workspace / "models"
    record = json.loads((model.run_dir / "config.json").read_text())
    assert record["method"] == "n2v" and record["config"]["training"]["epochs"] == TINY["epochs"]
    assert (model.run_dir / "model.pth").exists()
    results = list((workspace / "results" / model.name).glob("*.tif"))
    assert [path.name for path in results] == ["confocal_noisy_denoised.tif"]
    card = {widget.results.card_layout.itemAt(i).widget().text() for i in range(widget.results.card_layout.count())}
    assert "Noise2Void" in card and "2D" in card


def test_imported_model_processes_another_layer(studio, qtbot, workspace, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((96, 96)), name="train me")
    click(qtbot, widget.method.method_buttons["n2v2"])
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    assert widget.training.state == "complete"
    run_dir = widget.session.model.run_dir

    # A new session-less import of the saved folder skips straight to inference.
    widget.session.set_model(None)
    assert widget.method.import_model(run_dir)
    assert widget.session.workflow == "import"
    assert widget.tabs.currentIndex() == 4  # the Results tab
    assert widget.session.model.imported and widget.session.model.method == "n2v2"
    assert not widget.training.start()
    assert "Train from scratch" in widget.training.notice.text()

    other = noisy_image((80, 100), seed=3)
    viewer.add_image(other, name="other image")
    widget.results.layer_combo.setCurrentText("other image")
    click(qtbot, widget.results.process_button)
    result = viewer.layers["other image denoised (N2V2)"].data
    assert result.shape == other.shape
    assert noise_sigma(result) < noise_sigma(other)
    assert (workspace / "results" / run_dir.name / "other_image_denoised.tif").exists()
    assert "Saved" in widget.results.process_status.text()
    assert viewer.layers["train me"].data.shape == (96, 96)  # inputs are never replaced


def test_import_refuses_a_folder_without_a_model(studio, tmp_path):
    _viewer, widget = studio
    assert not widget.method.import_model(tmp_path)
    assert "no config.json found" in widget.method.import_status.text()
    assert widget.session.model is None


def test_training_data_can_come_from_a_tiff_file(studio, tmp_path):
    import tifffile

    viewer, widget = studio
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, noisy_image((4, 48, 48)), photometric="minisblack")
    name = widget.method.open_tiff(path)
    assert name == "stack" and viewer.layers["stack"].data.shape == (4, 48, 48)
    assert widget.session.source_layer == "stack"
    assert "4 slices of 48×48" in widget.method.data_status.text()

    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    assert widget.method.open_tiff(bad) is None
    assert widget.method.data_status.text().startswith("✗")
    assert np.asarray(viewer.layers["stack"].data).shape == (4, 48, 48)


def test_process_data_streams_a_tiff_file_to_the_results_folder(studio, qtbot, workspace, tmp_path, synchronous):
    import tifffile

    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    training_id = widget.session.model.name

    path = tmp_path / "big stack.tif"
    tifffile.imwrite(path, noisy_image((3, 48, 56), seed=9))
    results = widget.results
    results.file_edit.setText(str(path))
    results.from_file.setChecked(True)
    click(qtbot, results.process_button)
    target = workspace / "results" / training_id / "big_stack_denoised.tif"
    assert target.exists() and tifffile.imread(target).shape == (3, 48, 56)
    assert viewer.layers["big stack denoised (Noise2Void)"].data.shape == (3, 48, 56)
    assert results.progress.value() == results.progress.maximum()

    # Processing again never overwrites an earlier result.
    click(qtbot, results.process_button)
    assert (workspace / "results" / training_id / "big_stack_denoised-2.tif").exists()

    results.file_edit.setText(str(tmp_path / "missing.tif"))
    assert not results.process()
    assert "no such file" in results.process_status.text()
