"""The paired methods (Noise2Noise, CARE, autoencoder) and DecoNoising, clicked through the docks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qt_helpers import TINY, click, noisy_image, set_fields


def clean_image(side: int = 80) -> np.ndarray:
    y, x = np.mgrid[:side, :side]
    return (100 + 40 * np.sin(x / 7.0) * np.cos(y / 11.0)).astype(np.float32)


def test_method_choice_shows_and_hides_the_target_selector(studio, qtbot):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    method = widget.method
    for key, title, hint in (
        ("n2n", "Noise2Noise", "Two noisy acquisitions"),
        ("care", "CARE", "clean"),
        ("autoencoder", "Autoencoder", "baseline"),
    ):
        assert method.method_buttons[key].text() == title and hint in method.method_buttons[key].toolTip()

    assert method.target_box.isHidden() and not method.deconv_box.isHidden()  # N2V: DecoNoising only
    click(qtbot, method.method_buttons["care"])
    assert not method.target_combo.isHidden() and not method.editor("supervised.target_from").isHidden()
    click(qtbot, method.method_buttons["n2n"])
    assert not method.target_combo.isHidden() and method.editor("supervised.target_from").isHidden()
    assert method.deconv_box.isHidden()
    click(qtbot, method.method_buttons["autoencoder"])
    assert method.target_combo.isHidden() and not method.target_box.isHidden()  # the loss stays
    assert "mask_percent" not in widget.configure.editors  # no blind spots to configure

    # CARE with a filter-made target needs no target layer.
    click(qtbot, method.method_buttons["care"])
    method.editor("supervised.target_from").switch.setChecked(True)
    assert widget.session.config.supervised.target_from == "gaussian:1.5"
    assert not method.target_combo.isEnabled() and "made from the input" in method.target_status.text()


def test_care_trains_into_the_targets_scale(studio, qtbot, synchronous):
    viewer, widget = studio
    clean = clean_image()
    noisy = clean + np.random.default_rng(0).normal(0, 20, clean.shape).astype(np.float32)
    target = 3 * clean + 500  # a clean acquisition with another gain and offset
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(target, name="clean")
    click(qtbot, widget.method.method_buttons["care"])
    widget.method.select_target("clean")
    assert widget.method.target_status.text().startswith("✓")
    set_fields(widget.configure, TINY)
    click(qtbot, widget.training.start_button)
    assert widget.training.state == "complete", widget.training.status_label.text()

    result = viewer.layers["noisy denoised (CARE)"].data
    assert result.shape == noisy.shape
    assert abs(result.mean() - target.mean()) < 0.2 * target.std()  # the target's scale, not the input's
    record = json.loads((widget.session.model.run_dir / "config.json").read_text())
    assert record["method"] == "care" and record["target_normalization"] is not None
    assert np.array_equal(viewer.layers["clean"].data, target)  # inputs are never replaced

    # Side by side: the result keeps its own (target) display range; the input's would saturate it.
    order = [layer.name for layer in viewer.layers]
    shown = widget.results.open_in_viewer()
    assert shown == ["noisy", "noisy denoised (CARE)"]
    care_limits = tuple(viewer.layers["noisy denoised (CARE)"].contrast_limits)
    assert care_limits[0] > noisy.max()  # in the target's scale, above every noisy value
    viewer.layers["noisy"].contrast_limits = (90, 110)
    assert tuple(viewer.layers["noisy denoised (CARE)"].contrast_limits) == care_limits
    widget.results.close_side_by_side()
    assert [layer.name for layer in viewer.layers] == order  # the user's layer order is back


def test_a_shifted_target_is_refused_before_training(studio, qtbot, synchronous):
    # The alignment (an FFT of both images) is checked in the worker, never on the GUI thread.
    viewer, widget = studio
    clean = clean_image()
    viewer.add_image(noisy_image((80, 80)), name="noisy")
    viewer.add_image(np.roll(clean, 3, axis=0), name="shifted")
    click(qtbot, widget.method.method_buttons["care"])
    widget.method.select_target("shifted")
    click(qtbot, widget.training.start_button)
    status = widget.training.status_label.text()
    assert "is shifted by (" in status and "pixels" in status
    assert widget.training.state == "failed" and widget.session.model is None
    assert not widget.session.active and widget.training.start_button.isEnabled()

    # Registration shifts the target back, so the same pair trains.
    widget.method.editor("supervised.register_target").input.setChecked(True)
    widget.method.editor("supervised.max_shift").input.setValue(0.5)
    assert widget.session.config.supervised.register_target
    set_fields(widget.configure, {**TINY, "epochs": 1})
    assert widget.training.start()
    assert widget.training.state == "complete"


def test_noise2noise_trains_on_two_noisy_layers(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64), seed=1), name="first")
    viewer.add_image(noisy_image((64, 64), seed=2), name="second")
    click(qtbot, widget.method.method_buttons["n2n"])
    assert widget.session.target_layer == "second"
    set_fields(widget.configure, TINY)
    click(qtbot, widget.training.start_button)
    assert widget.training.state == "complete", widget.training.status_label.text()
    layer = viewer.layers["first denoised (Noise2Noise)"]
    model = widget.session.model
    assert model.method == "n2n" and model.target_normalization is not None
    # The layer is the trained model's answer on the first image, in the target's scale, and is on disk.
    np.testing.assert_allclose(layer.data, model.predict(viewer.layers["first"].data), rtol=1e-4, atol=1e-3)
    assert Path(layer.metadata["denoise_studio"]["file"]).is_file()
    assert json.loads((model.run_dir / "config.json").read_text())["method"] == "n2n"


def test_deconoising_adds_denoised_and_deconvolved_layers(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="blurry")
    click(qtbot, widget.method.method_buttons["n2v"])
    widget.method.editor("deconv.psf_sigma").input.setValue(1.0)
    assert widget.session.config.deconv.psf_sigma == 1.0
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    assert widget.training.state == "complete", widget.training.status_label.text()
    denoised = viewer.layers["blurry denoised (Noise2Void)"].data
    deconvolved = viewer.layers["blurry deconvolved (Noise2Void)"].data
    assert denoised.shape == deconvolved.shape == (64, 64)
    assert not np.allclose(denoised, deconvolved)
    assert widget.session.comparison == (
        "blurry", ["blurry denoised (Noise2Void)", "blurry deconvolved (Noise2Void)"]
    )
