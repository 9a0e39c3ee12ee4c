"""Compare dock: a noisy layer, result layers and classical filters, in numbers and side by side.

The numbers are the engine's :func:`~denoise_studio.engine.compare.compare_results`: PSNR, SSIM and SNR
against a reference when there is one; without one only noise estimates, because nothing else can be
measured honestly. Filters run on the noisy layer in the worker (nlm on a stack takes a while); their
outputs become new layers, and no existing layer is ever replaced.

While a filter's slider moves, a live preview layer (``<noisy> <filter> (preview)``) follows it: the
filter runs in a worker thread shortly after the slider stops, and the dock's own preview layer is
updated in place. Compute then measures the chosen settings and replaces the previews by result layers.
Previews are engine jobs like any other: they go through the session's job slot, so none runs while a
training or a processing job does (the preview waits, silently, until the slot is free), and a Compute
pressed while a preview runs follows it.

The dock follows the session: when a result arrives (``session.comparison``), its noisy input is chosen,
the new result layers are ticked, and a layer that looks like a clean reference (by its name or its
metadata, see :func:`looks_like_reference`) is preselected as the reference. Only layers of the noisy
layer's shape are offered as results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from ...engine.compare import compare_results
from ...engine.filters import apply_filter, filter_function
from ...engine.io import InputError
from ..state.session import Session, layer_shape, read_pixels, unique_layer_name
from ..workers.worker import EngineJob, Outcome, guarded
from .dock import StudioDock
from .fields import hint_label
from .quality_panel import denoiser_of
from .side_by_side import SideBySide

if TYPE_CHECKING:
    import napari

NO_REFERENCE = "(no reference)"
#: (filter, label, size label, minimum, maximum, default, decimals); the engine's apply_filter sizes.
FILTER_CHOICES = (
    ("gaussian", "Gaussian", "sigma", 0.3, 10.0, 1.5, 2),
    ("median", "Median", "size", 3, 15, 3, 0),
    ("box", "Box (mean)", "size", 3, 15, 3, 0),
    ("box3d", "Box 3D (across slices)", "size", 3, 9, 3, 0),
    ("nlm", "Non-local means", "patch distance", 1, 15, 6, 0),
)
#: (row key, title, header text, format, tooltip). The title names the column (column_values); the header
#: text is the title on two lines, so the table fits the dock's default width.
REFERENCE_COLUMNS = (
    ("psnr", "PSNR (dB)", "PSNR\n(dB)", "{:.2f}", "Peak signal-to-noise ratio against the reference."),
    ("ssim", "SSIM", "SSIM", "{:.3f}", "Structural similarity with the reference (1 = identical)."),
    ("snr", "SNR (dB)", "SNR\n(dB)", "{:.2f}", "Signal power over error power against the reference, in dB."),
)
NOISE_COLUMNS = (
    ("noise_left", "Noise left (σ)", "Noise\nleft (σ)", "{:.4g}",
     "The noise left in the image: a white-noise estimate from its finest wavelet band."),
    ("residual_std", "Removed (std)", "Removed\n(std)", "{:.4g}",
     "The spread of what the image removed: the standard deviation of noisy − image."),
)  # fmt: skip
#: Shown when the session's model has a noise model (see compare_results).
ESTIMATE_COLUMN = (
    "psnr_estimate", "Est. PSNR (dB)", "Est. PSNR\n(dB)", "{:.2f}",
    "PSNR estimated without the reference (Stein's risk estimate under the trained model's noise model; "
    "range: the reference's, or the noisy image's 0.1-99.9 % span). With a noise model measured from the "
    "data alone it ran up to ~2 dB high for N2V and linear filters on real confocal data, and low for a "
    "median filter (docs/benchmarks.md).",
)  # fmt: skip
NO_REFERENCE_NOTE = (
    "Without a reference only noise estimates are shown: the noise left in each image (a white-noise "
    "estimate) and the spread of what it removed (noisy − result). The verdicts below the table look at "
    "what was removed: a removed part that follows the image means structure went too; correlated noise "
    "(e.g. scan lines) is more than the white-noise estimate, and removing it is no fault."
)
REFERENCE_NOTE = "PSNR, SSIM and SNR are measured against the reference; higher is better."
#: Filters cheap enough to follow a slider (non-local means takes seconds: it waits for Compute).
LIVE_FILTERS = ("gaussian", "median", "box", "box3d")
#: Largest noisy layer (pixels) previewed live; larger data waits for Compute.
LIVE_PREVIEW_PIXELS = 4 * 1024 * 1024
#: Quiet time (ms) after the last slider move before the preview is computed.
PREVIEW_DELAY_MS = 250
PREVIEW_SUFFIX = " (preview)"
#: Words in a layer name that mark a clean reference (case-insensitive; "_" and "-" count as spaces).
REFERENCE_WORDS = ("average", "reference", "ground truth", "groundtruth", "clean")
#: Short marks that count only as a word of their own ("gt", "avg50", "img_ref", not "length").
REFERENCE_MARKS = re.compile(r"(?<![a-z])(avg|gt|ref)(?![a-z])")
#: Values of a ``role`` metadata entry (top level or under "denoise_studio") that mark a reference.
REFERENCE_ROLES = ("reference", "ground truth", "groundtruth", "gt", "clean")


def _words(text: str) -> str:
    return text.lower().replace("_", " ").replace("-", " ")


def marks_reference(metadata: object) -> bool:
    """Layer metadata saying the image is a reference: ``reference``/``ground_truth``/``gt`` set to True,
    or a ``role`` of "reference", "ground truth", "gt" or "clean" (also under "denoise_studio")."""
    if not isinstance(metadata, Mapping):
        return False
    if any(metadata.get(key) is True for key in ("reference", "ground_truth", "gt")):
        return True
    ours = metadata.get("denoise_studio")
    roles = [metadata.get("role"), ours.get("role") if isinstance(ours, Mapping) else None]
    return any(isinstance(role, str) and _words(role) in REFERENCE_ROLES for role in roles)


def looks_like_reference(layer) -> bool:
    """The layer's name or metadata marks it as a clean reference (an average, a ground truth)."""
    name = _words(layer.name)
    if marks_reference(layer.metadata):
        return True
    return any(word in name for word in REFERENCE_WORDS) or bool(REFERENCE_MARKS.search(name))


