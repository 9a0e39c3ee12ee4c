"""The Compare dock: numbers with and without a reference, filter layers, the side-by-side grid."""

from __future__ import annotations

import numpy as np
import pytest
from qt_helpers import PLUGIN, click


@pytest.fixture
def pair(make_napari_viewer):
    """A viewer with a noisy image, its clean reference and a (pretend) result, plus the Compare dock."""
    viewer = make_napari_viewer()
    y, x = np.mgrid[:80, :80]
    clean = (100 + 40 * np.sin(x / 7.0) * np.cos(y / 11.0)).astype(np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 20, clean.shape).astype(np.float32)
    viewer.add_image(clean, name="reference")
    viewer.add_image(noisy, name="noisy")
    viewer.add_image((0.5 * noisy + 0.5 * clean).astype(np.float32), name="result")
    _dock, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare")
    dock.set_noisy("noisy")
    dock.set_results(["result"])
    return viewer, dock


def test_with_a_reference_the_gaussian_filter_beats_the_noisy_input(pair, qtbot, synchronous):
    viewer, dock = pair
    dock.set_reference("reference")
    dock.set_filter("gaussian", size=2.0)
    dock.set_filter("median", size=3)
    before = {layer.name: np.array(layer.data) for layer in viewer.layers}
    click(qtbot, dock.compute_button)

    psnr = dock.column_values("PSNR (dB)")
    assert list(psnr) == ["noisy", "result", "noisy gaussian 2", "noisy median 3"]
    assert float(psnr["noisy gaussian 2"]) > float(psnr["noisy"]) + 3
    assert set(dock.column_values("SSIM")) == set(psnr) and "reference" in dock.note.text()

    # Filter outputs are new layers; nothing that was there changed.
    for name, data in before.items():
        assert np.array_equal(viewer.layers[name].data, data)
    assert viewer.layers["noisy gaussian 2"].data.shape == (80, 80)
    # Side by side: the compared layers and the reference, in one synchronised grid.
    grid = viewer.canvas.grid
    assert grid.enabled and grid.shape == (2, 3)  # five views on two rows, wide enough for their captions
    assert dock.side_by_side.layers == ["noisy", "result", "noisy gaussian 2", "noisy median 3", "reference"]
    assert all(layer.visible == (layer.name in dock.side_by_side.layers) for layer in viewer.layers)

    click(qtbot, dock.single_button)
    assert not viewer.canvas.grid.enabled and viewer.layers["reference"].visible

    # Computing again adds fresh filter layers rather than overwriting the first ones.
    dock.set_filter("median", on=False)
    click(qtbot, dock.compute_button)
    assert "noisy gaussian 2 [2]" in viewer.layers and "noisy gaussian 2 [2]" in dock.compared


def test_without_a_reference_only_noise_estimates_are_shown(pair, qtbot, synchronous):
    _viewer, dock = pair
    dock.set_reference(None)
    dock.set_filter("box", size=3)
    assert "only noise estimates" in dock.note.text()
    assert dock.compute()
    headers = [dock.table.horizontalHeaderItem(c).text() for c in range(dock.table.columnCount())]
    assert "PSNR (dB)" not in headers and "SSIM" not in headers
    noise = {name: float(value) for name, value in dock.column_values("Noise left (σ)").items()}
    assert noise["noisy box 3"] < noise["noisy"]


