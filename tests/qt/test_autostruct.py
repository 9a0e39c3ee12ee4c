"""autoStructN2V through the docks: stage 1, mask review (toggle, regenerate, approve), stage 2, import."""

from __future__ import annotations

import json

import numpy as np
from qt_helpers import TINY, click, line_noise_stack, set_fields

from denoise_studio.engine.metrics import noise_sigma

STAGES = ("stage1", "stage2")


def prepare(qtbot, viewer, widget, mode: str = "2.5d", name: str = "scan lines") -> None:
    viewer.add_image(line_noise_stack(20 if mode == "2.5d" else 2, 64), name=name)
    click(qtbot, widget.method.method_buttons["autostructn2v"])
    click(qtbot, widget.method.mode_buttons[mode])
    set_fields(widget.configure, TINY, stages=STAGES)
    # Two-pixel radius: a 5x5 kernel keeps the review grid small.
    widget.configure.editor("extractor.max_radius").input.setValue(2)


def test_autostruct_2p5d_review_edit_regenerate_approve(studio, qtbot, workspace, threaded):
    viewer, widget = studio
    prepare(qtbot, viewer, widget)
    training, review = widget.training, widget.review
    assert set(training.sections) == {"stage1", "extraction", "stage2"}

    click(qtbot, training.start_button)
    qtbot.waitUntil(lambda: training.state == "awaiting_review", timeout=90_000)
    assert widget.tabs.currentIndex() == 3  # the run brought the Review tab forward
    assert training.panels["stage1"].state == "complete" and training.panels["extraction"].state == "complete"
    assert [review.tabs.tabText(i) for i in range(review.tabs.count())] == [
        "Z-1 (above)",
        "Z (center)",
        "Z+1 (below)",
    ]
    assert review.mask.shape == (3, 5, 5) and review.approve_button.isEnabled()
    assert "coverage" in review.stats.text() and "margin" in review.stats.text()

    # The centre pixel is fixed; any other pixel toggles on click.
    centre_grid = review.planes[1].grid
    before = review.mask.copy()
    click(qtbot, centre_grid.button(2, 2))
    assert np.array_equal(review.mask, before)
    click(qtbot, centre_grid.button(0, 4))
    assert review.mask[1, 0, 4] != before[1, 0, 4]
    assert review.statistics["active_pixels"] == int(review.mask.sum())
    assert "mask edited" in review.reset_button.text()
    click(qtbot, review.planes[0].grid.button(2, 2))  # the centre of an outer plane is an ordinary pixel
    assert review.mask[0, 2, 2] != before[0, 2, 2]

    # Regenerate with stricter parameters: a new extraction replaces the edited mask.
    first = review.extraction
    review.param_editors["max_pixels"].input.setValue(3)
    assert widget.session.config.extractor.max_pixels == 3
    click(qtbot, review.regenerate_button)
    qtbot.waitUntil(lambda: review.extraction is not first and review.approve_button.isEnabled(), timeout=30_000)
    assert review.mask.sum() <= 3
    click(qtbot, review.planes[2].grid.button(2, 3))
    edited = review.mask.copy()

    click(qtbot, review.approve_button)
    assert training.state == "training" and widget.tabs.currentIndex() == 2
    assert not review.approve_button.isEnabled()
    qtbot.waitUntil(lambda: training.state == "complete", timeout=90_000)
    assert training.panels["stage2"].state == "complete" and training.panels["stage2"].val_points

    noisy = viewer.layers["scan lines"].data
    stage1 = viewer.layers["scan lines denoised (stage 1)"].data
    stage2 = viewer.layers["scan lines denoised (autoStructN2V)"].data
    assert stage1.shape == stage2.shape == noisy.shape == (20, 64, 64)
    assert noise_sigma(stage2) < noise_sigma(noisy)

    model = widget.session.model
    assert model.method == "autostructn2v" and set(model.stage_networks) == set(STAGES)
    assert np.array_equal(np.load(model.run_dir / "mask.npy"), edited)
    record = json.loads((model.run_dir / "config.json").read_text())
    assert record["method"] == "autostructn2v" and record["final_stage"] == "stage2"

    # Noisy | stage 1 | stage 2 side by side in one synchronised grid.
    shown = widget.results.open_in_viewer()
    assert shown == ["scan lines", "scan lines denoised (stage 1)", "scan lines denoised (autoStructN2V)"]
    assert viewer.canvas.grid.enabled and viewer.canvas.grid.shape == (1, 3)
    cells = [viewer.canvas.grid.position(viewer.layers.index(name), viewer.layers) for name in shown]
    assert cells == [(0, 0), (0, 1), (0, 2)]
    viewer.layers["scan lines"].contrast_limits = (90, 110)
    assert tuple(viewer.layers["scan lines denoised (stage 1)"].contrast_limits) == (90, 110)
    widget.results.close_side_by_side()
    assert not viewer.canvas.grid.enabled

    # The saved run imports with both stages and the mask.
    widget.session.set_model(None)
    assert widget.method.import_model(model.run_dir)
    imported = widget.session.model
    assert set(imported.stage_networks) == set(STAGES) and np.array_equal(imported.mask, edited)
    assert not widget.results.with_stage1.isHidden() and widget.results.with_stage1.isChecked()


