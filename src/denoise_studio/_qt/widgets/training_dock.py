"""Training dock: Start / Stop, the run's status, epoch progress with time left, live loss curves, loss cards.

autoStructN2V shows three collapsible phases: Stage 1, Mask extraction and Stage 2.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pyqtgraph as pg
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...engine.errors import ConfigError
from ...engine.events import ProgressEvent
from ...engine.io import InputError
from ...engine.model import TrainedModel
from ..state.session import Session
from ..workers.training_run import COMPLETE, FAILED, PENDING, REVIEW, STOPPED, TRAINING, TrainingRun
from .dock import StudioDock
from .fields import hint_label
from .qt_utils import Connections, discard_widget

if TYPE_CHECKING:
    import napari

STATE_TEXT = {
    PENDING: "Pending",
    TRAINING: "Training",
    REVIEW: "Awaiting mask review",
    COMPLETE: "Complete",
    STOPPED: "Stopped",
    FAILED: "Failed",
    "skipped": "Skipped",
}
STATE_COLOURS = {
    PENDING: "#9ba1a6",
    TRAINING: "#0090ff",
    REVIEW: "#f5a623",
    COMPLETE: "#30a46c",
    STOPPED: "#f5a623",
    FAILED: "#e5484d",
    "skipped": "#9ba1a6",
}
PROGRESS_STEPS = 1000
TRAIN_COLOUR = "#0090ff"
VAL_COLOUR = "#f5a623"


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "estimating time left"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min left"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s left"
    return f"{seconds} s left"


def format_loss(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.4g}"


def state_badge(label: QLabel, state: str, detail: str = "") -> None:
    text = STATE_TEXT.get(state, state.capitalize())
    label.setText(f"<b>{text}</b>" + (f" — {detail}" if detail else ""))
    label.setStyleSheet(f"color: {STATE_COLOURS.get(state, '#9ba1a6')};")


class LossCard(QFrame):
    """A small framed number: current or best validation loss."""

    def __init__(self, title: str):
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        caption = hint_label(title, wrap=False)
        self.value = QLabel("–")
        self.value.setStyleSheet("font-size: 16pt; font-weight: bold;")
        layout.addWidget(caption)
        layout.addWidget(self.value)

    def set_value(self, value: float | None) -> None:
        self.value.setText(format_loss(value))


class PhasePanel(QWidget):
    """Status, epoch progress, loss curves and loss cards of one training phase."""

    def __init__(self, with_plot: bool = True, with_status: bool = True):
        super().__init__()
        self.status = QLabel()
        self.status.setWordWrap(True)
        # A single-phase run already shows its state at the top of the dock.
        self.status.setVisible(with_status)
        self.progress = QProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setTextVisible(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        self.train_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float]] = []
        self.plot = None
        if with_plot:
            self.plot = pg.PlotWidget()
            self.plot.setMinimumHeight(170)
            self.plot.setLabel("bottom", "epoch")
            self.plot.setLabel("left", "loss")
            self.plot.getAxis("left").enableAutoSIPrefix(False)
            self.plot.addLegend(offset=(-10, 10))
            self.plot.showGrid(x=True, y=True, alpha=0.2)
            self.train_curve = self.plot.plot([], [], pen=pg.mkPen(TRAIN_COLOUR, width=2), symbol="o", symbolSize=5,
                symbolBrush=TRAIN_COLOUR, name="train")
            self.val_curve = self.plot.plot([], [], pen=pg.mkPen(VAL_COLOUR, width=2), symbol="o", symbolSize=5,
                symbolBrush=VAL_COLOUR, name="validation")
            layout.addWidget(self.plot)
            cards = QHBoxLayout()
            self.current_card = LossCard("Current val loss")
            self.best_card = LossCard("Best val loss")
            cards.addWidget(self.current_card)
            cards.addWidget(self.best_card)
            layout.addLayout(cards)
        self.reset()

    def reset(self) -> None:
        self.set_status(PENDING)
        self.progress.setValue(0)
        self.progress.setFormat("not started")
        self.train_points.clear()
        self.val_points.clear()
        self.best: float | None = None
        if self.plot is not None:
            self.train_curve.setData([], [])
            self.val_curve.setData([], [])
            self.current_card.set_value(None)
            self.best_card.set_value(None)

    def set_status(self, state: str, message: str = "") -> None:
        self.state = state
        state_badge(self.status, state, message)
        if self.plot is None:
            # A phase without epochs (mask extraction): a busy bar while it runs.
            self.progress.setRange(0, 0 if state == TRAINING else PROGRESS_STEPS)
        if state in (COMPLETE, STOPPED, "skipped") and self.progress.value() < PROGRESS_STEPS:
            self.progress.setValue(PROGRESS_STEPS if state == COMPLETE else self.progress.value())
            self.progress.setFormat(STATE_TEXT.get(state, state))

    def update_from(self, event: ProgressEvent) -> None:
        if event.kind == "started":
            self.set_status(TRAINING, event.message)
            self.progress.setFormat("epoch 0" if event.limited_by_time else f"epoch 0/{event.epochs}")
        elif event.kind in ("batch", "epoch"):
            self.progress.setValue(int(event.fraction * PROGRESS_STEPS))
            self.progress.setFormat(f"{event.epoch_position} · {format_duration(event.time_left)}")
            if event.kind == "epoch" and self.plot is not None:
                self._add_epoch(event)
        elif event.kind == "finished":
            self.progress.setValue(PROGRESS_STEPS)
            self.progress.setFormat(f"{event.epoch} epochs · {event.elapsed:.0f} s")

    def _add_epoch(self, event: ProgressEvent) -> None:
        if event.train_loss is not None and math.isfinite(event.train_loss):
            self.train_points.append((event.epoch, event.train_loss))
        if event.val_loss is not None and math.isfinite(event.val_loss):
            self.val_points.append((event.epoch, event.val_loss))
            self.best = event.val_loss if self.best is None else min(self.best, event.val_loss)
        self.train_curve.setData([p[0] for p in self.train_points], [p[1] for p in self.train_points])
        self.val_curve.setData([p[0] for p in self.val_points], [p[1] for p in self.val_points])
        self.current_card.set_value(event.val_loss)
        self.best_card.set_value(self.best)


class TrainingDock(StudioDock):
    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__(napari_viewer, session)
        self.run: TrainingRun | None = None
        self._run_links = Connections(self)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train on the chosen image with the current configuration.")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current batch; the best model so far is kept.")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.continue_button = QPushButton("Continue training")
        self.continue_button.clicked.connect(self.continue_training)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.continue_button)
        buttons.addWidget(self.stop_button)

        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.run_label = hint_label(wrap=False)
        self.run_label.setWordWrap(True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #e5484d;")
        self.notice.hide()
        self.activity = hint_label(wrap=False)

        self._phase_host = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.run_label)
        layout.addWidget(self.notice)
        layout.addWidget(self.activity)
        layout.addLayout(self._phase_host)
        layout.addStretch(1)

        self.panels: dict[str, PhasePanel] = {}
        self.sections: dict[str, QCollapsible] = {}
        self._phases_widget: QWidget | None = None
        self.state = PENDING
        self._build_phases()
        self._show_state(PENDING, "press Start to train")
        self._links.connect(self.session.method_changed, self._on_method_changed)
        self._links.connect(self.session.busy_changed, self._on_busy)
        self._links.connect(self.session.run_started, self._attach)
        # Start waits for usable data: a bad layer, axes or target disables it, with the reason as its tooltip.
        self._links.connect(self.session.data_changed, self._update_start)
        self._links.connect(self.session.method_changed, self._update_start)
        self._links.connect(self.session.workflow_changed, self._update_start)
        self._links.connect(self.session.config_changed, self._update_start)
        self._links.connect(self.session.model_changed, self._update_start)
        # Closing the window must not leave a training running on: once the last training dock of
        # the session is gone, the run stops within a batch.
        self.session.attach_training_view(self)
        run = self.session.training_run
        if run is not None and run.active:
            # A dock opened while a run goes on (or reopened after being closed) shows it and can stop it.
            self._attach(run)
            self._show_state(run.state, run.message)
        self._update_start()

    # -- phases -------------------------------------------------------------------------------------------
    def _build_phases(self) -> None:
        if self._phases_widget is not None:
            self._phase_host.removeWidget(self._phases_widget)
            discard_widget(self._phases_widget)
        self.panels, self.sections = {}, {}
        self._phases_widget = QWidget()
        layout = QVBoxLayout(self._phases_widget)
        layout.setContentsMargins(0, 0, 0, 0)
        if self.session.method == "autostructn2v":
            for phase, title, with_plot in (
                ("stage1", "Stage 1: Noise2Void", True),
                ("extraction", "Mask extraction", False),
                ("stage2", "Stage 2: structN2V with the mask", True),
            ):
                panel = PhasePanel(with_plot)
                section = QCollapsible(title)
                section.addWidget(panel)
                section.expand(animate=False)
                layout.addWidget(section)
                self.panels[phase], self.sections[phase] = panel, section
        else:
            self.panels["training"] = PhasePanel(with_plot=True, with_status=False)
            layout.addWidget(self.panels["training"])
        self._phase_host.addWidget(self._phases_widget)

    def _on_method_changed(self, _method: str) -> None:
        if self.run is None or not self.run.active:
            self._build_phases()

    # -- actions --------------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start a training; returns False (and says why) when it cannot start."""
        session = self.session
        reason = session.busy_reason()
        if not reason and session.workflow == "import":
            reason = "the workflow is 'Import a trained model'; choose 'Train from scratch' in Method and Data to train"
        return self._start_run(reason)

    def continue_training(self) -> bool:
        """Train the current model further on the chosen image (its network and normalisation, the
        configuration's other settings); returns False (and says why) when it cannot start."""
        session = self.session
        reason = session.busy_reason() or self.continue_problem() or self._data_problem()
        return self._start_run(reason, init=session.model)

    def _start_run(self, reason: str, init: TrainedModel | None = None) -> bool:
        session = self.session
        if not reason and session.config_error:
            reason = f"the configuration is not valid: {session.config_error}"
        if not reason:
            try:
                # The layers' arrays, not their pixels: the job reads them (a lazy layer may be large).
                source, image = session.training_data()
                # A missing target refuses the start here; its alignment is checked in the job.
                found = session.target_data()
                extra = session.extra_training_data()
                clean, noise = session.clean_training_data(), session.simulation_noise()
                run = TrainingRun(
                    session, source, image, None if found is None else found[1], init=init, extra=extra,
                    clean=clean, noise=noise,
                )  # fmt: skip
            except (InputError, ConfigError) as err:
                reason = str(err)
        what = "Start" if init is None else "Continue training"
        if reason:
            self._refuse(reason, what)
            return False
        self.notice.hide()
        reason = run.start()  # every Training dock of this viewer attaches to it (see _attach)
        if reason:
            self._refuse(reason, what)
            return False
        return True

    def _attach(self, run: TrainingRun) -> None:
        """Show ``run``, whichever Training dock of this viewer started it."""
        if run is self.run:
            return
        # The previous run's connections go first, so an ended run (its networks, its data) can be freed;
        # once self.run no longer holds it, disconnecting its signals would touch a deleted object.
        self._run_links.release()
        self.run = run
        self.notice.hide()
        self._build_phases()
        self._run_links.connect(run.progress, self._on_progress)
        self._run_links.connect(run.state_changed, self._show_state)
        self._run_links.connect(run.phase_changed, self._on_phase)
        self._run_links.connect(run.notice, self._on_notice)

    def data_problem(self) -> str:
        """Why the chosen data cannot be trained on ("" when it can): the cheap checks of the Method dock's
        status (shape, type, axes, mode, target), which read no pixel."""
        if self.session.workflow == "import":
            return ""  # Start then says that the workflow imports a model
        return self._data_problem()

    def continue_problem(self) -> str:
        """Why the current model cannot be trained further ("" when it can)."""
        model = self.session.model
        if model is None:
            return "there is no model to continue: train one, or import one in Method and Data"
        if model.stage_networks:
            return "an autoStructN2V model trains its two networks from scratch; it cannot be continued"
        if self.session.method == "autostructn2v":
            return "autoStructN2V trains from scratch; choose N2V or N2V2 in Method and Data to continue the model"
        return ""

    def _data_problem(self) -> str:
        session = self.session
        ready, message = session.data_status()
        if ready:
            target = session.target_status()
            ready, message = target if target is not None else (True, "")
        return "" if ready else message

    def _update_start(self, _value=None) -> None:
        problem = self.data_problem()
        self.start_button.setEnabled(not problem)
        self.start_button.setToolTip(
            f"Cannot start: {problem}" if problem else "Train on the chosen image with the current configuration."
        )
        blocked = self.continue_problem() or self._data_problem()
        self.continue_button.setEnabled(not blocked)
        self.continue_button.setToolTip(
            f"Cannot continue: {blocked}"
            if blocked
            else "Train the current model further on the chosen image: its network and normalisation stay, "
            "the other settings (time budget, learning rate...) are the configuration's. A new model is saved; "
            "the current one is kept."
        )

    def stop(self) -> None:
        if self.run is not None and self.run.active:
            self.activity.setText("stopping after the current batch…")
            self.run.request_stop()

    def _refuse(self, reason: str, what: str = "Start") -> None:
        message = f"{what} refused: {reason[:1].upper()}{reason[1:]}"
        self.notice.setText(message)
        self.notice.show()
        show_info(message)

    # -- display ---------------------------------------------------------------------------------------------
    def _show_state(self, state: str, message: str) -> None:
        self.state = state
        state_badge(self.status_label, state, message)
        if self.run is not None and state != PENDING:
            self.run_label.setText(f"run {self.run.training_id} · model folder {self.run.run_dir}")
        active = state in (TRAINING, REVIEW)
        self.stop_button.setEnabled(active)
        if not active:
            self.activity.clear()
            self.notice.hide()  # a refusal while the run went on no longer applies once it has ended

    def _on_phase(self, phase: str, status: str, message: str) -> None:
        panel = self.panels.get(phase)
        if panel is not None:
            panel.set_status(status, message)
            if phase in self.sections and status in (TRAINING, REVIEW):
                self.sections[phase].expand(animate=False)

    def _on_progress(self, event: ProgressEvent) -> None:
        if event.stage == "prediction":
            self.activity.setText(f"denoising the training image: {event.prediction_position}")
            return
        panel = self.panels.get(event.stage)
        if panel is not None:
            panel.update_from(event)
            self.activity.setText("")

    def _on_notice(self, message: str) -> None:
        # The notice line stays while the run goes on (the activity line is rewritten every batch);
        # afterwards the model card keeps it.
        self.notice.setText(message)
        self.notice.show()
        show_info(f"Training: {message}")

    def _on_busy(self, active: bool) -> None:
        self.stop_button.setEnabled(active and self.run is not None and self.run.active)
