"""Training one model on several layers or files, chosen in the Method dock."""

from __future__ import annotations

import tifffile
from qt_helpers import TINY, click, noisy_image, set_fields
from qtpy.QtCore import Qt


def test_one_model_trains_on_several_layers(studio, qtbot, synchronous, monkeypatch):
    from denoise_studio._qt.workers import training_run

    seen = []

    class Recording(training_run.EngineRun):
        def __init__(self, config, images, **options):
            seen.append([image.shape for image in images])
            super().__init__(config, images, **options)

    monkeypatch.setattr(training_run, "EngineRun", Recording)
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64), seed=1), name="cell 1")
    viewer.add_image(noisy_image((72, 80), seed=2), name="cell 2")
    viewer.add_image(noisy_image((64, 64), seed=3), name="cell 3")
    method = widget.method
    method.select_layer("cell 1")
    assert [method.extra_list.item(i).text() for i in range(method.extra_list.count())] == ["cell 2", "cell 3"]
    method.extra_list.item(0).setCheckState(Qt.CheckState.Checked)  # the user ticks "cell 2"
    assert widget.session.extra_layers == ["cell 2"]
    assert "cell 1 (and 1 more layer)" in method.data_status.text()
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    assert seen == [[(64, 64), (72, 80)]] and widget.training.run.engine.names == ["cell 1", "cell 2"]
    assert "cell 1 denoised (Noise2Void)" in viewer.layers and "cell 2 denoised (Noise2Void)" not in viewer.layers

    # A paired method takes one image and its target: several layers are refused, saying why.
    click(qtbot, method.method_buttons["n2n"])
    assert not widget.training.start_button.isEnabled()
    assert "trains on one image and its target" in method.data_status.text()


def test_opening_several_tiffs_trains_on_all_of_them(studio, tmp_path):
    viewer, widget = studio
    paths = []
    for index in range(2):
        paths.append(tmp_path / f"frame_{index}.tif")
        tifffile.imwrite(paths[-1], noisy_image((48, 48), seed=index))
    assert widget.method.open_tiffs(paths) == ["frame_0", "frame_1"]
    assert widget.session.source_layer == "frame_0" and widget.session.extra_layers == ["frame_1"]
