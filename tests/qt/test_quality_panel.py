"""The Results dock's quality panel: the noise model plot, Assess, its numbers and its map layers."""

import numpy as np
import pytest

from tests.engine.test_noise_model import clean_image, noisy_of
from tests.qt.qt_helpers import TINY, click, set_fields


@pytest.fixture
def trained(studio, qtbot, workspace, synchronous):
    viewer, widget = studio
    noisy = noisy_of(clean_image(96)).astype(np.float32)
    viewer.add_image(noisy, name="cells")
    click(qtbot, widget.method.method_buttons["n2v"])
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    assert widget.training.state == "complete"
    return viewer, widget, noisy


def test_the_noise_model_is_plotted_and_a_result_is_assessed(trained, qtbot):
    viewer, widget, noisy = trained
    panel = widget.results.quality
    model = widget.session.model
    assert model.noise_model is not None
    assert "Noise model: gain" in panel.noise_label.text()
    assert not panel.plot.isHidden()
    xs, ys = panel.measured_curve.getData()
    assert len(xs) == len(model.noise_model.bins.signal) and np.all(ys > 0)

    noisy_name, results = widget.session.comparison
    assert noisy_name == "cells" and panel.result_combo.currentText() == results[0]
    assert panel.assess_button.isEnabled()
    click(qtbot, panel.assess_button)

    assessment = panel.assessment
    assert assessment is not None and np.isfinite(assessment.psnr_estimate)
    assert "Monte-Carlo" in assessment.mse_method  # the session's model made the result: its divergence
    assert "estimated PSNR" in panel.status.text()
    assert "estimated PSNR" in panel.numbers.text() and "plausible PSNR" in panel.numbers.text()
    residual_name, likelihood_name = panel.added_layers
    assert viewer.layers[residual_name].data.shape == noisy.shape
    assert viewer.layers[likelihood_name].data.dtype == np.float32
    assert viewer.layers["cells"].data is not None and np.array_equal(viewer.layers["cells"].data, noisy)

    # A second assessment adds new layers and never replaces the first ones.
    click(qtbot, panel.assess_button)
    assert set(panel.added_layers).isdisjoint({residual_name, likelihood_name})
    assert residual_name in viewer.layers


def test_assess_says_why_it_cannot_start(trained, qtbot):
    viewer, widget, _noisy = trained
    panel = widget.results.quality
    _noisy_name, results = widget.session.comparison
    viewer.layers.remove(results[0])  # the comparison goes with it
    assert not panel.assess_button.isEnabled()
    assert not panel.assess()
    assert "Nothing to assess" in panel.status.text()


def test_without_a_model_there_is_no_plot(studio):
    _viewer, widget = studio
    panel = widget.results.quality
    assert panel.plot.isHidden()
    assert "No model yet" in panel.noise_label.text()
    assert not panel.assess_button.isEnabled()


def test_a_single_plane_stack_gets_maps_of_its_own_shape(trained, qtbot):
    viewer, widget, noisy = trained
    _noisy_name, results = widget.session.comparison
    result = np.asarray(viewer.layers[results[0]].data)
    viewer.add_image(noisy[None], name="plane", scale=(2.0, 0.5, 0.5))
    viewer.add_image(result[None], name="plane result", scale=(2.0, 0.5, 0.5))
    widget.session.set_comparison("plane", ["plane result"])
    panel = widget.results.quality
    click(qtbot, panel.assess_button)
    assert "estimated PSNR" in panel.status.text(), panel.status.text()
    for name in panel.added_layers:
        assert viewer.layers[name].data.shape == (1, 96, 96)
        assert tuple(viewer.layers[name].scale) == (2.0, 0.5, 0.5)
    # Not made by the session's model or a filter: the estimate says what it assumed.
    assert any("J-invariant" in note or "blind-spot" in note for note in panel.assessment.notes)


def test_calibration_frames_give_the_noise_model_assess_and_compare_use(trained, qtbot):
    viewer, widget, _noisy = trained
    panel = widget.results.quality
    frames = np.stack([noisy_of(clean_image(96), seed=s) for s in range(10)]).astype(np.float32)
    viewer.add_image(frames, name="static field")
    assert "static field" in [panel.frames_combo.itemText(i) for i in range(panel.frames_combo.count())]
    panel.frames_combo.setCurrentText("static field")
    click(qtbot, panel.calibrate_button)

    noise = widget.session.noise_model
    assert noise is widget.session.calibrated_noise and noise.source == "calibration"
    assert noise.gain == pytest.approx(2.0, rel=0.15)  # the synthetic camera's gain
    assert "from calibration frames" in panel.noise_label.text() and not panel.forget_button.isHidden()
    click(qtbot, panel.assess_button)
    assert panel.assessment.noise_model is noise
    assert not any("measured from the data" in note for note in panel.assessment.notes)

    # Forget: back to the model's own noise model.
    click(qtbot, panel.forget_button)
    assert widget.session.noise_model is widget.session.model.noise_model
    assert "fitted to the data" in panel.noise_label.text() and panel.forget_button.isHidden()


def test_dark_frames_alone_need_a_result_and_say_so(studio, qtbot, synchronous):
    viewer, widget = studio
    panel = widget.results.quality
    viewer.add_image(np.random.default_rng(0).normal(100, 3, (5, 64, 64)).astype(np.float32), name="dark")
    panel.dark_combo.setCurrentText("dark")
    assert panel.calibrate_button.isEnabled()
    assert not panel.calibrate()
    assert "Choose calibration frames" in panel.status.text()