def test_skip_stage2_keeps_the_stage1_model(studio, qtbot, synchronous):
    viewer, widget = studio
    prepare(qtbot, viewer, widget, mode="2d", name="lines")
    assert widget.training.start()
    assert widget.training.state == "awaiting_review"
    assert widget.review.tabs.count() == 1 and widget.review.tabs.tabText(0) == "Kernel"
    click(qtbot, widget.review.skip_button)
    assert widget.training.state == "complete"
    assert widget.training.panels["stage2"].state == "skipped"
    model = widget.session.model
    assert set(model.stage_networks) == {"stage1"} and model.mask is None
    assert "lines denoised (autoStructN2V)" in viewer.layers
    assert json.loads((model.run_dir / "config.json").read_text())["state"] == "skipped"


def test_stop_at_the_review_gate_keeps_stage1_and_unlocks(studio, qtbot, workspace, synchronous):
    viewer, widget = studio
    prepare(qtbot, viewer, widget, mode="2d", name="lines")
    assert widget.training.start()
    assert not widget.training.start()  # the run waits at the review: a second training is refused
    assert "mask review" in widget.training.notice.text()
    # Nor may a model be imported meanwhile: the run would replace it when it ends.
    assert not widget.method.import_model(workspace)
    assert "mask review" in widget.method.import_status.text()
    click(qtbot, widget.training.stop_button)
    assert widget.training.state == "stopped"
    assert not widget.session.active and not widget.review.approve_button.isEnabled()
    assert widget.session.model is not None and "stage1" in widget.session.model.stage_networks
    # The review tab no longer invites clicks on a grid that cannot be edited any more.
    assert widget.review.status.text().startswith("The review is over")
    assert "click pixels" not in widget.review.status.text()
    assert not widget.training.notice.isVisibleTo(widget.training)  # the refusal above no longer applies


def test_auto_approve_goes_straight_to_stage2(studio, qtbot, synchronous):
    viewer, widget = studio
    prepare(qtbot, viewer, widget, mode="2d", name="lines")
    widget.review.auto_approve.input.setChecked(True)
    assert widget.session.config.auto_approve
    assert widget.configure.editor("auto_approve").value() is True  # one config, two views
    assert widget.training.start()
    assert widget.training.state == "complete"
    assert set(widget.session.model.stage_networks) == set(STAGES)


def test_closing_the_last_training_dock_at_the_review_ends_the_run(studio, qtbot, synchronous):
    viewer, widget = studio
    prepare(qtbot, viewer, widget, mode="2d", name="lines")
    assert widget.training.start() and widget.training.state == "awaiting_review"
    widget.session.stop_all()  # what the last Training dock's closing does
    assert widget.training.state == "stopped" and not widget.session.active
    assert "stage1" in widget.session.model.stage_networks


def test_an_edited_mask_stage2_cannot_use_is_refused_and_the_review_stays(studio, qtbot, synchronous):
    import numpy as np

    viewer, widget = studio
    prepare(qtbot, viewer, widget, mode="2d", name="lines")
    widget.configure.editor("neighbourhood_radius", "stage2").input.setValue(1)
    assert widget.training.start() and widget.training.state == "awaiting_review"
    reason = widget.session.training_run.approve(np.ones((1, 3, 3), dtype=bool))
    assert "covers the whole replacement neighbourhood" in reason
    assert widget.training.state == "awaiting_review" and widget.session.active
    click(qtbot, widget.review.skip_button)
    assert widget.training.state == "complete"
