"""Results and Inference dock: the model card, side-by-side viewing, Process Data, and the workspace folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
)

from ...api import export_bmz
from ...engine.batch import BatchResult
from ...engine.events import ProgressEvent, StateEvent, TrainingEvent
from ...engine.gaintuning import ADAPT_DEFAULTS
from ...engine.io import InputError
from ...engine.model import TrainedModel
from ...engine.prediction import PredictionStopped
from ..state.session import Session
from ..workers.inference import (
    Adaptation,
    Prediction,
    adapt_to_image,
    add_result_layers,
    predict_file,
    predict_folder,
    predict_image,
)
from ..workers.worker import EngineJob, Outcome, guarded
from .bmz_dialog import BmzExportDialog, BmzExportRequest
from .dock import StudioDock
from .quality_panel import QualityPanel
from .side_by_side import SideBySide
from .training_dock import format_duration

if TYPE_CHECKING:
    import napari

PROGRESS_STEPS = 1000


def _path_row(choice: QRadioButton, placeholder: str, browse) -> tuple[QLineEdit, QHBoxLayout]:
    """A radio button, a path field that selects it when typed in, and a Browse… button."""
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    edit.textEdited.connect(lambda _text: choice.setChecked(True))
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    row = QHBoxLayout()
    row.addWidget(choice)
    row.addWidget(edit, 1)
    row.addWidget(button)
    return edit, row


class ResultsDock(StudioDock):
    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__(napari_viewer, session)
        self.side_by_side = SideBySide(self.viewer)
        self.job: EngineJob | None = None
        self._job_model: TrainedModel | None = None
        #: The axes of the layer being denoised, for its result layers.
        self._job_axes: str | None = None
        #: Processing a folder: (file, files) of the file in progress; None otherwise.
        self._files: tuple[int, int] | None = None
        self._bmz_job: EngineJob | None = None
        #: Adapting: the time budget, for the progress bar.
        self._adapt_budget: float | None = None

        # -- model card --
        self.card = QGroupBox("Model")
        self.card_layout = QFormLayout(self.card)
        self.bmz_button = QPushButton("Export to BioImage Model Zoo…")
        self.bmz_button.setToolTip(
            "A zip that deepImageJ (Fiji), Icy and bioimageio.core run without this plugin; bioimageio.core's own "
            "test must pass before it is written."
        )
        self.bmz_button.clicked.connect(self.open_bmz_dialog)
        self.bmz_status = QLabel()
        self.bmz_status.setWordWrap(True)

        # -- side by side --
        view_box = QGroupBox("Compare")
        view_layout = QVBoxLayout(view_box)
        self.comparison_label = QLabel()
        self.comparison_label.setWordWrap(True)
        self.open_button = QPushButton("Open in Viewer")
        self.open_button.setToolTip("Noisy and denoised side by side, with one camera and linked contrast.")
        self.open_button.clicked.connect(self.open_in_viewer)
        self.single_button = QPushButton("Single view")
        self.single_button.clicked.connect(self.close_side_by_side)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.single_button)
        view_layout.addWidget(self.comparison_label)
        view_layout.addLayout(row)

        # -- process data --
        process_box = QGroupBox("Process Data")
        process_layout = QVBoxLayout(process_box)
        self.from_layer = QRadioButton("Layer")
        self.from_file = QRadioButton("TIFF file")
        self.from_folder = QRadioButton("Folder")
        self.from_folder.setToolTip(
            "Every image file of the folder (TIFF, PNG, OME-Zarr), one after the other, into the results folder; "
            "results already there are kept, and a file that fails does not stop the others."
        )
        self.from_layer.setChecked(True)
        group = QButtonGroup(self)
        for button in (self.from_layer, self.from_file, self.from_folder):
            group.addButton(button)
        self.layer_combo = QComboBox()
        layer_row = QHBoxLayout()
        layer_row.addWidget(self.from_layer)
        layer_row.addWidget(self.layer_combo, 1)
        self.file_edit, file_row = _path_row(self.from_file, "path/to/stack.tif", self._choose_file)
        self.folder_edit, folder_row = _path_row(self.from_folder, "path/to/folder", self._choose_folder)
        self.tta = QCheckBox("Test-time augmentation")
        self.with_stage1 = QCheckBox("Also denoise with stage 1 (to compare stage 1 and stage 2)")
        self.open_result = QCheckBox("Open the result in the viewer (TIFF files)")
        self.open_result.setChecked(True)
        self.process_button = QPushButton("Process")
        self.process_button.clicked.connect(self.process)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.adapt_button = QPushButton("Adapt to this image")
        self.adapt_button.setToolTip(
            "GainTuning: tune a gain per feature channel of the model on the chosen layer alone (blind-spot loss; "
            "held-out blocks keep the gains only if they help), save the adapted model as a new run, make it the "
            "current model and denoise the layer with it. For an image unlike the ones the model learnt from."
        )
        self.adapt_button.clicked.connect(self.adapt)
        self.adapt_time = QSpinBox()
        self.adapt_time.setRange(5, 3600)
        self.adapt_time.setValue(int(ADAPT_DEFAULTS["max_time"]))
        self.adapt_time.setSuffix(" s")
        self.adapt_time.setToolTip("Time budget of the adaptation; it often ends sooner, once the gains stop helping.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.process_button)
        buttons.addWidget(self.adapt_button)
        buttons.addWidget(QLabel("at most"))
        buttons.addWidget(self.adapt_time)
        buttons.addWidget(self.stop_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.setFormat("idle")
        self.process_status = QLabel()
        self.process_status.setWordWrap(True)
        for item in (layer_row, file_row, folder_row):
            process_layout.addLayout(item)
        process_layout.addWidget(self.tta)
        process_layout.addWidget(self.with_stage1)
        process_layout.addWidget(self.open_result)
        process_layout.addLayout(buttons)
        process_layout.addWidget(self.progress)
        process_layout.addWidget(self.process_status)

        # -- quality without a reference --
        self.quality = QualityPanel(self.session, self.viewer, self._update_buttons)

        # -- workspace --
        workspace_box = QGroupBox("Workspace")
        workspace_layout = QVBoxLayout(workspace_box)
        self.workspace_label = QLabel()
        self.workspace_label.setWordWrap(True)
        change = QPushButton("Change…")
        change.setToolTip("Models go to <workspace>/models/<session>/<training>, results to <workspace>/results/.")
        change.clicked.connect(self._choose_workspace)
        workspace_layout.addWidget(self.workspace_label)
        workspace_layout.addWidget(change)

        layout = QVBoxLayout(self)
        for widget in (self.card, self.bmz_button, self.bmz_status, view_box, process_box, self.quality, workspace_box):
            layout.addWidget(widget)
        layout.addStretch(1)

        self._links.connect(self.session.model_changed, self._show_model)
        self._links.connect(self.session.noise_model_changed, self.quality.show_noise_model)
        self._links.connect(self.session.comparison_changed, lambda _c: self._show_comparison())
        self._links.connect(self.session.workspace_changed, lambda _w: self._show_workspace())
        self._links.connect(self.session.busy_changed, lambda _b: self._update_buttons())
        self._links.connect(self.viewer.layers.events.inserted, self._refresh_layers)
        self._links.connect(self.viewer.layers.events.removed, self._refresh_layers)
        self._refresh_layers()
        self._show_model(self.session.model)
        self._show_comparison()
        self._show_workspace()

    # -- display ---------------------------------------------------------------------------------------------
    def _show_model(self, model: TrainedModel | None) -> None:
        while self.card_layout.rowCount():
            self.card_layout.removeRow(0)
        if model is None:
            self.card_layout.addRow(QLabel("No model yet: train one, or import one in Method and Data."))
        else:
            for label, value in model.summary_lines():
                text = QLabel(value)
                text.setWordWrap(True)
                self.card_layout.addRow(f"{label}:", text)
        transforms = len(model.test_time_transforms) if model is not None else 1
        self.tta.setVisible(transforms > 1)
        # The model's own default: on for the High Quality preset.
        self.tta.setChecked(model is not None and model.config.prediction.tta)
        self.tta.setText(f"Test-time augmentation ({transforms} flips/rotations averaged, {transforms}x slower)")
        self.tta.setToolTip(
            "Run the network on each flip/rotation it was trained under and average the answers mapped back: "
            "a little less noise for that many times the prediction time."
        )
        has_stage1 = model is not None and model.has_separate_stage1
        self.with_stage1.setVisible(has_stage1)
        self.with_stage1.setChecked(has_stage1)
        self._update_buttons()

    def _show_comparison(self) -> None:
        comparison = self.session.comparison
        if comparison is None:
            self.comparison_label.setText("Nothing to compare yet.")
        else:
            noisy, results = comparison
            self.comparison_label.setText(" | ".join([noisy, *results]))
        self.quality.show_comparison()
        self._update_buttons()

    def _show_workspace(self) -> None:
        self.workspace_label.setText(str(self.session.workspace))

    def _refresh_layers(self, _event=None) -> None:
        current = self.layer_combo.currentText()
        names = [layer.name for layer in self.session.image_layers()]
        self.quality.refresh_layers(names)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)

    def _update_buttons(self) -> None:
        running = self.job is not None or self.quality.job is not None  # cleared when the job's outcome arrives
        self.process_button.setEnabled(self.session.model is not None and not running)
        self.adapt_button.setEnabled(self.session.model is not None and not running)
        self.bmz_button.setEnabled(self.session.model is not None and not running and self._bmz_job is None)
        self.stop_button.setEnabled(self.job is not None)
        self.open_button.setEnabled(self.session.comparison is not None)

    # -- side by side -------------------------------------------------------------------------------------------
    def open_in_viewer(self) -> list[str]:
        comparison = self.session.comparison
        if comparison is None:
            return []
        noisy, results = comparison
        shown = self.side_by_side.show([noisy, *results])
        if not shown:
            show_info("The layers to compare are no longer in the viewer.")
        return shown

    def close_side_by_side(self) -> None:
        self.side_by_side.close()

    # -- process data -------------------------------------------------------------------------------------------
    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a TIFF to denoise", "", "TIFF images (*.tif *.tiff)")
        if path:
            self.file_edit.setText(path)
            self.from_file.setChecked(True)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of images to denoise")
        if folder:
            self.folder_edit.setText(folder)
            self.from_folder.setChecked(True)

    def process(self) -> bool:
        """Apply the model to the chosen layer, TIFF file or folder; returns False (and says why) if it cannot start."""
        model = self.session.model
        if model is None:
            return self._refuse("no model yet: train one, or import one in Method and Data")
        out_dir = self.session.results_dir(model.name)
        with_stage1 = not self.with_stage1.isHidden() and self.with_stage1.isChecked()
        tta = not self.tta.isHidden() and self.tta.isChecked()
        self._files = None
        if self.from_folder.isChecked():
            folder = Path(self.folder_edit.text().strip()).expanduser()
            if not folder.is_dir():
                return self._refuse(f"{folder}: no such folder")
            target = out_dir / folder.name

            def call(callback, stop) -> BatchResult:
                return predict_folder(model, folder, target, callback, stop, tta)

            what, axes = f"the images of {folder.name}", None
            self._files = (0, 0)
        elif self.from_file.isChecked():
            path = Path(self.file_edit.text().strip()).expanduser()
            if not path.is_file():
                return self._refuse(f"{path}: no such file")
            load = self.open_result.isChecked()

            def call(callback, stop) -> Prediction:
                # The file's own axes (OME-TIFF, ImageJ) or the guess: the axes field describes the input layer.
                return predict_file(model, path, out_dir, callback, stop, with_stage1, load, tta=tta)

            what, axes = path.name, None
        else:
            name = self.layer_combo.currentText()
            if not name:
                return self._refuse("no image layer to denoise: open an image, or choose a TIFF file")
            try:
                image = self.session.layer_array(name)  # read by the job: a lazy layer may be large
                axes = self.session.axes_for(name)
                meta = self.session.layer_meta(name, axes)
            except InputError as err:
                return self._refuse(str(err))

            def call(callback, stop) -> Prediction:
                return predict_image(
                    model, image, name, out_dir, callback, stop, with_stage1, axes=axes, meta=meta, tta=tta
                )

            what = name
        reason = self.session.busy_reason()
        if reason:
            return self._refuse(reason)
        self.process_status.setStyleSheet("")
        self.process_status.setText(f"Denoising {what}…")
        self.progress.setValue(0)
        self.progress.setFormat("starting")
        job = EngineJob(f"processing {what}", call)
        self.job, self._job_model, self._job_axes = job, model, axes
        on_done = guarded(self._on_done, lambda message: self._status(f"Failed: {message}", ok=False))
        self._update_buttons()
        reason = self.session.run_job(job, f"processing {what}", on_done, self._on_progress)
        if reason:
            self.job = None
            return self._refuse(reason)
        return True

    def adapt(self) -> bool:
        """GainTuning of the current model to the chosen layer, then that layer denoised with the adapted model,
        which becomes the session's model; returns False (and says why) if it cannot start."""
        model = self.session.model
        if model is None:
            return self._refuse("no model yet: train one, or import one in Method and Data")
        name = self.layer_combo.currentText()
        if not self.from_layer.isChecked() or not name:
            return self._refuse("choose the layer to adapt to (Process Data: Layer)")
        try:
            image = self.session.layer_array(name)  # read by the job
            axes = self.session.axes_for(name)
            meta = self.session.layer_meta(name, axes)
        except InputError as err:
            return self._refuse(str(err))
        reason = self.session.busy_reason()
        if reason:
            return self._refuse(reason)
        training_id = f"{self.session.new_training_id(model.method)}-adapted"
        run_dir, out_dir = self.session.models_dir(training_id), self.session.results_dir(training_id)
        budget = float(self.adapt_time.value())

        def call(callback, stop) -> Adaptation:
            return adapt_to_image(model, image, name, run_dir, out_dir, callback, stop, axes, meta, budget)

        self.process_status.setStyleSheet("")
        self.process_status.setText(f"Adapting the model to {name}…")
        self.progress.setValue(0)
        self.progress.setFormat("starting")
        self._files, self._adapt_budget = None, budget
        job = EngineJob(f"adapting the model to {name}", call)
        self.job, self._job_model, self._job_axes = job, model, axes
        on_done = guarded(self._on_adapted, lambda message: self._status(f"Failed: {message}", ok=False))
        self._update_buttons()
        reason = self.session.run_job(job, f"adapting the model to {name}", on_done, self._on_progress)
        if reason:
            self.job = None
            return self._refuse(reason)
        return True

    def _on_adapted(self, outcome: Outcome) -> None:
        self.job, self._job_model, self._adapt_budget = None, None, None
        axes, self._job_axes = self._job_axes, None
        self._update_buttons()
        if not outcome.ok:
            self.progress.setFormat("failed")
            self._status(f"Failed: {outcome.message}", ok=False)
            show_error(f"Adaptation failed: {outcome.message}")
            return
        adaptation: Adaptation = outcome.value
        result = adaptation.result
        if result.model is None:
            self.progress.setFormat("stopped")
            self._status(f"Stopped before the first step; the model is unchanged. {result.message}", ok=False)
            return
        self.session.set_model(result.model)
        summary = result.model.summary
        helped = summary.get("best_epoch", 0) > 0
        verdict = "adapted" if helped else "the gains did not help: the adapted model equals the original"
        text = (
            f"GainTuning {result.state.value} in {summary.get('elapsed_s', 0):.0f} s: held-out loss "
            f"{summary.get('initial_val_loss', float('nan')):.4g} → {result.model.best_val_loss:.4g} ({verdict}). "
            f"Saved to {result.run_dir}."
        )
        self.progress.setValue(PROGRESS_STEPS)
        self.progress.setFormat("done" if adaptation.prediction is not None else "stopped")
        prediction = adaptation.prediction
        if prediction is not None and prediction.arrays:
            names = add_result_layers(self.session, result.model, prediction, axes=axes)
            if prediction.source in self.viewer.layers:
                self.session.set_comparison(prediction.source, names)
            text += f" Denoised: {', '.join(str(path) for path in prediction.files.values())}"
        self._status(text, ok=True)
        show_info(text)

    def stop(self) -> None:
        if self.job is not None and self.job.running:
            self.job.request_stop()
            self.process_status.setText("Stopping…")

    def _on_progress(self, event: ProgressEvent) -> None:
        if isinstance(event, TrainingEvent):  # adapting: the budget bounds it
            budget = self._adapt_budget or 1.0
            self.progress.setValue(int(min(event.elapsed / budget, 1.0) * PROGRESS_STEPS))
            self.progress.setFormat(f"adapting · epoch {event.epoch} · {format_duration(event.time_left)}")
            return
        if isinstance(event, StateEvent):
            if event.steps:  # many files: which one, and what became of the last
                self._files = (event.step, event.steps)
                self.process_status.setText(event.message)
                self.progress.setValue(int((event.step - 1) / event.steps * PROGRESS_STEPS))
                self.progress.setFormat(f"file {event.step}/{event.steps}")
            return
        if self._files and self._files[1]:
            step, steps = self._files
            self.progress.setValue(int((step - 1 + event.fraction) / steps * PROGRESS_STEPS))
            self.progress.setFormat(f"file {step}/{steps} · {event.prediction_position}")
            return
        self.progress.setValue(int(event.fraction * PROGRESS_STEPS))
        self.progress.setFormat(f"{event.prediction_position} · {format_duration(event.time_left)}")

    def _on_done(self, outcome: Outcome) -> None:
        self.job = None
        model, self._job_model = self._job_model, None
        axes, self._job_axes = self._job_axes, None
        self._update_buttons()
        if not outcome.ok:
            self.progress.setFormat("stopped" if isinstance(outcome.error, PredictionStopped) else "failed")
            if isinstance(outcome.error, PredictionStopped):
                self._status("Stopped; nothing was written.", ok=False)
            else:
                self._status(f"Failed: {outcome.message}", ok=False)
                show_error(f"Processing failed: {outcome.message}")
            return
        if isinstance(outcome.value, BatchResult):
            self._show_batch(outcome.value)
            return
        prediction: Prediction = outcome.value
        self.progress.setValue(PROGRESS_STEPS)
        self.progress.setFormat("done")
        files = ", ".join(str(path) for path in prediction.files.values())
        if prediction.arrays:
            names = add_result_layers(self.session, model, prediction, axes=axes)
            if prediction.source in self.viewer.layers:
                ordered = sorted(names, key=lambda n: 0 if "(stage 1)" in n else 1)
                self.session.set_comparison(prediction.source, ordered)
        self._status(f"Saved {files}", ok=True)
        show_info(f"Denoised result saved: {files}")

    def _show_batch(self, result: BatchResult) -> None:
        """A folder's outcome: the counts, each failure with its reason, where the results are."""
        self.progress.setValue(PROGRESS_STEPS if not result.stopped else self.progress.value())
        self.progress.setFormat("stopped" if result.stopped else "done")
        lines = [result.summary()]
        lines += [f"{outcome.source.name}: {outcome.error}" for outcome in result.failed]
        if result.outcomes:
            lines.append(f"Results in {result.outcomes[0].target.parent}")
        self._status("\n".join(lines), ok=not result.failed and not result.stopped)
        (show_error if result.failed else show_info)(f"Process folder: {result.summary()}")

    def _status(self, text: str, ok: bool) -> None:
        self.process_status.setText(text)
        self.process_status.setStyleSheet("color: #30a46c;" if ok else "color: #e5484d;")

    def _refuse(self, reason: str) -> bool:
        self._status(f"Not started: {reason}", ok=False)
        show_info(f"Process Data: {reason}")
        return False

    # -- BioImage Model Zoo ---------------------------------------------------------------------------------------
    def open_bmz_dialog(self) -> bool:
        model = self.session.model
        if model is None:
            return False
        layers = [layer.name for layer in self.session.image_layers()]
        dialog = BmzExportDialog(model, layers, self.session.workspace / "exports", self)
        if dialog.exec() != BmzExportDialog.DialogCode.Accepted:
            return False
        try:
            request = dialog.request()
        except ValueError as err:
            return self._bmz_done(str(err), ok=False)
        return self.export_bmz(request)

    def export_bmz(self, request: BmzExportRequest) -> bool:
        """Export the current model with ``request``'s metadata, in the background; False (and why) if not."""
        model = self.session.model
        if model is None:
            return self._bmz_done("no model to export", ok=False)
        if request.target.exists():
            return self._bmz_done(f"{request.target} already exists; choose another file", ok=False)
        if request.layer not in self.viewer.layers:
            return self._bmz_done("choose an image layer for the test image", ok=False)
        image = self.session.layer_array(request.layer)

        def call(_callback, _stop):
            return export_bmz(
                model, request.target, image, name=request.name, description=request.description,
                authors=request.authors, license=request.license, citations=request.citations,
            )  # fmt: skip

        reason = self.session.busy_reason()
        if reason:
            return self._bmz_done(reason, ok=False)
        self.bmz_status.setStyleSheet("")
        self.bmz_status.setText("Exporting and testing the package with bioimageio.core…")
        job = EngineJob("BioImage Model Zoo export", call)
        self._bmz_job = job
        self._update_buttons()
        on_done = guarded(self._on_bmz_done, lambda message: self._bmz_done(f"Failed: {message}", ok=False))
        reason = self.session.run_job(job, "exporting the model", on_done)
        if reason:
            self._bmz_job = None
            return self._bmz_done(reason, ok=False)
        return True

    def _on_bmz_done(self, outcome: Outcome) -> None:
        self._bmz_job = None
        self._update_buttons()
        if outcome.ok:
            self._bmz_done(f"Exported {outcome.value} (bioimageio.core's test passed).", ok=True)
        else:
            self._bmz_done(f"Not exported: {outcome.message}", ok=False)

    def _bmz_done(self, text: str, ok: bool) -> bool:
        self.bmz_status.setText(text)
        self.bmz_status.setStyleSheet("color: #30a46c;" if ok else "color: #e5484d;")
        return ok

    # -- workspace -----------------------------------------------------------------------------------------------
    def _choose_workspace(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the workspace folder", str(self.session.workspace))
        if folder:
            self.session.set_workspace(folder)
