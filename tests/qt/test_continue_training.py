"""Continue training, clicked through the Training dock: after a training, and after importing a model."""

from __future__ import annotations

from qt_helpers import TINY, click, noisy_image, set_fields


def test_continue_training_after_a_run_and_after_an_import(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)
    training = widget.training
    assert not training.continue_button.isEnabled()  # nothing to continue yet
    assert "no model to continue" in training.continue_button.toolTip()
    assert training.start()
    first = widget.session.model
    assert training.continue_button.isEnabled()

    click(qtbot, training.continue_button)
    second = widget.session.model
    assert second is not first and training.state == "complete"
    assert second.summary["initialized_from"] == str(first.run_dir)
    assert second.normalization == first.normalization and second.config.model == first.config.model
    assert second.run_dir != first.run_dir and (first.run_dir / "model.pth").exists()
    card = {widget.results.card_layout.itemAt(i).widget().text() for i in range(widget.results.card_layout.count())}
    assert str(first.run_dir) in card  # "Continued from"

    # Import the first model and continue it on another image: the import workflow allows it.
    widget.session.set_model(None)
    assert widget.method.import_model(first.run_dir)
    viewer.add_image(noisy_image((72, 80), seed=4), name="new data")
    widget.session.set_source_layer("new data")
    assert not training.start()  # Start trains from scratch, which the import workflow does not
    assert training.continue_training()
    third = widget.session.model
    assert third.summary["initialized_from"] == str(first.run_dir)
    assert viewer.layers["new data denoised (Noise2Void)"].data.shape == (72, 80)


def test_an_autostruct_method_cannot_continue(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    click(qtbot, widget.method.method_buttons["autostructn2v"])
    assert not widget.training.continue_button.isEnabled()
    assert "choose N2V or N2V2" in widget.training.continue_button.toolTip()
    assert not widget.training.continue_training()
    assert "choose N2V or N2V2" in widget.training.notice.text()


def test_the_starter_model_imports_with_one_click_and_processes_a_layer(studio, qtbot, synchronous):
    import tifffile

    from denoise_studio.samples import sample_path

    viewer, widget = studio
    viewer.add_image(tifffile.imread(sample_path("fmd_fish_confocal_noisy.tif")), name="confocal noisy")
    click(qtbot, widget.method.starter_button)
    model = widget.session.model
    assert model is not None and model.imported and "starter_model" in str(model.run_dir)
    assert "Imported Noise2Void 2D" in widget.method.import_status.text()
    widget.results.layer_combo.setCurrentText("confocal noisy")
    click(qtbot, widget.results.process_button)
    assert viewer.layers["confocal noisy denoised (Noise2Void)"].data.shape == (512, 512)
