"""Configure dock: presets fill every field, fields follow the pydantic constraints, bad combinations are flagged."""

from __future__ import annotations

import pytest
from qt_helpers import click
from qtpy.QtWidgets import QCheckBox, QComboBox

from denoise_studio._qt.widgets.fields import get_path
from denoise_studio.engine.config import DataConfig, make_autostruct_config, make_config


@pytest.mark.parametrize("preset", ["fast", "balanced", "quality"])
def test_preset_buttons_fill_every_field(studio, qtbot, preset):
    _viewer, widget = studio
    dock = widget.configure
    dock.editor("epochs").input.setValue(3)  # a hand edit that the preset must overwrite
    assert widget.session.config.preset is None and "custom" in dock.preset_label.text()

    click(qtbot, dock.preset_buttons[preset])
    expected = make_config("n2v", "2d", preset).to_dict()
    assert widget.session.config.to_dict() == expected
    for editor in dock.editors.values():
        assert editor.value() == get_path(expected, editor.path), editor.dotted
    assert dock.preset_buttons[preset].isChecked()


def test_autostruct_has_two_stage_columns_and_an_extractor(studio, qtbot):
    _viewer, widget = studio
    click(qtbot, widget.method.method_buttons["autostructn2v"])
    dock = widget.configure
    click(qtbot, dock.preset_buttons["balanced"])
    expected = make_autostruct_config("2d", "balanced").to_dict()
    assert {"stage1.patch_size", "stage2.patch_size", "extractor.base_percentile", "extractor.max_pixels"} <= set(
        dock.editors
    )
    for editor in dock.editors.values():
        assert editor.value() == get_path(expected, editor.path), editor.dotted
    # The stages differ in the balanced preset, and each column edits its own stage.
    assert dock.editor("patch_size", "stage1").value() == 32 and dock.editor("patch_size", "stage2").value() == 64
    dock.editor("learning_rate", "stage2").input.setValue(2e-5)
    assert widget.session.config.stage2.training.learning_rate == pytest.approx(2e-5)
    assert widget.session.config.stage1.training.learning_rate == pytest.approx(1e-4)
    dock.editor("extractor.base_percentile").input.setValue(60.0)
    assert widget.session.config.extractor.base_percentile == 60.0


def test_fields_take_ranges_and_tooltips_from_the_config(studio):
    _viewer, widget = studio
    dock = widget.configure
    patch = dock.editor("patch_size")
    assert (patch.input.minimum(), patch.input.maximum()) == (16, 512)
    assert DataConfig.model_fields["patch_size"].description in patch.input.toolTip()
    assert "range [16, 512]" in patch.input.toolTip()
    assert dock.editor("learning_rate").input.minimum() > 0  # gt=0
    # The session starts from the Fast preset, whose time budget the field shows.
    assert dock.editor("max_time").value() == make_config("n2v", "2d", "fast").training.max_time == 110.0
    assert isinstance(dock.editor("device").input, QComboBox)
    assert [dock.editor("device").input.itemText(i) for i in range(3)] == ["auto", "cpu", "cuda"]
    assert isinstance(dock.editor("augment").input, QCheckBox)
    assert dock.advanced.text() == "Advanced"
    for name in ("resize_conv", "upsampling", "strategy", "seed", "val_fraction", "device"):
        assert name in dock.editors
    seed = dock.editor("seed")
    seed.input.setValue(seed.input.minimum())
    assert widget.session.config.training.seed is None and seed.input.text() == "random"


def test_invalid_combination_is_flagged_at_the_fields(studio):
    viewer, widget = studio
    dock = widget.configure
    dock.editor("depth").input.setValue(4)
    dock.editor("patch_size").input.setValue(72)  # not a multiple of 2**4

    patch, depth = dock.editor("patch_size"), dock.editor("depth")
    assert patch.has_error and depth.has_error
    assert "must be a multiple of 16" in patch.error_label.text()
    assert "border" in patch.input.styleSheet()
    assert dock.error_banner.isVisibleTo(dock)
    assert widget.session.config.data.patch_size != 72  # the config keeps its last valid state
    viewer.add_image(__import__("numpy").random.default_rng(0).normal(size=(64, 64)), name="img")
    assert not widget.training.start()
    assert "configuration is not valid" in widget.training.notice.text()

    patch.input.setValue(64)
    assert not patch.has_error and not depth.has_error and not dock.error_banner.isVisibleTo(dock)
    assert widget.session.config.data.patch_size == 64 and widget.session.config.model.depth == 4
    assert widget.session.config_error is None


def test_mode_switch_keeps_hand_edits(studio, qtbot):
    _viewer, widget = studio
    widget.configure.editor("epochs").input.setValue(7)
    click(qtbot, widget.method.mode_buttons["2.5d"])
    assert widget.session.config.mode == "2.5d" and widget.session.config.training.epochs == 7
    assert widget.configure.editor("epochs").value() == 7