def layer_key(layer) -> str:
    """A layer's identity across renames (the combo boxes and the result ticks follow it)."""
    return str(layer.unique_id)


def _derived(layer) -> bool:
    """A layer this plugin made from another one (a result or a filter output)."""
    ours = layer.metadata.get("denoise_studio")
    return isinstance(ours, Mapping) and "source" in ours


@dataclass
class FilterSpec:
    name: str
    size: float

    @property
    def label(self) -> str:
        return f"{self.name} {self.size:g}"


@dataclass
class Comparison:
    """What the worker hands back: the filter outputs (by label) and the table rows."""

    filtered: dict[str, np.ndarray]
    rows: list[dict]


class CompareDock(StudioDock):
    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__(napari_viewer, session)
        self.side_by_side = SideBySide(self.viewer)
        self.job: EngineJob | None = None
        self._pending: tuple[str, list[str], str | None, list[FilterSpec]] | None = None
        #: A Compute pressed while this dock's preview held the job slot: (job, on_done), started after it.
        self._queued: tuple[EngineJob, object] | None = None
        #: Layer names of the last comparison, in table order.
        self.compared: list[str] = []
        #: The user (or a script) chose the noisy layer / the reference; until then the dock picks them.
        self._noisy_chosen = False
        self._reference_chosen = False
        #: {image: verdict} of the last comparison without a reference (engine.compare.judge_removal).
        self.verdict_texts: dict[str, str] = {}
        #: Keys (layer_key) of the ticked results, kept while a layer is out of the list (another noisy).
        self._ticked: set[str] = set()

        # -- layers --
        layers_box = QGroupBox("Layers")
        layers_layout = QVBoxLayout(layers_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Noisy"))
        self.noisy_combo = QComboBox()
        self.noisy_combo.setToolTip("The noisy input every result is compared with.")
        self.noisy_combo.currentTextChanged.connect(lambda _t: self._noisy_changed())
        self.noisy_combo.activated.connect(lambda _i: setattr(self, "_noisy_chosen", True))
        row.addWidget(self.noisy_combo, 1)
        layers_layout.addLayout(row)
        layers_layout.addWidget(QLabel("Results to compare (layers of the noisy layer's shape)"))
        self.result_list = QListWidget()
        self.result_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.result_list.setMaximumHeight(120)
        self.result_list.itemChanged.connect(self._result_ticked)
        layers_layout.addWidget(self.result_list)
        row = QHBoxLayout()
        row.addWidget(QLabel("Reference"))
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip(
            "A clean image of the same field (e.g. an average of many frames), if any. A layer named like one "
            "(average, avg, reference, ground truth, gt, clean) is chosen for you."
        )
        self.reference_combo.currentTextChanged.connect(lambda _t: (self._refresh_results(), self._show_note()))
        self.reference_combo.activated.connect(lambda _i: setattr(self, "_reference_chosen", True))
        row.addWidget(self.reference_combo, 1)
        layers_layout.addLayout(row)

        # -- filters --
        filters_box = QGroupBox("Classical filters (applied to the noisy layer)")
        grid = QGridLayout(filters_box)
        self.filter_checks: dict[str, QCheckBox] = {}
        self.filter_sizes: dict[str, QLabeledSlider | QLabeledDoubleSlider] = {}
        for index, (name, title, size_label, low, high, default, decimals) in enumerate(FILTER_CHOICES):
            check = QCheckBox(title)
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal) if decimals else QLabeledSlider(
                Qt.Orientation.Horizontal
            )
            if decimals:
                slider.setDecimals(decimals)
                slider.setSingleStep(0.25)
            slider.setRange(low, high)
            slider.setValue(default)
            slider.setToolTip(f"The filter's {size_label}; the preview follows while you drag.")
            slider.setEnabled(False)
            check.toggled.connect(slider.setEnabled)
            check.toggled.connect(lambda _on: self._schedule_preview())
            slider.valueChanged.connect(lambda _v: self._schedule_preview())
            grid.addWidget(check, index, 0)
            grid.addWidget(QLabel(size_label), index, 1)
            grid.addWidget(slider, index, 2)
            self.filter_checks[name], self.filter_sizes[name] = check, slider
        self.live_preview = QCheckBox("Live preview while adjusting")
        self.live_preview.setChecked(True)
        self.live_preview.setToolTip(
            "Show each checked filter (not non-local means, which takes seconds) as a preview layer that "
            "follows its slider. Compute measures them. No preview runs while a training or processing does."
        )
        self.live_preview.toggled.connect(lambda _on: self._schedule_preview())
        grid.addWidget(self.live_preview, len(FILTER_CHOICES), 0, 1, 3)
        self.preview_layers: dict[str, str] = {}  # filter name -> preview layer name
        self._preview_job: EngineJob | None = None
        self._preview_again = False
        #: A preview was due while another job held the session's slot: it runs when the slot is free.
        self._preview_waiting = False
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.update_preview)

        # -- compute and results --
        self.compute_button = QPushButton("Compute")
        self.compute_button.setToolTip("Measure every chosen image and show them side by side.")
        self.compute_button.clicked.connect(self.compute)
        self.single_button = QPushButton("Single view")
        self.single_button.clicked.connect(self.close_side_by_side)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.single_button)
        self.note = hint_label()
        self.status = QLabel()
        self.status.setWordWrap(True)
        #: The order of the side-by-side views (each view also shows its layer's name).
        self.view_order = QLabel()
        self.view_order.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(160)
        self.table.verticalHeader().setVisible(False)  # the image name is the row's label
        # Fit the dock: numbers at their own width, titles on two lines, the image name takes the rest
        # (elided in the middle, in full in its tooltip); only a very narrow dock scrolls, by pixels.
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        header = self.table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignCenter)
        header.setMinimumSectionSize(36)
        #: Without a reference: what each result removed, judged (engine.compare.judge_removal).
        self.verdicts = QLabel()
        self.verdicts.setWordWrap(True)

        layout = QVBoxLayout(self)
        for widget in (layers_box, filters_box):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        for widget in (self.note, self.status, self.view_order, self.table, self.verdicts):
            layout.addWidget(widget)
        layout.addStretch(1)

        self._links.connect(self.viewer.layers.events.inserted, self._layer_inserted)
        self._links.connect(self.viewer.layers.events.removed, self._layer_removed)
        for layer in self.viewer.layers:
            self._links.connect(layer.events.name, self._refresh_layers)
        self._links.connect(self.session.busy_changed, self._busy_changed)
        self._links.connect(self.session.comparison_changed, self._comparison_changed)
        self._refresh_layers()
        if self.session.comparison is not None:
            self.apply_comparison()
        self._show_note()

    # -- layer lists -------------------------------------------------------------------------------------
    def _layers(self) -> list:
        """The image layers the dock offers (its own previews are not among them)."""
        return [layer for layer in self.session.image_layers() if not self._is_preview(layer.name)]

    def _layer_inserted(self, event) -> None:
        self._links.connect(event.value.events.name, self._refresh_layers)  # renames keep the lists right
        self._refresh_layers()

    def _layer_removed(self, event) -> None:
        event.value.events.name.disconnect(self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, _event=None) -> None:
        layers = self._layers()
        noisy_before = self.noisy_combo.currentText()
        items = [(layer.name, layer_key(layer)) for layer in layers]
        if not _fill_combo(self.noisy_combo, items):
            self._noisy_chosen = False  # the chosen layer is gone
        if not _fill_combo(self.reference_combo, [(NO_REFERENCE, ""), *items]):
            self._reference_chosen = False
        if not self._noisy_chosen:
            _select(self.noisy_combo, self._default_noisy(layers))
        if not self._reference_chosen:
            _select(self.reference_combo, self.guess_reference() or NO_REFERENCE)
        self._refresh_results()
        self._show_note()
        if self.noisy_combo.currentText() != noisy_before:
            self._schedule_preview()

    def _default_noisy(self, layers: list) -> str:
        """The latest result's input, else the current choice, else the training layer, else the first
        image that is neither a reference nor made from another layer."""
        names = [layer.name for layer in layers]
        plain = [layer.name for layer in layers if not looks_like_reference(layer) and not _derived(layer)]
        comparison = self.session.comparison
        for wanted in (comparison[0] if comparison else None, self.noisy_combo.currentText()):
            if wanted in plain:
                return wanted
        if self.session.source_layer in names:
            return self.session.source_layer
        return (plain or names or [""])[0]

    def guess_reference(self) -> str | None:
        """A layer of the noisy layer's shape that its metadata, or else its name, marks as a reference
        (not the noisy layer, not a result of the latest comparison, not a layer made from another one)."""
        noisy_name = self.noisy_combo.currentText()
        if noisy_name not in self.viewer.layers:
            return None
        shape = layer_shape(self.viewer.layers[noisy_name])
        comparison = self.session.comparison
        results = set(comparison[1]) if comparison else set()
        candidates = [
            layer
            for layer in self._layers()
            if layer.name != noisy_name
            and layer.name not in results
            and layer_shape(layer) == shape
            and (marks_reference(layer.metadata) or not _derived(layer))
        ]
        for test in (lambda layer: marks_reference(layer.metadata), looks_like_reference):
            for layer in candidates:
                if test(layer):
                    return layer.name
        return None

    def _noisy_changed(self) -> None:
        if not self._reference_chosen:
            self.reference_combo.blockSignals(True)
            _select(self.reference_combo, self.guess_reference() or NO_REFERENCE)
            self.reference_combo.blockSignals(False)
        self._refresh_results()
        self._show_note()
        self._schedule_preview()

    def result_layers(self) -> list:
        """Image layers of the noisy layer's shape, other than the noisy layer and the reference."""
        noisy_name = self.noisy_combo.currentText()
        if noisy_name not in self.viewer.layers:
            return []
        shape = layer_shape(self.viewer.layers[noisy_name])
        excluded = {noisy_name, self.reference()}
        return [
            layer
            for layer in self._layers()
            if layer.name not in excluded and not getattr(layer, "rgb", False) and layer_shape(layer) == shape
        ]

    def _refresh_results(self) -> None:
        self.result_list.blockSignals(True)
        self.result_list.clear()
        for layer in self.result_layers():
            item = QListWidgetItem(layer.name)
            item.setData(Qt.ItemDataRole.UserRole, layer_key(layer))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            ticked = layer_key(layer) in self._ticked
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            self.result_list.addItem(item)
        self.result_list.blockSignals(False)

    def _result_ticked(self, item: QListWidgetItem) -> None:
        key = item.data(Qt.ItemDataRole.UserRole)
        if item.checkState() == Qt.CheckState.Checked:
            self._ticked.add(key)
        else:
            self._ticked.discard(key)

    def _comparison_changed(self, _comparison: object) -> None:
        self.apply_comparison()

    def apply_comparison(self) -> None:
        """Follow the session's latest result: its input as the noisy layer, its layers ticked (and only
        they), and a reference preselected unless one was chosen by hand that still fits."""
        comparison = self.session.comparison
        if comparison is None or comparison[0] not in self.viewer.layers:
            return
        noisy, results = comparison
        reference = self.reference()
        if self._reference_chosen and reference is not None and (
            reference == noisy
            or reference in results
            or layer_shape(self.viewer.layers[reference]) != layer_shape(self.viewer.layers[noisy])
        ):
            self._reference_chosen = False  # a hand-picked reference that does not fit this result
        self._noisy_chosen = False
        self._ticked = {layer_key(self.viewer.layers[name]) for name in results if name in self.viewer.layers}
        if self.noisy_combo.currentText() == noisy:
            self._noisy_changed()
        else:
            _select(self.noisy_combo, noisy)  # -> _noisy_changed

    # -- choices (also used by tests and scripts) -------------------------------------------------------------
    def set_noisy(self, name: str) -> None:
        self._noisy_chosen = True
        self.noisy_combo.setCurrentText(name)

    def set_reference(self, name: str | None) -> None:
        self._reference_chosen = True
        self.reference_combo.setCurrentText(name or NO_REFERENCE)

    def set_results(self, names: list[str]) -> None:
        for index in range(self.result_list.count()):
            item = self.result_list.item(index)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)

    def set_filter(self, name: str, on: bool = True, size: float | None = None) -> None:
        self.filter_checks[name].setChecked(on)
        if size is not None:
            self.filter_sizes[name].setValue(size)

    def result_list_names(self) -> list[str]:
        return [self.result_list.item(i).text() for i in range(self.result_list.count())]

    def chosen_results(self) -> list[str]:
        items = (self.result_list.item(i) for i in range(self.result_list.count()))
        return [item.text() for item in items if item.checkState() == Qt.CheckState.Checked]

    def chosen_filters(self) -> list[FilterSpec]:
        return [
            FilterSpec(name, float(self.filter_sizes[name].value()))
            for name, check in self.filter_checks.items()
            if check.isChecked()
        ]

    def reference(self) -> str | None:
        text = self.reference_combo.currentText()
        return None if text in ("", NO_REFERENCE) else text

    # -- live preview -----------------------------------------------------------------------------------------
    def _schedule_preview(self) -> None:
        self._preview_timer.start()  # restarts: the preview runs once the slider has stopped

    def _busy_changed(self, busy: bool) -> None:
        self._update_buttons()
        if not busy and self._preview_waiting:
            self._preview_waiting = False
            self._schedule_preview()

    def update_preview(self) -> bool:
        """Compute the preview of every checked live filter (worker thread); False if there is none to show
        or the session's job slot is busy (the preview then follows when it is free)."""
        if self._preview_job is not None:
            self._preview_again = True  # one run at a time; the latest settings follow when it ends
            return True
        noisy_name = self.noisy_combo.currentText()
        wanted = []
        if self.live_preview.isChecked() and noisy_name in self.viewer.layers:
            wanted = [spec for spec in self.chosen_filters() if spec.name in LIVE_FILTERS]
        try:
            # The layer's array, read by the job: a lazy layer is never read on the GUI thread.
            noisy = self.session.layer_array(noisy_name) if wanted else None
        except InputError:
            noisy, wanted = None, []
        if noisy is not None and math.prod(noisy.shape) > LIVE_PREVIEW_PIXELS:
            self._set_status(f"{noisy_name} is too large for a live preview; press Compute.", ok=None)
            noisy, wanted = None, []
        self._drop_previews(keep={spec.name for spec in wanted})
        if not wanted:
            return False
        if self.session.busy_reason():
            self._preview_waiting = True  # a training or processing runs: no preview until it is done
            return False

        def call(_callback, _stop) -> dict[str, tuple[FilterSpec, np.ndarray]]:
            pixels = read_pixels(noisy)
            return {spec.name: (spec, apply_filter(pixels, spec.name, spec.size)) for spec in wanted}

        # No parent: the job must outlive a dock closed mid-preview, or the session's slot would stay taken.
        job = EngineJob("filter preview", call)
        self._preview_job = job
        on_done = guarded(lambda outcome: self._show_preview(noisy_name, outcome), self._preview_failed)
        if self.session.run_job(job, "filter preview", on_done):
            self._preview_job = None
            self._preview_waiting = True
            return False
        return True

    def _preview_failed(self, message: str) -> None:
        self._preview_job = None
        self._set_status(f"Preview failed: {message}", ok=False)
        self._after_preview()

    def _show_preview(self, noisy_name: str, outcome: Outcome) -> None:
        self._preview_job = None
        if self._queued is not None:
            self._after_preview()  # a Compute waited for this preview: it measures the current settings
            return
        if outcome.ok:
            for name, (spec, image) in outcome.value.items():
                if name not in self.chosen_names():
                    continue  # unchecked while it was computing
                layer_name = self.preview_layers.get(name)
                if layer_name in self.viewer.layers and self.viewer.layers[layer_name].data.shape == image.shape:
                    layer = self.viewer.layers[layer_name]
                    layer.data = image  # the dock's own preview layer: updated in place, renamed to match
                    layer.metadata["denoise_studio"]["filter"] = spec.label
                    wanted_name = f"{noisy_name} {spec.label}{PREVIEW_SUFFIX}"
                    if layer.name != wanted_name:
                        layer.name = unique_layer_name(self.viewer, wanted_name)
                        self.preview_layers[name] = layer.name
                else:
                    self._drop_previews(keep=set(self.preview_layers) - {name})  # e.g. another noisy layer's shape
                    self.preview_layers[name] = self._add_filter_layer(noisy_name, spec.label, image, preview=True)
        else:
            self._set_status(f"Preview failed: {outcome.message}", ok=False)
        self._after_preview()

    def _after_preview(self) -> None:
        queued, self._queued = self._queued, None
        if queued is not None:
            self._preview_again = False
            job, on_done = queued
            reason = self.session.run_job(job, "comparison", on_done)
            if reason:
                self._finish_failed(reason)
            return
        if self._preview_again:
            self._preview_again = False
            self.update_preview()

    def _drop_previews(self, keep: set[str] = frozenset()) -> None:
        for name in [n for n in self.preview_layers if n not in keep]:
            layer_name = self.preview_layers.pop(name)
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)

    def _is_preview(self, name: str) -> bool:
        # The metadata flag is there from the moment the layer is inserted (the list refreshes then).
        layer = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        return bool(layer is not None and layer.metadata.get("denoise_studio", {}).get("preview"))

    def chosen_names(self) -> set[str]:
        return {name for name, check in self.filter_checks.items() if check.isChecked()}

    # -- compute ----------------------------------------------------------------------------------------------
    def compute(self) -> bool:
        """Measure the chosen images (worker thread) and lay them out; False (with the reason) if it cannot."""
        if self.job is not None:
            return self._refuse("the comparison is still being computed")
        noisy_name = self.noisy_combo.currentText()
        results = [name for name in self.chosen_results() if name != noisy_name]
        filters = self.chosen_filters()
        reference_name = self.reference()
        if not noisy_name:
            return self._refuse("add a noisy image layer first")
        if not results and not filters:
            return self._refuse("choose at least one result layer or filter to compare")
        try:
            # The layers' arrays, read by the job: a lazy layer is never read on the GUI thread.
            noisy_array = self.session.layer_array(noisy_name)
            result_arrays = {name: self.session.layer_array(name) for name in results}
            reference_array = self.session.layer_array(reference_name) if reference_name else None
        except InputError as err:
            return self._refuse(str(err))

        model = self.session.model
        noise_model = self.session.noise_model  # a calibration's, else the model's
        denoisers = {}
        for name in results:
            by_model, by_filter = denoiser_of(self.viewer.layers[name], model)
            denoisers[name] = by_filter or (by_model.predict if by_model is not None else None)
        for spec in filters:
            denoisers[spec.label] = filter_function(spec.name, spec.size)

        def call(_callback, _stop) -> Comparison:
            noisy = read_pixels(noisy_array)
            arrays = {name: read_pixels(array) for name, array in result_arrays.items()}
            reference = None if reference_array is None else read_pixels(reference_array)
            filtered = {spec.label: apply_filter(noisy, spec.name, spec.size) for spec in filters}
            try:
                rows = compare_results(
                    noisy, {**arrays, **filtered}, reference, noise_model=noise_model,
                    denoisers={name: f for name, f in denoisers.items() if f is not None},
                )  # fmt: skip
            except ValueError as err:  # a shape mismatch, written for the user
                raise InputError(str(err)) from None
            return Comparison(filtered, rows)

        job = EngineJob("comparison", call)
        self.job = job
        self._pending = (noisy_name, results, reference_name, filters)
        self._set_status("Computing…", ok=None)
        on_done = guarded(self._on_done, lambda message: self._finish_failed(message))
        if self._preview_job is not None and self.session.job is self._preview_job:
            # This dock's own preview holds the slot for a moment: the comparison starts when it ends.
            self._queued = (job, on_done)
            self._preview_timer.stop()
        else:
            reason = self.session.run_job(job, "comparison", on_done)
            if reason:
                self.job = self._pending = None
                return self._refuse(reason)
        self._update_buttons()
        return True

    def _on_done(self, outcome: Outcome) -> None:
        self.job = None
        pending, self._pending = self._pending, None
        self._update_buttons()
        if not outcome.ok:
            self._finish_failed(outcome.message)
            return
        noisy_name, results, reference_name, _filters = pending
        comparison: Comparison = outcome.value
        self._preview_timer.stop()
        self._drop_previews()  # the measured filter layers take their place
        names = {"noisy input": noisy_name, **{name: name for name in results}}
        for label, image in comparison.filtered.items():
            names[label] = self._add_filter_layer(noisy_name, label, image)
        self._fill_table(comparison.rows, names)
        self.compared = [names[str(row["name"])] for row in comparison.rows]
        shown = [*self.compared, *([reference_name] if reference_name else [])]
        self.side_by_side.show(shown)
        self.view_order.setText(self.side_by_side.caption)
        self._set_status(f"Compared {len(self.compared) - 1} image(s) with {noisy_name}.", ok=True)

    def close_side_by_side(self) -> None:
        self.side_by_side.close()
        self.view_order.clear()

    def _add_filter_layer(self, noisy_name: str, label: str, image: np.ndarray, preview: bool = False) -> str:
        style = {}
        if noisy_name in self.viewer.layers:
            source = self.viewer.layers[noisy_name]
            style = {"colormap": source.colormap.name, "contrast_limits": source.contrast_limits}
        name = unique_layer_name(self.viewer, f"{noisy_name} {label}{PREVIEW_SUFFIX if preview else ''}")
        metadata = {"denoise_studio": {"source": noisy_name, "filter": label, "preview": preview}}
        self.viewer.add_image(image, name=name, metadata=metadata, **style)
        return name

    def _fill_table(self, rows: list[dict], names: dict[str, str]) -> None:
        with_reference = "psnr" in rows[0]
        columns = (*(REFERENCE_COLUMNS if with_reference else ()), *NOISE_COLUMNS)
        if "psnr_estimate" in rows[0]:
            columns = (*columns, ESTIMATE_COLUMN)
        self.table.clear()
        self.table.setColumnCount(len(columns) + 1)
        self.table.setRowCount(len(rows))
        image_header = QTableWidgetItem("Image")
        self.table.setHorizontalHeaderItem(0, image_header)
        for column, (_key, _title, text, _fmt, tip) in enumerate(columns, start=1):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(column, item)
        verdicts = []
        self.verdict_texts = {}
        for index, row in enumerate(rows):
            name = names[str(row["name"])]
            name_item = QTableWidgetItem(name)
            verdict = "" if with_reference else str(row.get("verdict_text", ""))
            if row.get("residual_verdict"):  # the session's noise model judged the residual too
                verdict = f"{verdict} Under the noise model: {row['residual_verdict']}.".strip()
            name_item.setToolTip(f"{name}\n{verdict}" if verdict else name)
            self.table.setItem(index, 0, name_item)
            if verdict:
                self.verdict_texts[name] = verdict
                verdicts.append(f"<b>{_html(name)}</b>: {_html(verdict)}")
            for column, (key, _title, _text, fmt, _tip) in enumerate(columns, start=1):
                value = float(row[key])
                text = fmt.format(value) if math.isfinite(value) else ("" if math.isnan(value) else "∞")
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(index, column, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(columns) + 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.verdicts.setText("<br>".join(verdicts))
        self.verdicts.setVisible(bool(verdicts))
        self._show_note()

    def column_values(self, title: str) -> dict[str, str]:
        """{image: cell text} of the column titled ``title`` (empty when there is no such column).

        The header shows some titles on two lines; ``title`` is matched with a space for the line break.
        """
        headers = [" ".join(self.table.horizontalHeaderItem(c).text().split()) for c in range(self.table.columnCount())]
        if title not in headers:
            return {}
        column = headers.index(title)
        return {self.table.item(r, 0).text(): self.table.item(r, column).text() for r in range(self.table.rowCount())}

    # -- display --------------------------------------------------------------------------------------------------
    def _show_note(self) -> None:
        self.note.setText(REFERENCE_NOTE if self.reference() else NO_REFERENCE_NOTE)

    def _update_buttons(self) -> None:
        self.compute_button.setEnabled(self.job is None)

    def _finish_failed(self, message: str) -> None:
        self.job = self._pending = None
        self._update_buttons()
        self._set_status(f"Not compared: {message}", ok=False)

    def _refuse(self, reason: str) -> bool:
        self._set_status(f"Not compared: {reason}", ok=False)
        show_info(f"Compare: {reason}")
        return False

    def _set_status(self, text: str, ok: bool | None) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("" if ok is None else ("color: #30a46c;" if ok else "color: #e5484d;"))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fill_combo(combo: QComboBox, items: list[tuple[str, str]]) -> bool:
    """Refill ``combo`` with (name, layer key) items, keeping the current layer (followed by its key, so
    across a rename); returns False when the current layer is gone. No signal fires."""
    current = combo.currentData()
    had = combo.currentIndex() >= 0
    combo.blockSignals(True)
    combo.clear()
    for name, key in items:
        combo.addItem(name, key)
    index = combo.findData(current) if had else -1
    combo.setCurrentIndex(max(index, 0) if combo.count() else -1)
    combo.blockSignals(False)
    return index >= 0


def _select(combo: QComboBox, name: str) -> None:
    """Choose ``name`` (the combo's own signals fire when the choice changes)."""
    index = combo.findText(name)
    if index >= 0:
        combo.setCurrentIndex(index)