def test_live_preview_follows_the_slider_and_gives_way_to_compute(pair, qtbot, synchronous):
    from denoise_studio.engine.filters import apply_filter

    viewer, dock = pair
    noisy = viewer.layers["noisy"].data
    dock.set_filter("gaussian", size=1.0)
    preview = "noisy gaussian 1 (preview)"
    qtbot.waitUntil(lambda: preview in viewer.layers, timeout=5_000)
    np.testing.assert_allclose(viewer.layers[preview].data, apply_filter(noisy, "gaussian", 1.0))
    assert preview not in dock.chosen_results() and all(preview != r for r in dock.result_list_names())

    layer = viewer.layers[preview]
    dock.filter_sizes["gaussian"].setValue(3.0)  # dragging the slider updates (and renames) the same layer
    qtbot.waitUntil(lambda: layer.name == "noisy gaussian 3 (preview)", timeout=5_000)
    np.testing.assert_allclose(layer.data, apply_filter(noisy, "gaussian", 3.0))
    assert sum(name.endswith("(preview)") for name in (layer.name for layer in viewer.layers)) == 1

    # Another noisy layer of another shape: its preview replaces the first one, none is left behind.
    viewer.add_image(noisy[:40, :48].copy(), name="crop")
    dock.set_noisy("crop")
    qtbot.waitUntil(lambda: "crop gaussian 3 (preview)" in viewer.layers, timeout=5_000)
    assert [name for name in (layer.name for layer in viewer.layers) if name.endswith("(preview)")] == [
        "crop gaussian 3 (preview)"
    ]
    dock.set_noisy("noisy")
    qtbot.waitUntil(lambda: "noisy gaussian 3 (preview)" in viewer.layers, timeout=5_000)

    dock.set_filter("nlm")  # too slow to follow a slider: no preview, measured by Compute only
    dock.set_filter("median", size=5)
    qtbot.waitUntil(lambda: "noisy median 5 (preview)" in viewer.layers, timeout=5_000)
    assert not any("nlm" in layer.name for layer in viewer.layers)
    dock.set_filter("median", on=False)
    qtbot.waitUntil(lambda: "noisy median 5 (preview)" not in viewer.layers, timeout=5_000)

    dock.set_filter("nlm", on=False)
    click(qtbot, dock.compute_button)
    assert not any(layer.name.endswith("(preview)") for layer in viewer.layers)
    assert "noisy gaussian 3" in viewer.layers and "noisy gaussian 3" in dock.compared
    assert np.array_equal(viewer.layers["noisy"].data, noisy)


def test_compare_needs_something_to_compare(pair, synchronous):
    _viewer, dock = pair
    dock.set_results([])
    assert not dock.compute()
    assert "at least one" in dock.status.text()


def test_compare_is_a_tab_of_the_studio(studio):
    _viewer, widget = studio
    assert widget.tabs.tabText(5) == "6 Compare" and widget.compare.session is widget.session


# -- a first-time user's findings ------------------------------------------------------------------------------


def test_the_table_fits_the_dock_at_its_default_width(pair, qtbot, synchronous):
    """Every column fits the dock as napari first lays it out: no column is cut, nothing scrolls."""
    viewer, dock = pair
    viewer.window.show()
    qtbot.waitExposed(viewer.window._qt_window)
    dock.set_reference("reference")  # the widest table: PSNR, SSIM, SNR and both noise columns
    dock.set_filter("gaussian", size=2.0)
    dock.set_filter("box3d", size=3)
    assert dock.compute()
    qtbot.wait(50)  # the layout settles

    table, header = dock.table, dock.table.horizontalHeader()
    vertical = table.verticalHeader().width() if table.verticalHeader().isVisible() else 0
    assert table.columnCount() == 6 and table.viewport().width() <= dock.width()
    assert header.length() + vertical <= table.viewport().width()
    assert table.horizontalScrollBar().maximum() == 0
    for column in range(1, table.columnCount()):  # the numbers and their titles are never cut
        needed = max(table.sizeHintForColumn(column), header.sectionSizeHint(column))
        assert table.columnWidth(column) >= needed, header.model().headerData(column, header.orientation())
    names = [table.item(row, 0) for row in range(table.rowCount())]
    assert table.columnWidth(0) >= 60 and all(item.toolTip().startswith(item.text()) for item in names)


@pytest.fixture
def trained(make_napari_viewer):
    """A viewer as a training leaves it: an unrelated image first, the noisy one, a clean average of the
    same field, and the Compare dock open before the result arrives."""
    viewer = make_napari_viewer()
    y, x = np.mgrid[:80, :80]
    clean = (100 + 40 * np.sin(x / 7.0) * np.cos(y / 11.0)).astype(np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 20, clean.shape).astype(np.float32)
    viewer.add_image(noisy[:40, :40].copy(), name="overview")
    viewer.add_image(noisy, name="cells")
    viewer.add_image(clean, name="Cells_AVG50")
    _dock, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare")
    return viewer, dock, clean


def add_result(viewer, name: str, data, source: str = "cells") -> str:
    viewer.add_image(data, name=name, metadata={"denoise_studio": {"source": source, "output": "denoised"}})
    return name


