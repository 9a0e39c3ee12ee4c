"""Compare dock: a noisy layer, result layers and classical filters, in numbers and side by side.

The numbers are the engine's :func:`~denoise_studio.engine.compare.compare_results`: PSNR, SSIM and SNR
against a reference when there is one; without one only noise estimates, because nothing else can be
measured honestly. Filters run on the noisy layer in the worker (nlm on a stack takes a while); their
outputs become new layers, and no existing layer is ever replaced.

While a filter's slider moves, a live preview layer (``<noisy> <filter> (preview)``) follows it: the
filter runs in a worker thread shortly after the slider stops, and the dock's own preview layer is
updated in place. Compute then measures the chosen settings and replaces the previews by result layers.
"""

from __future__ import annotations

import math
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
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from ..engine.compare import compare_results
from ..engine.filters import apply_filter
from ..engine.io import InputError
from .session import Session, session_for, unique_layer_name
from .side_by_side import SideBySide
from .worker import EngineJob, Outcome, guarded

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
REFERENCE_COLUMNS = (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("snr", "SNR (dB)", "{:.2f}"))
NOISE_COLUMNS = (("noise_left", "Noise left (σ)", "{:.4g}"), ("residual_std", "Removed (residual std)", "{:.4g}"))
NO_REFERENCE_NOTE = (
    "Without a reference only noise estimates are shown: the noise left in each image and the spread of "
    "what it removed (noisy − result). A removal far above the input's noise means structure went too."
)
REFERENCE_NOTE = "PSNR, SSIM and SNR are measured against the reference; higher is better."
#: Filters cheap enough to follow a slider (non-local means takes seconds: it waits for Compute).
LIVE_FILTERS = ("gaussian", "median", "box", "box3d")
#: Largest noisy layer (pixels) previewed live; larger data waits for Compute.
LIVE_PREVIEW_PIXELS = 4 * 1024 * 1024
#: Quiet time (ms) after the last slider move before the preview is computed.
PREVIEW_DELAY_MS = 250
PREVIEW_SUFFIX = " (preview)"


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


