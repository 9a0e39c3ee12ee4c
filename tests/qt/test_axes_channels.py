"""Axes and channels in the docks: the axes field, multi-channel training and prediction, lazy layers."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
from qt_helpers import TINY, click, noisy_image, set_fields

from denoise_studio._qt.widgets.method_dock import ERROR_STYLE, OK_STYLE
from denoise_studio.engine.io import read_image_meta


def two_channel_image(side: int = 64) -> np.ndarray:
    """A CYX image whose channels have different intensity scales (so each needs its own normalisation)."""
    first = noisy_image((side, side), seed=1)
    return np.stack([first, 10 * noisy_image((side, side), seed=2) + 500])


def test_the_axes_field_fills_in_from_the_layer_and_checks_edits(studio, qtbot):
    viewer, widget = studio
    method, training = widget.method, widget.training
    viewer.add_image(two_channel_image(), name="two", metadata={"axes": "CYX"})
    assert widget.session.source_layer == "two"
    assert method.axes_edit.text() == "CYX" and widget.session.axes == "CYX"
    assert method.data_status.text() == "✓ two: 2 channels, 64×64, ready for 2D training"
    assert training.start_button.isEnabled()

    viewer.add_image(noisy_image((5, 64, 64)), name="stack")
    method.select_layer("stack")
    assert method.axes_edit.text() == "ZYX"  # the guess for a plain 3D layer
    assert method.data_status.text() == "✓ stack: 5 slices of 64×64, ready for 2D training"

    method.axes_edit.selectAll()
    qtbot.keyClicks(method.axes_edit, "czyx")  # typed as a user would, in lower case
    assert widget.session.axes == "CZYX"
    message = method.data_status.text()
    assert message.startswith("✗ layer 'stack': axes: invalid axes 'CZYX' (4 letters for an image of 3 dimensions)")
    assert "\n" not in message and method.data_status.styleSheet() == ERROR_STYLE
    assert not training.start_button.isEnabled()
    assert "invalid axes 'CZYX'" in training.start_button.toolTip()
    assert not training.start()  # a direct call is refused with the same reason
    assert "invalid axes 'CZYX'" in training.notice.text()

    # Choosing another layer brings its own axes; coming back gives the layer's again.
    method.select_layer("two")
    assert method.axes_edit.text() == "CYX" and training.start_button.isEnabled()
    method.select_layer("stack")
    assert method.axes_edit.text() == "ZYX"


def test_typing_channel_axes_over_a_guessed_stack_makes_it_two_channels(studio, qtbot):
    viewer, widget = studio
    method = widget.method
    viewer.add_image(two_channel_image(), name="plain")  # no metadata: read as 2 slices
    assert method.axes_edit.text() == "ZYX"
    assert "2 slices of 64×64" in method.data_status.text()
    method.axes_edit.selectAll()
    qtbot.keyClicks(method.axes_edit, "CYX")
    assert method.data_status.text() == "✓ plain: 2 channels, 64×64, ready for 2D training"
    assert method.data_status.styleSheet() == OK_STYLE
    assert widget.training.start_button.isEnabled()


def test_a_4d_layer_asks_for_its_axes(studio, qtbot):
    viewer, widget = studio
    viewer.add_image(np.zeros((3, 2, 64, 64), np.float32), name="hyperstack")
    method = widget.method
    assert method.axes_edit.text() == ""
    assert "give them (axes such as CZYX or TCYX)" in method.data_status.text()
    assert not widget.training.start_button.isEnabled()
    method.set_axes("TCYX")
    assert method.data_status.text() == "✓ hyperstack: 3 time points, 2 channels, 64×64, ready for 2D training"
    assert widget.training.start_button.isEnabled()


def test_a_file_opened_in_the_dock_brings_its_axes_and_pixel_size(studio, tmp_path):
    import tifffile

    viewer, widget = studio
    path = tmp_path / "hyperstack.tif"
    tifffile.imwrite(path, two_channel_image(), imagej=True, metadata={"axes": "CYX"}, resolution=(2, 2))
    name = widget.method.open_tiff(path)
    layer = viewer.layers[name]
    assert layer.data.shape == (2, 64, 64) and layer.metadata["axes"] == "CYX"
    assert tuple(layer.scale) == (1.0, 0.5, 0.5)
    assert widget.session.source_layer == name and widget.method.axes_edit.text() == "CYX"
    assert widget.method.data_status.text() == "✓ hyperstack: 2 channels, 64×64, ready for 2D training"


def test_two_channels_train_and_predict_through_the_docks(studio, qtbot, synchronous):
    viewer, widget = studio
    image = two_channel_image()
    scale, translate = (1.0, 0.5, 0.5), (0.0, 10.0, -4.0)
    viewer.add_image(image, name="cells", metadata={"axes": "CYX"}, scale=scale, translate=translate)
    set_fields(widget.configure, TINY)
    click(qtbot, widget.training.start_button)
    assert widget.training.state == "complete", widget.training.status_label.text()
    model = widget.session.model
    assert model.channels == 2

    trained = viewer.layers["cells denoised (Noise2Void)"]
    assert trained.data.shape == (2, 64, 64)
    assert tuple(trained.scale) == scale and tuple(trained.translate) == translate
    assert trained.metadata["denoise_studio"]["axes"] == "CYX"

    results = widget.results
    results.from_layer.setChecked(True)
    results.layer_combo.setCurrentText("cells")
    click(qtbot, results.process_button)
    assert results.process_status.text().startswith("Saved"), results.process_status.text()
    predicted = viewer.layers["cells denoised (Noise2Void) [2]"]
    assert predicted.data.shape == (2, 64, 64)
    assert tuple(predicted.scale) == scale and tuple(predicted.translate) == translate
    # Each channel keeps its own intensity scale (the second is about ten times the first, plus 500).
    assert predicted.data[1].mean() > 10 * predicted.data[0].mean()
    # The file carries the axes and the pixel size.
    _pixels, meta = read_image_meta(predicted.metadata["denoise_studio"]["file"])
    assert meta.axes == "CYX" and meta.scales["X"] == 0.5

    # A single-channel layer is refused by the 2-channel model, naming both counts.
    viewer.add_image(noisy_image((64, 64)), name="one channel")
    results.layer_combo.setCurrentText("one channel")
    click(qtbot, results.process_button)
    status = results.process_status.text()
    assert status.startswith("Failed") and "has 1 channel, but the model was trained on 2" in status


class LazyArray:
    """A dask-backed layer array that records every whole read (and refuses one on the GUI thread)."""

    def __init__(self, array: np.ndarray):
        self._array = da.from_array(array, chunks=(1, *array.shape[1:]))
        self.shape, self.dtype, self.ndim, self.size = array.shape, array.dtype, array.ndim, array.size
        #: For each whole read: whether it happened on the GUI thread.
        self.reads: list[bool] = []

    def __getitem__(self, index):
        # napari's slicing of the plane on screen: a small part, not the whole array.
        return np.asarray(self._array[index])

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self) -> np.ndarray:
        on_gui_thread = threading.current_thread() is threading.main_thread()
        self.reads.append(on_gui_thread)
        if on_gui_thread:
            raise AssertionError("a lazy layer was read whole on the GUI thread")
        return self._array.compute()

    def __array__(self, dtype=None, copy=None):
        pixels = self._read()
        return pixels if dtype is None else pixels.astype(dtype)

    def compute(self) -> np.ndarray:
        return self._read()


def test_a_lazy_layer_is_checked_from_its_shape_and_read_only_in_workers(studio, qtbot, threaded):
    viewer, widget = studio
    lazy = LazyArray(noisy_image((4, 64, 64)))
    viewer.add_image(lazy, name="lazy", contrast_limits=(0, 200))
    session, method = widget.session, widget.method
    assert viewer.layers["lazy"].data is lazy  # napari keeps the lazy array as it is
    assert session.source_layer == "lazy" and method.axes_edit.text() == "ZYX"
    assert method.data_status.text() == "✓ lazy: 4 slices of 64×64, ready for 2D training"
    assert session._checked_layout("lazy").canonical_shape == (1, 1, 4, 64, 64)
    method.set_axes("TYX")
    assert method.data_status.text() == "✓ lazy: 4 time points, 64×64, ready for 2D training"
    click(qtbot, method.mode_buttons["2.5d"])  # the mode check also reads only the shape
    assert "insufficient stack depth for 2.5D: 1 slice, need 20" in method.data_status.text()
    click(qtbot, method.mode_buttons["2d"])
    method.set_axes("ZYX")
    assert lazy.reads == []

    set_fields(widget.configure, TINY)
    click(qtbot, widget.training.start_button)
    qtbot.waitUntil(lambda: widget.training.state in ("complete", "failed", "stopped"), timeout=90_000)
    assert widget.training.state == "complete", widget.training.status_label.text()
    assert lazy.reads == [False]  # read once, by the training job
    assert viewer.layers["lazy denoised (Noise2Void)"].data.shape == (4, 64, 64)

    widget.results.layer_combo.setCurrentText("lazy")
    assert widget.results.process()
    qtbot.waitUntil(lambda: widget.results.job is None, timeout=60_000)
    assert widget.results.process_status.text().startswith("Saved"), widget.results.process_status.text()
    # Processed block by block into an OME-Zarr, shown from that file: the layer is never read whole again.
    assert lazy.reads == [False]
    shown = viewer.layers["lazy denoised (Noise2Void) [2]"]
    assert isinstance(shown.data, da.Array) and shown.data.shape == (4, 64, 64)
    assert shown.metadata["denoise_studio"]["file"].endswith(".zarr")
    np.testing.assert_allclose(
        np.asarray(shown.data), np.asarray(viewer.layers["lazy denoised (Noise2Void)"].data), rtol=1e-4, atol=1e-2
    )

    compare = widget.compare
    compare.set_noisy("lazy")
    compare.set_results(["lazy denoised (Noise2Void)"])
    compare.set_reference(None)
    assert compare.compute()
    qtbot.waitUntil(lambda: compare.job is None, timeout=60_000)
    assert "lazy denoised (Noise2Void)" in compare.column_values("Noise left (σ)")
    assert lazy.reads == [False, False]  # and once by the comparison job
