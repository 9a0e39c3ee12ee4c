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
    assert grid.enabled and grid.shape == (1, 5)
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