def test_a_new_result_is_ticked_with_its_input_and_reference(trained):
    viewer, dock, clean = trained
    old = add_result(viewer, "cells denoised (N2V)", clean + 1)
    new = add_result(viewer, "cells denoised (N2V) [2]", clean + 2)
    dock.session.set_comparison("cells", [new])
    assert dock.noisy_combo.currentText() == "cells"
    assert dock.reference() == "Cells_AVG50" and "reference" in dock.note.text()
    assert dock.chosen_results() == [new] and old in dock.result_list_names()

    # The next result replaces the ticks; a reference picked by hand stays.
    newest = add_result(viewer, "cells denoised (CARE)", clean + 3)
    dock.set_reference(None)
    dock.session.set_comparison("cells", [newest])
    assert dock.chosen_results() == [newest] and dock.reference() is None


def test_without_a_reference_layer_none_is_preselected(make_napari_viewer):
    viewer = make_napari_viewer()
    image = np.random.default_rng(1).normal(100, 10, (48, 48)).astype(np.float32)
    viewer.add_image(image, name="length scan")  # "gt" inside a word is no ground truth
    viewer.add_image(image + 1, name="prefix")  # nor is "ref" inside a word
    _dock, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare")
    add_result(viewer, "length scan denoised", image, source="length scan")
    dock.session.set_comparison("length scan", ["length scan denoised"])
    assert dock.noisy_combo.currentText() == "length scan" and dock.reference() is None
    assert dock.chosen_results() == ["length scan denoised"]

    # Metadata can mark a reference whatever its name; it must have the noisy layer's shape.
    viewer.add_image(image[:20], name="sum of frames (crop)", metadata={"role": "ground truth"})
    assert dock.reference() is None
    viewer.add_image(image, name="sum of frames", metadata={"role": "ground truth"})
    assert dock.reference() == "sum of frames"


def test_the_reference_is_guessed_when_the_dock_opens_after_the_result(make_napari_viewer):
    from denoise_studio._qt.state.session import session_for

    viewer = make_napari_viewer()
    image = np.zeros((32, 32), np.float32)
    viewer.add_image(image, name="ground_truth")
    viewer.add_image(image + 1, name="raw")
    add_result(viewer, "raw denoised", image + 2, source="raw")
    session = session_for(viewer)  # held: the session lives while something holds it
    session.set_comparison("raw", ["raw denoised"])
    _dock, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare")
    assert dock.session is session
    assert (dock.noisy_combo.currentText(), dock.reference(), dock.chosen_results()) == (
        "raw", "ground_truth", ["raw denoised"]
    )  # fmt: skip


def test_results_are_layers_of_the_noisy_shape_other_than_noisy_and_reference(trained):
    viewer, dock, clean = trained
    result = add_result(viewer, "cells denoised (N2V)", clean + 1)
    viewer.add_image(np.stack([clean] * 3), name="stack")
    assert dock.noisy_combo.currentText() == "overview"  # no result yet: the first plain image
    assert dock.result_list_names() == []  # nothing else is 40×40
    dock.set_noisy("cells")
    assert dock.reference() == "Cells_AVG50"  # guessed for the new noisy layer
    assert dock.result_list_names() == [result]  # not "overview" (40×40), "stack", the noisy or the reference
    dock.set_results([result])

    dock.set_reference(None)  # no longer the reference: then it is a result like any other
    assert dock.result_list_names() == ["Cells_AVG50", result]
    dock.set_reference("Cells_AVG50")
    viewer.add_image(clean - 1, name="filtered elsewhere")
    assert dock.result_list_names() == [result, "filtered elsewhere"]

    dock.set_noisy("overview")  # another shape: none of them fits
    assert dock.result_list_names() == []
    dock.set_noisy("cells")  # and back: the tick is still there
    assert dock.chosen_results() == [result]
    viewer.layers[result].name = "renamed result"  # a rename follows the layer, tick and all
    assert dock.chosen_results() == ["renamed result"]
    viewer.layers.remove("filtered elsewhere")
    assert dock.result_list_names() == ["renamed result"]


