"""Stop, refusal of a second Start, and data checks before training."""

from __future__ import annotations

from qt_helpers import TINY, click, noisy_image, set_fields


def test_stop_keeps_the_best_model_and_a_second_start_is_refused(studio, qtbot, workspace, threaded):
    viewer, widget = studio
    viewer.add_image(noisy_image((96, 96)), name="noisy")
    set_fields(widget.configure, {**TINY, "epochs": 500, "early_stopping": False})
    training = widget.training

    click(qtbot, training.start_button)
    assert training.state == "training" and training.stop_button.isEnabled()
    click(qtbot, training.start_button)  # a second Start while the first one trains
    assert "Start refused" in training.notice.text()
    assert "only one training at a time" in training.notice.text()

    panel = training.panels["training"]
    qtbot.waitUntil(lambda: len(panel.val_points) >= 1, timeout=60_000)
    click(qtbot, training.stop_button)
    qtbot.waitUntil(lambda: training.state == "stopped", timeout=60_000)

    assert not training.stop_button.isEnabled() and training.start_button.isEnabled()
    assert not widget.session.active
    assert "best model so far is kept" in training.status_label.text()
    model = widget.session.model
    assert model is not None and model.stop_reason == "stopped"
    assert len(panel.val_points) < 500
    assert (model.run_dir / "config.json").exists() and (model.run_dir / "model.pth").exists()
    assert widget.method.method_buttons["n2v2"].isEnabled()  # the docks are unlocked again

    # The kept model is usable: process another layer with it.
    viewer.add_image(noisy_image((64, 64), seed=5), name="later")
    widget.results.layer_combo.setCurrentText("later")
    assert widget.results.process()
    qtbot.waitUntil(lambda: "later denoised (Noise2Void)" in viewer.layers, timeout=30_000)
    assert viewer.layers["later denoised (Noise2Void)"].data.shape == (64, 64)

    # And a new training may start now.
    assert training.start()
    click(qtbot, training.stop_button)
    qtbot.waitUntil(lambda: not widget.session.active, timeout=60_000)


def test_2p5d_needs_enough_slices(studio, qtbot):
    viewer, widget = studio
    viewer.add_image(noisy_image((12, 48, 48)), name="short stack")
    click(qtbot, widget.method.mode_buttons["2.5d"])
    assert widget.session.mode == "2.5d" and widget.session.config.mode == "2.5d"
    message = widget.method.data_status.text()
    # The message names the layer, so a user with several layers knows which one is meant.
    assert message.startswith("✗ layer 'short stack': insufficient stack depth for 2.5D: 12 slices, need 20")
    assert not widget.training.start()
    assert "insufficient stack depth for 2.5D: 12 slices, need 20" in widget.training.notice.text()

    viewer.add_image(noisy_image((20, 48, 48)), name="long stack")
    widget.method.select_layer("long stack")
    assert widget.method.data_status.text() == "✓ long stack: 20 slices of 48×48, ready for 2.5D training"
    click(qtbot, widget.method.mode_buttons["2d"])
    assert widget.method.data_status.text().endswith("ready for 2D training")


def test_start_without_data_says_what_is_missing(studio):
    _viewer, widget = studio
    assert not widget.training.start()
    assert "choose an image layer" in widget.training.notice.text().lower()
    assert widget.training.state == "pending"


def test_failed_training_reports_the_reason(studio, synchronous, monkeypatch):
    viewer, widget = studio
    viewer.add_image(noisy_image((64, 64)), name="noisy")
    set_fields(widget.configure, TINY)

    def broken_train(*_args, **_kwargs):
        raise RuntimeError("simulated engine failure")

    monkeypatch.setattr("denoise_studio.engine.run.train", broken_train)
    assert widget.training.start()
    assert widget.training.state == "failed"
    assert "simulated engine failure" in widget.training.status_label.text()
    assert widget.training.panels["training"].state == "failed"
    assert not widget.session.active and widget.training.start_button.isEnabled()


def test_config_edits_read_no_pixels_and_bad_values_are_caught_at_start(studio, synchronous, monkeypatch):
    import numpy as np

    from denoise_studio.engine import io as engine_io

    viewer, widget = studio
    image = noisy_image((64, 64))
    image[3, 5] = np.nan
    viewer.add_image(image, name="holes")
    assert widget.session.source_layer == "holes"
    calls = []
    original = engine_io.check_image
    monkeypatch.setattr(engine_io, "check_image", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr("denoise_studio.engine.data.check_image", engine_io.check_image)
    set_fields(widget.configure, TINY)  # many edits: each re-checks the data, from its shape alone
    assert calls == []
    assert widget.method.data_status.text().startswith("✓")
    assert widget.training.start()  # the values are checked in the job
    assert widget.training.state == "failed"
    assert "1 NaN or Inf values" in widget.training.status_label.text()
    assert widget.session.model is None and not widget.session.active


def test_a_channels_last_layer_is_named_and_explained(studio):
    import numpy as np

    viewer, widget = studio
    viewer.add_image(np.zeros((64, 64, 2), np.float32), name="two channels", rgb=False)
    message = widget.method.data_status.text()
    assert message.startswith("✗ layer 'two channels': looks like a 2-channel image (channels last")
    assert "too small" not in message.lower()


def test_import_mode_fixes_method_and_mode(studio, qtbot):
    _viewer, widget = studio
    buttons = [*widget.method.method_buttons.values(), *widget.method.mode_buttons.values()]
    click(qtbot, widget.method.import_button)
    assert not any(button.isEnabled() for button in buttons)
    click(qtbot, widget.method.train_button)
    assert all(button.isEnabled() for button in buttons)


def test_a_mode_switch_says_which_hand_edits_it_reset(studio, qtbot):
    from denoise_studio.engine.config import make_config

    _viewer, widget = studio
    click(qtbot, widget.method.mode_buttons["2.5d"])
    kernel = [[[False] * 3, [False, True, False], [False] * 3] for _ in range(3)]
    widget.session.set_config(make_config("n2v", "2.5d", "fast", {"learning_rate": 3e-4, "struct_mask": kernel}))
    click(qtbot, widget.method.mode_buttons["2d"])
    assert widget.session.config.training.learning_rate == 3e-4
    assert widget.method.mode_notice.isVisibleTo(widget.method)
    assert "masking.struct_mask" in widget.method.mode_notice.text()
