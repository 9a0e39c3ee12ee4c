"""GainTuning from the Results dock and simulation-based training from the Method dock, clicked through."""

from __future__ import annotations

import numpy as np
from qt_helpers import TINY, click, noisy_image, set_fields


def test_adapt_to_this_image_makes_an_adapted_model_and_denoises_the_layer(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    first = widget.session.model
    results = widget.results
    assert results.adapt_button.isEnabled()
    unseen = noisy_image((72, 72), sigma=60.0, seed=5) * 3 + 500
    viewer.add_image(unseen.copy(), name="unseen")
    results.from_layer.setChecked(True)
    results.layer_combo.setCurrentText("unseen")
    results.adapt_time.setValue(5)
    click(qtbot, results.adapt_button)
    adapted = widget.session.model
    assert adapted is not first and adapted.summary["adapted_from"] == str(first.run_dir)
    assert adapted.run_dir.name.endswith("-adapted") and (adapted.run_dir / "model.pth").exists()
    assert "unseen denoised (Noise2Void, adapted)" in viewer.layers
    assert viewer.layers["unseen denoised (Noise2Void, adapted)"].data.shape == (72, 72)
    assert "held-out loss" in results.process_status.text()
    card = {results.card_layout.itemAt(i).widget().text() for i in range(results.card_layout.count())}
    assert any(text.startswith(str(first.run_dir)) for text in card)  # "Adapted from"
    assert np.array_equal(viewer.layers["unseen"].data, unseen)  # the input layer is untouched


def test_adapt_needs_a_model(studio, qtbot, synchronous):
    _viewer, widget = studio
    results = widget.results
    assert not results.adapt_button.isEnabled()
    assert not results.adapt()
    assert "no model yet" in results.process_status.text()


def test_sbd_trains_on_clean_layers_with_the_noise_of_the_image(studio, qtbot, synchronous):
    viewer, widget = studio
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    clean = (400 + 200 * np.sin(xx / 6.0) * np.cos(yy / 8.0)).astype(np.float32)
    viewer.add_image((2.0 * rng.poisson(clean / 2.0) + rng.normal(0, 3, clean.shape)).astype(np.float32), name="noisy")
    viewer.add_image(clean, name="clean A")
    viewer.add_image(np.roll(clean, 7, axis=1), name="clean B")
    method = widget.method
    click(qtbot, method.method_buttons["sbd"])
    assert method.simulation_box.isVisibleTo(method) and not method.extra_section.isVisibleTo(method)
    assert "sees" in method.field_of_view_label.text()
    method.select_layer("noisy")
    assert not widget.training.start()  # no clean layer chosen yet
    assert "clean" in widget.training.notice.text()
    method.set_clean_layers(["clean A", "clean B"])
    assert "SBD trains on 2 clean layers" in method.data_status.text()
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    model = widget.session.model
    assert model.method == "sbd"
    simulation = model.config.simulation
    assert simulation.gain is not None and simulation.noise_source == "a noisy image"
    assert "noisy denoised (Simulation (SBD))" in viewer.layers


def test_sbd_with_the_current_models_noise(studio, qtbot, synchronous):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    yy, xx = np.mgrid[:64, :64]
    viewer.add_image((400 + 200 * np.sin(xx / 6.0) * np.cos(yy / 8.0)).astype(np.float32), name="clean")
    set_fields(widget.configure, TINY)
    assert widget.training.start()
    noise = widget.session.model.noise_model
    method = widget.method
    click(qtbot, method.method_buttons["sbd"])
    method.set_clean_layers(["clean"])
    method.noise_combo.setCurrentIndex(1)
    set_fields(widget.configure, TINY)
    assert widget.training.start(), widget.training.notice.text()
    run = widget.training.run
    assert widget.session.model.method == "sbd", (run.state, run.message, widget.session.method)
    assert widget.session.model.config.simulation.gain == noise.gain


def test_simulation_fields_take_zero_and_negative_values_apart_from_empty(studio, qtbot):
    """An empty SBD field ("fitted at Start") sits below the valid range, so a gain of exactly 0
    (Gaussian-only noise) and a negative signal range (dark-subtracted data) are values of their own."""
    _viewer, widget = studio
    method = widget.method
    click(qtbot, method.method_buttons["sbd"])
    gain, low, high = (method.editor(f"simulation.{name}") for name in ("gain", "signal_low", "signal_high"))
    assert gain.value() is None and gain.input.text() == "fitted at Start"
    gain.input.setValue(0.0)
    assert gain.value() == 0.0 and widget.session.config.simulation.gain == 0.0
    gain.input.setValue(gain.input.minimum())
    assert gain.value() is None and widget.session.config.simulation.gain is None
    gain.input.stepBy(1)  # a step up from empty lands on the bound, not on a step above the sentinel
    assert gain.value() == 0.0
    gain.input.stepBy(-1)
    assert gain.value() is None and not gain.has_error
    low.input.stepBy(1)  # no bottom: from empty to 0
    assert low.value() == 0.0
    low.input.setValue(low.input.minimum())
    high.input.setValue(50.0)
    low.input.setValue(-20.0)
    assert (widget.session.config.simulation.signal_low, widget.session.config.simulation.signal_high) == (-20.0, 50.0)
    offset = method.editor("simulation.offset")
    offset.input.setValue(-5.0)
    assert widget.session.config.simulation.offset == -5.0