class CompareDock(QWidget):
    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__()
        self.session = session or session_for(napari_viewer)
        self.viewer = self.session.viewer
        self.side_by_side = SideBySide(self.viewer)
        self.job: EngineJob | None = None
        self._pending: tuple[str, list[str], str | None, list[FilterSpec]] | None = None
        #: Layer names of the last comparison, in table order.
        self.compared: list[str] = []

        # -- layers --
        layers_box = QGroupBox("Layers")
        layers_layout = QVBoxLayout(layers_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Noisy"))
        self.noisy_combo = QComboBox()
        self.noisy_combo.setToolTip("The noisy input every result is compared with.")
        self.noisy_combo.currentTextChanged.connect(lambda _t: (self._refresh_results(), self._schedule_preview()))
        row.addWidget(self.noisy_combo, 1)
        layers_layout.addLayout(row)
        layers_layout.addWidget(QLabel("Results to compare"))
        self.result_list = QListWidget()
        self.result_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.result_list.setMaximumHeight(120)
        layers_layout.addWidget(self.result_list)
        row = QHBoxLayout()
        row.addWidget(QLabel("Reference"))
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("A clean image of the same field (e.g. an average of many frames), if any.")
        self.reference_combo.currentTextChanged.connect(lambda _t: (self._refresh_results(), self._show_note()))
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
            "follows its slider. Compute measures them."
        )
        self.live_preview.toggled.connect(lambda _on: self._schedule_preview())
        grid.addWidget(self.live_preview, len(FILTER_CHOICES), 0, 1, 3)
        self.preview_layers: dict[str, str] = {}  # filter name -> preview layer name
        self._preview_job: EngineJob | None = None
        self._preview_again = False
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.update_preview)

        # -- compute and results --
        self.compute_button = QPushButton("Compute")
        self.compute_button.setToolTip("Measure every chosen image and show them side by side.")
        self.compute_button.clicked.connect(self.compute)
        self.single_button = QPushButton("Single view")
        self.single_button.clicked.connect(self.side_by_side.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button)
        buttons.addWidget(self.single_button)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: gray;")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(160)
        self.table.verticalHeader().setVisible(False)  # the image name is the row's label

        layout = QVBoxLayout(self)
        for widget in (layers_box, filters_box):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        for widget in (self.note, self.status, self.table):
            layout.addWidget(widget)
        layout.addStretch(1)

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.session.busy_changed.connect(lambda _b: self._update_buttons())
        self._refresh_layers()
        self._show_note()

    # -- layer lists -------------------------------------------------------------------------------------
    def _names(self) -> list[str]:
        return [layer.name for layer in self.session.image_layers()]

    def _refresh_layers(self, _event=None) -> None:
        names = self._names()
        noisy = self.noisy_combo.currentText()
        reference = self.reference_combo.currentText()
        for combo, items, current in (
            (self.noisy_combo, names, noisy),
            (self.reference_combo, [NO_REFERENCE, *names], reference),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            if current in items:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._refresh_results()
        self._show_note()

    def _refresh_results(self) -> None:
        checked = set(self.chosen_results())
        self.result_list.clear()
        for name in self._names():
            if name in (self.noisy_combo.currentText(), self.reference()) or self._is_preview(name):
                continue  # they have their own places in the comparison; previews are not results
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked)
            self.result_list.addItem(item)

    # -- choices (also used by tests and scripts) -------------------------------------------------------------
    def set_noisy(self, name: str) -> None:
        self.noisy_combo.setCurrentText(name)

    def set_reference(self, name: str | None) -> None:
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

    def update_preview(self) -> bool:
        """Compute the preview of every checked live filter (worker thread); False if there is none to show."""
        if self._preview_job is not None:
            self._preview_again = True  # one run at a time; the latest settings follow when it ends
            return True
        noisy_name = self.noisy_combo.currentText()
        wanted = []
        if self.live_preview.isChecked() and noisy_name in self.viewer.layers:
            wanted = [spec for spec in self.chosen_filters() if spec.name in LIVE_FILTERS]
        try:
            noisy = self.session.layer_data(noisy_name) if wanted else None
        except InputError:
            noisy, wanted = None, []
        if noisy is not None and noisy.size > LIVE_PREVIEW_PIXELS:
            self._set_status(f"{noisy_name} is too large for a live preview; press Compute.", ok=None)
            noisy, wanted = None, []
        self._drop_previews(keep={spec.name for spec in wanted})
        if not wanted:
            return False

        def call(_callback, _stop) -> dict[str, tuple[FilterSpec, np.ndarray]]:
            return {spec.name: (spec, apply_filter(noisy, spec.name, spec.size)) for spec in wanted}

        job = EngineJob("filter preview", call, parent=self)
        self._preview_job = job
        job.done.connect(lambda outcome: self._show_preview(noisy_name, outcome))
        job.start()
        return True

    def _show_preview(self, noisy_name: str, outcome: Outcome) -> None:
        self._preview_job = None
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
        noisy_name = self.noisy_combo.currentText()
        results = [name for name in self.chosen_results() if name != noisy_name]
        filters = self.chosen_filters()
        reference_name = self.reference()
        if not noisy_name:
            return self._refuse("add a noisy image layer first")
        if not results and not filters:
            return self._refuse("choose at least one result layer or filter to compare")
        try:
            noisy = self.session.layer_data(noisy_name)
            arrays = {name: self.session.layer_data(name) for name in results}
            reference = self.session.layer_data(reference_name) if reference_name else None
        except InputError as err:
            return self._refuse(str(err))

        def call(_callback, _stop) -> Comparison:
            filtered = {spec.label: apply_filter(noisy, spec.name, spec.size) for spec in filters}
            try:
                rows = compare_results(noisy, {**arrays, **filtered}, reference)
            except ValueError as err:  # a shape mismatch, written for the user
                raise InputError(str(err)) from None
            return Comparison(filtered, rows)

        job = EngineJob("comparison", call)
        self.job = job
        self._pending = (noisy_name, results, reference_name, filters)
        self._set_status("Computing…", ok=None)
        on_done = guarded(self._on_done, lambda message: self._finish_failed(message))
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
        self._set_status(f"Compared {len(self.compared) - 1} image(s) with {noisy_name}.", ok=True)

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
        columns = (*(REFERENCE_COLUMNS if "psnr" in rows[0] else ()), *NOISE_COLUMNS)
        self.table.clear()
        self.table.setColumnCount(len(columns) + 1)
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(["Image", *(title for _key, title, _fmt in columns)])
        for index, row in enumerate(rows):
            self.table.setItem(index, 0, QTableWidgetItem(names[str(row["name"])]))
            for column, (key, _title, fmt) in enumerate(columns, start=1):
                value = float(row[key])
                text = fmt.format(value) if math.isfinite(value) else "∞"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(index, column, item)
        self.table.resizeColumnsToContents()
        self._show_note()

    def column_values(self, title: str) -> dict[str, str]:
        """{image: cell text} of the column titled ``title`` (empty when there is no such column)."""
        headers = [self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())]
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
