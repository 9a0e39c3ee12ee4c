"""Mask Review dock (autoStructN2V): look at the extracted mask, edit it, regenerate it, approve it.

The run waits at this gate on the GUI thread after stage 1. Regeneration runs in a worker; approving
hands the (possibly edited) mask to the pipeline and starts stage 2 in a worker.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QDockWidget,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ...engine.config import AutoStructConfig, MaskExtractorConfig
from ..state.session import Session
from ..workers.training_run import REVIEW, TrainingRun
from .binding import ConfigBinding
from .dock import StudioDock
from .fields import FieldEditor, hint_label
from .mask_widgets import CorrelationMap, KernelGrid, colour_limit
from .qt_utils import Connections, discard_widget

if TYPE_CHECKING:
    import napari

    from ...engine.mask_extraction import MaskExtractionResult

PLANE_TITLES_3D = ("Z-1 (above)", "Z (center)", "Z+1 (below)")
REVIEW_EXTRACTOR_FIELDS = ("adaptive", "base_percentile", "percentile_decay", "max_pixels")


def mask_statistics(extraction: MaskExtractionResult, mask: np.ndarray) -> dict[str, float]:
    """Kernel size, active pixels, coverage and margin of ``mask`` (the extracted one or an edit of it)."""
    if dataclasses.is_dataclass(extraction):
        # The engine's own definitions, applied to the edited mask.
        edited = dataclasses.replace(extraction, mask=np.asarray(mask, dtype=bool), warnings=list(extraction.warnings))
        return {
            "kernel_size": int(edited.kernel_size),
            "active_pixels": int(edited.active_pixels),
            "coverage_percent": float(edited.coverage_percent),
            "margin": float(edited.margin()),
        }
    return {
        "kernel_size": int(mask.shape[-1]),
        "active_pixels": int(np.count_nonzero(mask)),
        "coverage_percent": float(extraction.coverage_percent),
        "margin": float(extraction.margin()),
    }


class PlaneView(QWidget):
    """Kernel grid and correlation map of one plane, side by side."""

    def __init__(self, size: int, has_centre: bool):
        super().__init__()
        self.grid = KernelGrid(size, has_centre)
        self.heat = CorrelationMap()
        layout = QHBoxLayout(self)
        left = QVBoxLayout()
        left.addWidget(QLabel("Mask (click to toggle)"))
        left.addWidget(self.grid)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(QLabel("Residual correlation"))
        right.addWidget(self.heat, 1)
        layout.addLayout(left)
        layout.addLayout(right, 1)


class MaskReviewDock(StudioDock):
    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__(napari_viewer, session)
        self.run: TrainingRun | None = None
        self._run_links = Connections(self)
        self.extraction: MaskExtractionResult | None = None
        #: The mask as edited here: planes x K x K booleans.
        self.mask: np.ndarray | None = None
        self.planes: list[PlaneView] = []

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.tabs = QTabWidget()
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.summary = hint_label()
        self.advice = QLabel()
        self.advice.setWordWrap(True)
        self.advice.setStyleSheet("color: #f5a623;")

        # Extractor parameters edit the session's config, like the Configure dock.
        self.binding = ConfigBinding(self.session, self)
        params = QGroupBox("Extractor parameters")
        grid = QGridLayout(params)
        grid.setColumnStretch(1, 1)
        self.param_editors: dict[str, FieldEditor] = {}
        for name in REVIEW_EXTRACTOR_FIELDS:
            editor = self.binding.bind(FieldEditor(MaskExtractorConfig, name, ("extractor", name)))
            self.param_editors[name] = editor
            row = grid.rowCount()
            label = QLabel(editor.label)
            label.setToolTip(editor.input.toolTip())
            grid.addWidget(label, row, 0)
            grid.addWidget(editor, row, 1)
        self.regenerate_button = QPushButton("Regenerate Mask")
        self.regenerate_button.setToolTip("Extract the mask again with these parameters (stage 1 is not retrained).")
        self.regenerate_button.clicked.connect(self.regenerate)
        self.reset_button = QPushButton("Undo edits")
        self.reset_button.setToolTip("Go back to the mask as extracted.")
        self.reset_button.clicked.connect(self.reset_edits)
        grid.addWidget(self.regenerate_button, grid.rowCount(), 0, 1, 2)

        self.approve_button = QPushButton("Approve && Continue to Stage 2")
        self.approve_button.setToolTip("Train stage 2 (structN2V) with the mask shown here, edits included.")
        self.approve_button.clicked.connect(self.approve)
        self.skip_button = QPushButton("Skip Stage 2")
        self.skip_button.setToolTip("Keep the stage-1 (Noise2Void) model as the result.")
        self.skip_button.clicked.connect(self.skip_stage2)
        self.auto_approve = self.binding.bind(FieldEditor(AutoStructConfig, "auto_approve", ("auto_approve",)))
        self.auto_approve.input.setText("Auto-approve (next time, go on to stage 2 without review)")

        decisions = QHBoxLayout()
        decisions.addWidget(self.approve_button)
        decisions.addWidget(self.skip_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.tabs)
        layout.addWidget(self.stats)
        layout.addWidget(self.summary)
        layout.addWidget(self.advice)
        layout.addWidget(self.reset_button)
        layout.addWidget(params)
        layout.addLayout(decisions)
        layout.addWidget(self.auto_approve)
        layout.addStretch(1)

        self._links.connect(self.session.run_started, self._follow)
        self._links.connect(self.session.method_changed, lambda _m: self._show_idle())
        self._links.connect(self.session.busy_changed, lambda _b: self._update_buttons())
        if self.session.training_run is not None:
            self._follow(self.session.training_run)
        self._show_idle()

    # -- following a run ---------------------------------------------------------------------------------------
    def _follow(self, run: TrainingRun) -> None:
        # The previous run's connections go first, so an ended run can be freed: a bound Qt signal does
        # not keep its run alive, and disconnecting it once the run's last reference (self.run) has gone
        # would touch a deleted object (a crash, not an exception).
        self._run_links.release()
        self.run = run
        self._run_links.connect(run.review_requested, self.show_extraction)
        self._run_links.connect(run.state_changed, self._on_run_state)

    def _on_run_state(self, state: str, message: str) -> None:
        # Once the run has left the review (approved, skipped, stopped, failed) the grid is no longer editable.
        if self.extraction is not None and state not in (REVIEW, "training"):
            self.status.setText(f"The review is over: {message}" if message else "The review is over.")
        self._update_buttons()

    def _show_idle(self) -> None:
        if self.extraction is not None and self.run is not None and self.run.state == REVIEW:
            return
        if self.session.method != "autostructn2v":
            self.status.setText("Mask review belongs to autoStructN2V: choose it in Method and Data.")
        else:
            self.status.setText("The extracted mask appears here when stage 1 has finished.")
        self._update_buttons()

    @property
    def reviewing(self) -> bool:
        return self.run is not None and self.run.state == REVIEW and self.mask is not None

    def _update_buttons(self) -> None:
        ready = self.reviewing and not self.session.busy
        for button in (self.approve_button, self.skip_button, self.regenerate_button, self.reset_button):
            button.setEnabled(ready)
        for view in self.planes:
            view.grid.setEnabled(ready)

    # -- showing an extraction ------------------------------------------------------------------------------------
    def show_extraction(self, extraction: MaskExtractionResult) -> None:
        self.extraction = extraction
        self.mask = np.array(extraction.mask, dtype=bool, copy=True)
        if self.mask.ndim == 2:
            self.mask = self.mask[np.newaxis]
        self._build_tabs()
        self.summary.setText(extraction.summary() + "".join(f"\nwarning: {w}" for w in extraction.warnings))
        self.advice.setText(
            "" if extraction.structured else
            "No structured noise above the noise floor: stage 2 would equal Noise2Void. Skipping it is recommended."
        )
        self.status.setText(
            "Review the mask: click pixels to toggle them, or change the parameters and regenerate. "
            "Then approve it for stage 2, or skip stage 2."
        )
        self._refresh()
        self._update_buttons()
        self._bring_forward()

    def _bring_forward(self) -> None:
        """Docked on its own, the review dock comes to the front when a mask is waiting."""
        parent = self.parentWidget()
        while parent is not None and not isinstance(parent, QDockWidget):
            parent = parent.parentWidget()
        if parent is not None:
            parent.show()
            parent.raise_()

    def _build_tabs(self) -> None:
        self.tabs.clear()
        for view in self.planes:
            discard_widget(view)
        self.planes = []
        count, size = self.mask.shape[0], self.mask.shape[1]
        titles = PLANE_TITLES_3D if count == 3 else ("Kernel",)
        for index, title in enumerate(titles):
            view = PlaneView(size, has_centre=index == count // 2)
            view.grid.toggled.connect(lambda row, col, plane=index: self.toggle(plane, row, col))
            self.planes.append(view)
            self.tabs.addTab(view, title)
        self.tabs.setCurrentIndex(count // 2)

    def _refresh(self) -> None:
        correlation = np.asarray(self.extraction.correlation)
        if correlation.ndim == 2:
            correlation = correlation[np.newaxis]
        limit = colour_limit(correlation)
        for index, view in enumerate(self.planes):
            view.grid.show_plane(self.mask[index], correlation[index])
            view.heat.show_plane(correlation[index], hide_centre=index == len(self.planes) // 2, limit=limit)
        stats = mask_statistics(self.extraction, self.mask)
        size = stats["kernel_size"]
        planes = f"{len(self.planes)} x " if len(self.planes) > 1 else ""
        self.stats.setText(
            f"<b>Kernel</b> {planes}{size}×{size} · <b>active pixels</b> {stats['active_pixels']} · "
            f"<b>coverage</b> {stats['coverage_percent']:.1f} % · "
            f"<b>margin</b> {stats['margin']:.2f}× the noise floor (|ρ| / {self.extraction.floor:.3f})"
        )
        edited = not np.array_equal(self.mask, np.asarray(self.extraction.mask, dtype=bool).reshape(self.mask.shape))
        self.reset_button.setText("Undo edits" + (" (mask edited)" if edited else ""))
        self.statistics = stats

    # -- actions ---------------------------------------------------------------------------------------------------
    def toggle(self, plane: int, row: int, col: int) -> None:
        if self.mask is None or self.planes[plane].grid.is_centre(row, col):
            return
        self.mask[plane, row, col] = not self.mask[plane, row, col]
        self._refresh()

    def reset_edits(self) -> None:
        if self.extraction is not None:
            self.show_extraction(self.extraction)

    def regenerate(self) -> None:
        if not self.reviewing:
            return
        if self.session.config_error:
            self._say(f"Fix the parameters first: {self.session.config_error}")
            return
        config = self.session.config
        params = config.extractor if isinstance(config, AutoStructConfig) else MaskExtractorConfig()
        self.status.setText("Regenerating the mask…")
        reason = self.run.regenerate(params)
        if reason:
            self._say(reason)
        self._update_buttons()

    def approve(self) -> None:
        if not self.reviewing:
            return
        reason = self.run.approve(self.mask.copy())
        if reason:
            self._say(f"Not approved: {reason}")
            return
        self._close_review("Mask approved; stage 2 is training (see the Training dock).")
        self.session.show_dock.emit("training")

    def skip_stage2(self) -> None:
        if not self.reviewing:
            return
        reason = self.run.skip_stage2()
        if reason:
            self._say(reason)
            return
        self._close_review("Stage 2 skipped; the stage-1 model is the result.")

    def _close_review(self, message: str) -> None:
        self.status.setText(message)
        self._update_buttons()

    def _say(self, message: str) -> None:
        self.status.setText(message)
        show_info(message)
