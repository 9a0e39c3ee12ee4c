"""One training run, from Start to its end, driven from the GUI thread.

Noise2Void / N2V2 / Noise2Noise / CARE / autoencoder: one job resolves the targets (paired methods),
trains, keeps the best weights on disk (with the target's normalisation), and denoises the training
image (DecoNoising also gives the deconvolved image).

autoStructN2V: job 1 trains stage 1 and extracts the mask; the run then waits at the review gate on
the GUI thread (the Mask Review dock calls :meth:`regenerate`, :meth:`approve` or :meth:`skip_stage2`);
job 2 trains stage 2 with the approved mask and denoises. Stop keeps the best model of the stage it
interrupts. Every engine call runs in an :class:`~.worker.EngineJob`; the run only reacts to outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ..engine.config import AutoStructConfig, ConfigError, DenoiseConfig, MaskExtractorConfig
from ..engine.data import Normalization, check_stack_for_mode
from ..engine.events import ProgressEvent, StopRequest
from ..engine.mask_extraction import MaskExtractionResult
from ..engine.methods.autostruct import AutoStructPipeline, AutoStructState
from ..engine.model_files import save_model
from ..engine.prediction import PredictionStopped
from ..engine.targets import prepare_targets
from ..engine.training import TrainingResult, train
from .inference import Prediction, add_result_layers, predict_image, release_device_memory
from .session import Session
from .trained_model import TrainedModel, now_iso
from .worker import EngineJob, EventRelay, Outcome, guarded

#: Overall states shown by the Training dock.
PENDING, TRAINING, REVIEW, COMPLETE, STOPPED, FAILED = (
    "pending",
    "training",
    "awaiting_review",
    "complete",
    "stopped",
    "failed",
)
STOP_REASONS = {
    "completed": "all epochs done",
    "early_stopping": "early stopping: the validation loss stopped improving",
    "time_budget": "the time budget was reached",
    "stopped": "stopped on request; the best model so far is kept",
}


@dataclass
class N2VOutput:
    result: TrainingResult
    prediction: Prediction | None = None
    note: str = ""


@dataclass
class StageOutput:
    prediction: Prediction | None = None
    notes: list[str] = field(default_factory=list)


class TrainingRun(QObject):
    #: Training progress (batches, epochs, prediction planes), on the GUI thread.
    progress = Signal(object)
    #: (state, message) of the whole run; state is one of the module constants.
    state_changed = Signal(str, str)
    #: (phase, status, message); phases "training" or "stage1", "extraction", "stage2".
    phase_changed = Signal(str, str, str)
    #: The extraction to review (first time and after each regeneration).
    review_requested = Signal(object)

    def __init__(
        self,
        session: Session,
        source: str,
        image: np.ndarray,
        target: np.ndarray | None = None,
        checked_targets: list[np.ndarray] | None = None,
    ):
        """``target`` is the raw paired image (Noise2Noise, CARE); ``checked_targets`` the same already
        checked by the engine's prepare_targets (then the job does not check it again)."""
        super().__init__()
        self.session = session
        self.config = session.config  # the run keeps the config it started with (configs are immutable)
        self.method = session.method
        self.mode = self.config.mode
        self.source = source
        self.image = image
        self.target = target
        self.checked_targets = checked_targets
        self.training_id = session.new_training_id()
        self.run_dir = session.models_dir(self.training_id)
        self.results_dir = session.results_dir(self.training_id)
        self.stop = StopRequest()
        # The pipeline outlives single jobs, so its events go through a relay owned by the run.
        self._relay = EventRelay(self)
        self._relay.event.connect(self._on_event)
        self.pipeline: AutoStructPipeline | None = None
        self.state = PENDING
        self.message = ""
        self.model: TrainedModel | None = None
        self._current_phase = "stage1" if self.autostruct else "training"

    # -- state ---------------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.state in (TRAINING, REVIEW)

    @property
    def autostruct(self) -> bool:
        return isinstance(self.config, AutoStructConfig)

    def busy_reason(self) -> str:
        if self.state == REVIEW:
            return "a training is waiting at the mask review; approve the mask, skip stage 2 or press Stop first"
        return f"training {self.training_id} is running; only one training at a time (press Stop to end it)"

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = state
        self.message = message
        self.state_changed.emit(state, message)
        self.session.notify_activity()

    def _phase(self, phase: str, status: str, message: str = "") -> None:
        if status == TRAINING:
            self._current_phase = phase
        self.phase_changed.emit(phase, status, message)

    def _guarded(self, handler):
        return guarded(handler, lambda message: self._fail(f"internal error: {message}"))

    # -- start / stop ----------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the first job; returns "" or the reason it could not start."""
        if self.autostruct:
            job = EngineJob("autoStructN2V stage 1", self._stage1_call, stop=self.stop)
            on_done = self._on_stage1_done
        else:
            job = EngineJob("training", self._train_call, stop=self.stop)
            on_done = self._on_trained
        self.session.training_run = self
        self.session.run_started.emit(self)
        self._set_state(TRAINING, "training started")
        self._phase("stage1" if self.autostruct else "training", TRAINING, "")
        reason = self.session.run_job(job, "training", self._guarded(on_done), self.progress.emit, owner=self)
        if reason:
            self.session.training_run = None
            self._set_state(PENDING, reason)
        return reason

    def request_stop(self) -> None:
        """Stop keeps the best model of the interrupted stage; at the review gate, the stage-1 model."""
        self.stop.set()
        if self.state == REVIEW and not self.session.busy:
            self._finish_at_review(stopped=True)

    # -- one network: Noise2Void, N2V2, Noise2Noise, CARE, autoencoder -------------------------------------
    def _train_call(self, callback, stop) -> N2VOutput:
        config: DenoiseConfig = self.config
        stack = check_stack_for_mode(self.image, config.mode, name=self.source)
        targets = self.checked_targets
        if targets is None:
            # Filter-made (CARE) and registered targets are resolved once, here, as the CLI does.
            targets = prepare_targets(config, [stack], None if self.target is None else [self.target])
        normalization = Normalization.fit([stack], config.data)
        target_normalization = Normalization.fit(targets, config.data) if targets is not None else None
        run_dir = self.run_dir

        def checkpoint(state: dict, summary: dict) -> None:
            save_model(run_dir, config, normalization, state, summary, target_normalization=target_normalization)

        # The trainer gets the resolved targets as given, so the filter spec must not build them again.
        resolved = config.model_copy(update={"supervised": config.supervised.model_copy(update={"target_from": None})})
        result = train(
            resolved, [stack], callback=callback, stop=stop, checkpoint=checkpoint, normalization=normalization,
            targets=targets, target_normalization=target_normalization,
        )  # fmt: skip
        output = N2VOutput(result)
        if result.stop_reason == "stopped" or result.best_epoch == 0:
            release_device_memory(result.model)
            return output
        model = self._model_record(
            config, normalization, result.model, result.best_val_loss, result.stop_reason,
            target_normalization=result.target_normalization,
        )  # fmt: skip
        try:
            output.prediction = predict_image(model, self.image, self.source, self.results_dir, callback, stop)
        except PredictionStopped:
            output.note = "denoising of the training image stopped; use Process Data to run it again"
        return output

    def _on_trained(self, outcome: Outcome) -> None:
        if not outcome.ok:
            self._fail(outcome.message)
            return
        output: N2VOutput = outcome.value
        result = output.result
        if result.best_epoch == 0:
            self._end(STOPPED, "stopped before the first epoch was validated; no model was kept", "training")
            return
        # The run's own config (with a CARE filter spec, if any), as saved in config.json.
        self.model = self._model_record(
            self.config, result.normalization, result.model, result.best_val_loss, result.stop_reason,
            target_normalization=result.target_normalization,
        )  # fmt: skip
        self._publish(output.prediction)
        state = STOPPED if result.stop_reason == "stopped" else COMPLETE
        message = f"{STOP_REASONS.get(result.stop_reason, result.stop_reason)}; best validation loss " \
                  f"{result.best_val_loss:.4g} (epoch {result.best_epoch})"
        if output.note:
            message += f"; {output.note}"
        self._end(state, message, "training")

    # -- autoStructN2V: stage 1 and extraction ------------------------------------------------------------
    def _stage1_call(self, _callback, stop) -> AutoStructPipeline:
        pipeline = AutoStructPipeline(
            self.config, [self.image], callback=self._relay, stop=stop, run_dir=self.run_dir
        )
        self.pipeline = pipeline
        pipeline.run_stage1()
        if pipeline.state == AutoStructState.STOPPED:
            pipeline.save()
        else:
            pipeline.extract_mask()
        # The review may take minutes: the stage-1 network waits on the CPU, not on the GPU.
        release_device_memory(pipeline.stage1.model)
        return pipeline

    def _on_stage1_done(self, outcome: Outcome) -> None:
        if not outcome.ok:
            self._fail(outcome.message)
            return
        pipeline: AutoStructPipeline = outcome.value
        if pipeline.state == AutoStructState.STOPPED:
            self._phase("extraction", "skipped", "not run: training was stopped")
            self._phase("stage2", "skipped", "not run: training was stopped")
            self._finish_with(pipeline, STOPPED, "stopped during stage 1; the best stage-1 model is kept", None)
            return
        self._phase("extraction", COMPLETE, pipeline.extraction.summary())
        if self._auto_approve():
            self.approve(None)
            return
        self._set_state(REVIEW, "review the extracted mask, then approve it or skip stage 2")
        self._phase("stage2", REVIEW, "waiting for the mask review")
        self.review_requested.emit(pipeline.extraction)
        self.session.show_dock.emit("review")

    def _auto_approve(self) -> bool:
        # The toggle may have been set while stage 1 ran, so read the session's current config.
        current = self.session.config
        return bool(current.auto_approve if isinstance(current, AutoStructConfig) else self.config.auto_approve)

    # -- the review gate (GUI thread) ---------------------------------------------------------------------
    def regenerate(self, params: MaskExtractorConfig) -> str:
        if self.state != REVIEW or self.pipeline is None:
            return "there is no mask to regenerate now"
        pipeline = self.pipeline
        job = EngineJob("mask regeneration", lambda _cb, _stop: pipeline.regenerate(params), stop=StopRequest())
        self._phase("extraction", TRAINING, "regenerating the mask")
        return self.session.run_job(job, "mask regeneration", self._guarded(self._on_regenerated), owner=self)

    def _on_regenerated(self, outcome: Outcome) -> None:
        if self.stop.requested:  # Stop was pressed while the mask was being regenerated
            self._finish_at_review(stopped=True)
            return
        if not outcome.ok:
            self._phase("extraction", FAILED, outcome.message)
            show_error(f"Mask regeneration failed: {outcome.message}")
            return
        extraction: MaskExtractionResult = outcome.value
        self._phase("extraction", COMPLETE, extraction.summary())
        self.review_requested.emit(extraction)

    def approve(self, mask: np.ndarray | None) -> str:
        """Approve the extracted (or the edited) mask and train stage 2; returns "" or why not."""
        if self.pipeline is None or self.pipeline.state != AutoStructState.AWAITING_REVIEW:
            return "there is no mask waiting for approval"
        if self.session.busy:
            return self.session.busy_reason()
        try:
            approved = self.pipeline.approve(mask)
        except ConfigError as err:
            return str(err)
        self._set_state(TRAINING, f"mask approved ({int(approved.sum())} px); training stage 2")
        self._phase("stage2", TRAINING, "")
        job = EngineJob("autoStructN2V stage 2", self._stage2_call, stop=self.stop)
        return self.session.run_job(
            job, "training", self._guarded(self._on_stage2_done), self.progress.emit, owner=self
        )

    def skip_stage2(self) -> str:
        if self.state != REVIEW or self.pipeline is None:
            return "there is no review to skip"
        if self.session.busy:
            return self.session.busy_reason()
        job = EngineJob("stage-1 result", self._skip_call, stop=self.stop)
        return self.session.run_job(job, "denoising", self._guarded(self._on_skipped), self.progress.emit, owner=self)

    def _finish_at_review(self, stopped: bool) -> None:
        pipeline = self.pipeline
        try:
            pipeline.skip_stage2()  # writes the stage-1 model as the result
        except Exception as err:  # a write error must still end the run cleanly
            self._fail(f"could not save the stage-1 model: {err}")
            return
        self._phase("stage2", "skipped", "stopped at the mask review")
        self._finish_with(pipeline, STOPPED, "stopped at the mask review; the stage-1 model is kept", None)

    # -- autoStructN2V: stage 2 or the stage-1 result -------------------------------------------------------
    def _stage2_call(self, callback, stop) -> StageOutput:
        pipeline = self.pipeline
        pipeline.run_stage2()
        output = StageOutput()
        if pipeline.state == AutoStructState.STOPPED or pipeline.stage2.best_epoch == 0:
            release_device_memory(pipeline.stage1.model, pipeline.stage2.model)
            return output
        model = self._pipeline_model(pipeline)
        try:
            output.prediction = predict_image(
                model, self.image, self.source, self.results_dir, callback, stop, with_stage1=True
            )
        except PredictionStopped:
            output.notes.append("denoising of the training image stopped; use Process Data to run it again")
        return output

    def _on_stage2_done(self, outcome: Outcome) -> None:
        if not outcome.ok:
            self._fail(outcome.message)
            return
        pipeline = self.pipeline
        output: StageOutput = outcome.value
        stage2 = pipeline.stage2
        if stage2.stop_reason == "stopped":
            message = "stopped during stage 2; the best stage-2 model is kept"
            state = STOPPED
        else:
            message = f"autoStructN2V complete: {STOP_REASONS.get(stage2.stop_reason, stage2.stop_reason)}"
            state = COMPLETE
        if stage2.best_epoch == 0:
            message = "stage 2 stopped before its first validation; the stage-1 model is kept"
        message = "; ".join([message, *output.notes])
        self._finish_with(pipeline, state, message, output.prediction)

    def _skip_call(self, callback, stop) -> StageOutput:
        pipeline = self.pipeline
        pipeline.skip_stage2()
        output = StageOutput()
        try:
            output.prediction = predict_image(
                self._pipeline_model(pipeline), self.image, self.source, self.results_dir, callback, stop
            )
        except PredictionStopped:
            output.notes.append("denoising stopped; use Process Data to run it again")
        return output

    def _on_skipped(self, outcome: Outcome) -> None:
        if not outcome.ok:
            self._fail(outcome.message)
            return
        self._phase("stage2", "skipped", "skipped: the stage-1 (N2V) model is the result")
        message = "; ".join(["stage 2 skipped; the stage-1 (N2V) model is the result", *outcome.value.notes])
        self._finish_with(self.pipeline, COMPLETE, message, outcome.value.prediction)

    # -- results -------------------------------------------------------------------------------------------
    def _model_record(self, config, normalization, network, best, stop_reason, **extra) -> TrainedModel:
        return TrainedModel(
            method=self.method,
            mode=self.mode,
            config=config,
            normalization=normalization,
            model=network,
            training_id=self.training_id,
            run_dir=self.run_dir,
            created=now_iso(),
            best_val_loss=best,
            stop_reason=stop_reason,
            **extra,
        )

    def _pipeline_model(self, pipeline: AutoStructPipeline) -> TrainedModel:
        stages = {"stage1": pipeline.stage1.model}
        final = pipeline.stage1
        config = pipeline.config.stage1
        if pipeline.stage2 is not None:
            stages["stage2"] = pipeline.stage2.model
            if pipeline.stage2.best_epoch > 0:
                final, config = pipeline.stage2, pipeline.final_config
        return self._model_record(
            config,
            pipeline.normalization,
            final.model,
            final.best_val_loss,
            final.stop_reason,
            stage_models=stages,
            mask=pipeline.approved_mask,
        )

    def _finish_with(self, pipeline: AutoStructPipeline, state: str, message: str, prediction) -> None:
        self.model = self._pipeline_model(pipeline)
        self._publish(prediction)
        self._end(state, message, None)

    def _publish(self, prediction: Prediction | None) -> None:
        self.session.set_model(self.model)
        if prediction is not None:
            names = add_result_layers(self.session, self.model, prediction)
            # Comparison order: noisy | stage 1 | final.
            ordered = sorted(names, key=lambda n: 0 if "(stage 1)" in n else 1)
            self.session.set_comparison(self.source, ordered)

    def _end(self, state: str, message: str, phase: str | None) -> None:
        if phase:
            self._phase(phase, state, message)
        # Drop the pipeline and the image: the model lives on in self.model, the rest can be freed.
        self.pipeline = None
        self.image = self.target = self.checked_targets = None
        if self.session.training_run is self:
            self.session.training_run = None
        self._set_state(state, message)
        if state == COMPLETE:
            show_info(f"Training {self.training_id} complete; model saved in {self.run_dir}")
        elif state == STOPPED:
            show_info(f"Training {self.training_id} stopped: {message}")

    def _fail(self, message: str) -> None:
        release_device_memory()  # the failed run's tensors are garbage now; hand the cached GPU memory back
        show_error(f"Training failed: {message}")
        self._end(FAILED, message, self._current_phase)

    # -- events from the engine --------------------------------------------------------------------------------
    def _on_event(self, event: ProgressEvent) -> None:
        if event.kind == "state":
            if event.stage == AutoStructState.EXTRACTING.value:
                self._phase("extraction", TRAINING, event.message)
            elif event.stage == AutoStructState.STAGE2.value:
                self._phase("stage2", TRAINING, event.message)
            return
        if event.kind == "finished" and event.stage in ("stage1", "stage2"):
            status = STOPPED if event.state.value == "stopped" else COMPLETE
            self._phase(event.stage, status, event.message)
        self.progress.emit(event)