def test_no_preview_starts_while_another_job_holds_the_slot(pair, qtbot, threaded):
    import threading

    from denoise_studio._qt.widgets.compare_dock import PREVIEW_DELAY_MS
    from denoise_studio._qt.workers.worker import EngineJob

    viewer, dock = pair
    session = dock.session
    release = threading.Event()
    training = EngineJob("training", lambda _callback, _stop: release.wait(20))
    finished = []
    assert session.run_job(training, "training", finished.append) == ""
    try:
        dock.set_filter("gaussian", size=2.0)
        qtbot.wait(4 * PREVIEW_DELAY_MS)
        assert session.job is training and dock._preview_job is None
        assert not any(layer.name.endswith("(preview)") for layer in viewer.layers)
    finally:
        release.set()
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    # The slot is free again: the preview that waited follows, through the slot.
    qtbot.waitUntil(lambda: "noisy gaussian 2 (preview)" in viewer.layers, timeout=10_000)
    qtbot.waitUntil(lambda: session.job is None, timeout=10_000)


def test_a_preview_holds_the_slot_and_compute_follows_it(pair, qtbot, threaded, monkeypatch):
    import threading

    from denoise_studio._qt.widgets import compare_dock
    from denoise_studio._qt.workers.worker import EngineJob
    from denoise_studio.engine.filters import apply_filter

    viewer, dock = pair
    session = dock.session
    release = threading.Event()

    def slow_filter(image, name, size):
        release.wait(20)
        return apply_filter(image, name, size)

    monkeypatch.setattr(compare_dock, "apply_filter", slow_filter)
    try:
        dock.set_filter("gaussian", size=2.0)
        qtbot.waitUntil(lambda: session.job_kind == "filter preview", timeout=5_000)
        assert "filter preview is running" in session.busy_reason()
        other = EngineJob("processing", lambda _callback, _stop: None)
        assert "filter preview" in session.run_job(other, "processing", lambda _outcome: None)
        assert dock.compute() and dock.job is not None  # waits for the preview, then measures
        assert session.job_kind == "filter preview"
    finally:
        release.set()
    qtbot.waitUntil(lambda: dock.job is None and session.job is None, timeout=10_000)
    assert "noisy gaussian 2" in dock.compared and "Compared" in dock.status.text()
    assert not any(layer.name.endswith("(preview)") for layer in viewer.layers)


def test_each_side_by_side_view_is_captioned_with_its_layer(pair, qtbot, synchronous):
    viewer, dock = pair
    dock.set_reference("reference")
    dock.set_filter("median", size=3)
    viewer.layers["result"].name_overlay.box = False  # the user's own overlay settings come back
    assert dock.compute()
    shown = ["noisy", "result", "noisy median 3", "reference"]
    assert dock.side_by_side.layers == shown
    assert all(viewer.layers[name].name_overlay.visible for name in shown)
    assert viewer.layers["result"].name_overlay.box  # boxed while shown
    assert dock.view_order.text() == (
        "Side by side, left to right, then the second row: noisy | result | noisy median 3 | reference"
    )
    # Each caption is drawn in its own grid cell, in the order of the views (four views: two rows of two).
    canvas = viewer.window._qt_viewer.canvas
    rows, columns = viewer.canvas.grid.shape
    assert (rows, columns) == (2, 2)
    for index, name in enumerate(shown):
        layer = viewer.layers[name]
        caption = canvas._layer_overlay_to_visual[layer][layer.name_overlay]
        assert caption.node.text == name and caption.node.parent is canvas.grid[index // columns, index % columns]

    click(qtbot, dock.single_button)
    assert not any(layer.name_overlay.visible for layer in viewer.layers)
    assert viewer.layers["result"].name_overlay.box is False and dock.view_order.text() == ""


def test_with_a_trained_model_the_table_estimates_psnr_without_the_reference(pair, qtbot, synchronous):
    from denoise_studio.engine.noise_model import fit_from_prediction

    viewer, dock = pair

    class WithNoiseModel:  # what the session's model contributes: its measured noise model
        name = "run"
        noise_model = fit_from_prediction(viewer.layers["noisy"].data, viewer.layers["reference"].data)

    dock.session.model = WithNoiseModel()
    dock.set_reference(None)
    dock.set_filter("gaussian", size=1.5)
    click(qtbot, dock.compute_button)
    estimates = dock.column_values("Est. PSNR (dB)")
    assert estimates["noisy"] == ""
    assert float(estimates["noisy gaussian 1.5"]) > 20
    assert estimates["result"] != ""
    assert "Under the noise model:" in dock.verdict_texts["noisy gaussian 1.5"]
