"""A training started from the napari docks: the engine's one run, stepped from the GUI thread.

The orchestration (checks, targets and their alignment, normalisation, checkpoints, history, the
autoStructN2V pipeline) is :class:`denoise_studio.engine.run.TrainingRun`; this adapter only puts
its steps into worker jobs, turns its events into Qt signals, and shows the result as layers.

autoStructN2V: job 1 trains stage 1 and extracts the mask; the run then waits at the review gate,
where the Mask Review dock sends the engine's decisions (regenerate, approve, skip stage 2), each
in a job of its own. Stop keeps the best model of the stage it interrupts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ...api import simulation_settings
from ...engine.config import AutoStructConfig, ConfigError, MaskExtractorConfig
from ...engine.events import ProgressEvent, RunState, StopRequest
from ...engine.mask_extraction import MaskExtractionResult
from ...engine.model import TrainedModel
from ...engine.noise_model import NoiseModel
from ...engine.outputs import Prediction, predict_and_write
from ...engine.pipelines.autostruct import AutoStructState, check_mask
from ...engine.prediction import PredictionStopped
from ...engine.run import Approve, Regenerate, RunResult, SkipStage2, continuing_config
from ...engine.run import TrainingRun as EngineRun
from ...engine.simulation import complete_simulation
from ..state.session import Session, read_pixels
from .inference import add_result_layers, release_device_memory
from .worker import EngineJob, EventRelay, Outcome, guarded

#: The run states the Training dock shows: the engine's vocabulary.
PENDING, TRAINING, REVIEW, COMPLETE, STOPPED, FAILED = (
    RunState.PENDING.value,
    RunState.TRAINING.value,
    RunState.AWAITING_REVIEW.value,
    RunState.COMPLETE.value,
    RunState.STOPPED.value,
    RunState.FAILED.value,
)
#: Where a stopped or interrupted run's model can be used.
USE_THE_MODEL = "denoise with it in the Results dock (Process)"


@dataclass
class StepOutput:
    """What a job gives back: the run's result once it ended, and the denoised training image."""

    result: RunResult | None = None
    prediction: Prediction | None = None
    note: str = ""


class TrainingRun(QObject):
    #: Training progress (batches, epochs, prediction planes and tiles), on the GUI thread.
    progress = Signal(object)
    #: (state, message) of the whole run; state is one of the module constants.
    state_changed = Signal(str, str)
    #: (phase, status, message); phases "training" or "stage1", "extraction", "stage2".
    phase_changed = Signal(str, str, str)
    #: The extraction to review (first time and after each regeneration).
    review_requested = Signal(object)
    #: Something the user should know that changes no state (out of memory: the batch was halved).
    notice = Signal(str)

    def __init__(
        self,
        session: Session,
        source: str,
        image,
        target=None,
        init: TrainedModel | None = None,
        extra=(),
        clean=(),
        noise: NoiseModel | None = None,
    ):
        """``image`` and ``target`` (the raw paired image of Noise2Noise, CARE) are the layers' arrays as
        they hold them: a lazy (dask, zarr) layer is read in the first job, never on the GUI thread; the
        target is checked and aligned there too. Both have the session's axes. ``init``: continue training
        this model (its network and normalisation, the session's other settings). ``extra``: (name, array,
        axes) of more layers to train on; only the first image is denoised afterwards. SBD: ``clean`` (name,
        array, axes) are the images it trains on, ``image`` the one it denoises, and the noise to simulate is
        ``noise`` or, when None, fitted on ``image`` in the first job (config values the user set win)."""
        super().__init__()
        self.session = session
        self.init = init
        # The run keeps the config it started with (configs are immutable); continuing keeps the model's network.
        self.config = session.config if init is None else continuing_config(session.config, init)
        self.method = session.method
        self.mode = self.config.mode
        self.source = source
        #: The input layer itself: a rename during the run is followed, a deletion is reported.
        self.source_layer = session.source_layer_object()
        self.axes = session.axes or None
        #: Pixel sizes and channel names for the result files (read from the layer now, on the GUI thread).
        self.meta = session.layer_meta(source, self.axes)
        self.image = image
        self._target = target
        self._extra = list(extra)
        self._clean = list(clean)
        self._noise = noise
        self.training_id = session.new_training_id()
        self.run_dir = session.models_dir(self.training_id)
        self.results_dir = session.results_dir(self.training_id)
        self.stop = StopRequest()
        # The run outlives single jobs, so its events go through a relay owned by the run.
        self._relay = EventRelay(self)
        self._relay.event.connect(self._on_event)
        #: The engine's run, made by the first job once the pixels are read.
        self.engine: EngineRun | None = None
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

    def _run(self, name: str, call, on_done, kind: str = "training") -> str:
        job = EngineJob(name, lambda _callback, _stop: call(), stop=self.stop)
        return self.session.run_job(job, kind, self._guarded(on_done), self.progress.emit, owner=self)

    # -- start / stop ----------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the first job; returns "" or the reason it could not start."""
        self.session.training_run = self
        self.session.run_started.emit(self)
        self._set_state(TRAINING, "training started")
        self._phase(self._current_phase, TRAINING, "")
        name = "autoStructN2V stage 1" if self.autostruct else "training"
        reason = self._run(name, self._start_call, self._on_step_done)
        if reason:
            self.session.training_run = None
            self._set_state(PENDING, reason)
        return reason

    def request_stop(self) -> None:
        """Stop keeps the best model of the interrupted stage; at the review gate, the stage-1 model."""
        self.stop.set()
        if self.state == REVIEW and not self.session.busy:
            try:
                self.engine.stop_at_review()
            except Exception as err:  # a write error must still end the run cleanly
                self._fail(f"could not save the stage-1 model: {err}")
                return
            self._phase("stage2", "skipped", "stopped at the mask review")
            self._conclude(StepOutput(self.engine.result, note=USE_THE_MODEL))

    # -- the engine's steps, each in a job -------------------------------------------------------------
    def _start_call(self) -> StepOutput:
        # Worker thread: a lazy layer is read once here, for the training and for its denoised result.
        self.image = read_pixels(self.image)
        target, self._target = self._target, None
        extra, self._extra = self._extra, []
        images = [self.image, *(read_pixels(array) for _name, array, _axes in extra)]
        names, axes = [self.source, *(name for name, _, _ in extra)], [self.axes, *(axes for _, _, axes in extra)]
        if self._clean:  # SBD: trains on the clean layers with the noise of the image it denoises
            clean, self._clean = self._clean, []
            noise = self._noise if self._noise is not None else self.image
            self.config = complete_simulation(self.config, simulation_settings(noise, axes=self.axes))
            images = [read_pixels(array) for _name, array, _axes in clean]
            names, axes = [name for name, _, _ in clean], [axes for _, _, axes in clean]
        self.engine = EngineRun(
            self.config, images, targets=None if target is None else [read_pixels(target)], run_dir=self.run_dir,
            names=names, axes=axes, callback=self._relay, stop=self.stop, init=self.init,
        )  # fmt: skip
        self.engine.start()
        return self._after_step()

    def _after_step(self, with_stage1: bool = False) -> StepOutput:
        """Once the engine run has ended: denoise the training image with the new model."""
        output = StepOutput(self.engine.result)
        result = self.engine.result
        if result is None or result.model is None:
            return output
        model = result.model
        if result.state == RunState.STOPPED:
            model.release_device_memory()
            output.note = USE_THE_MODEL
            return output
        try:
            output.prediction = predict_and_write(
                model, self.image, self.results_dir, axes=self.axes, meta=self.meta, source=self.source,
                stem=self.source, with_stage1=with_stage1, unique=True, callback=self._relay, stop=self.stop,
            )  # fmt: skip
        except PredictionStopped:
            output.note = f"denoising of the training image stopped; {USE_THE_MODEL}"
        finally:
            model.release_device_memory()
        return output

    def _on_step_done(self, outcome: Outcome) -> None:
        if not outcome.ok:
            self._fail(outcome.message)
            return
        if self.engine.awaiting_review:
            self._at_review()
            return
        self._conclude(outcome.value)

    # -- the review gate (GUI thread) ---------------------------------------------------------------------
    def _at_review(self) -> None:
        extraction = self.engine.review_request.extraction
        self._phase("extraction", COMPLETE, extraction.summary())
        if self._auto_approve():
            reason = self.approve(None)
            if reason:  # the extracted mask cannot be used as it is: let the user review it
                show_error(f"Auto-approve refused: {reason}")
            else:
                return
        # The review may take minutes: the stage-1 network waits on the CPU, not on the GPU.
        self.engine.pipeline.stage1.model.to("cpu")
        self._set_state(REVIEW, "review the extracted mask, then approve it or skip stage 2")
        self._phase("stage2", REVIEW, "waiting for the mask review")
        self.review_requested.emit(extraction)
        self.session.show_dock.emit("review")

    def _auto_approve(self) -> bool:
        # The toggle may have been set while stage 1 ran, so read the session's current config.
        current = self.session.config
        return bool(current.auto_approve if isinstance(current, AutoStructConfig) else self.config.auto_approve)

    def regenerate(self, params: MaskExtractorConfig) -> str:
        if self.state != REVIEW:
            return "there is no mask to regenerate now"
        self._phase("extraction", TRAINING, "regenerating the mask")
        return self._run(
            "mask regeneration", lambda: self.engine.decide(Regenerate(params)), self._on_regenerated,
            kind="mask regeneration",
        )  # fmt: skip

    def _on_regenerated(self, outcome: Outcome) -> None:
        if self.stop.requested:  # Stop was pressed while the mask was being regenerated
            self.request_stop()
            return
        if not outcome.ok:
            self._phase("extraction", FAILED, outcome.message)
            show_error(f"Mask regeneration failed: {outcome.message}")
            return
        extraction: MaskExtractionResult = self.engine.review_request.extraction
        self._phase("extraction", COMPLETE, extraction.summary())
        self.review_requested.emit(extraction)

    def approve(self, mask: np.ndarray | None) -> str:
        """Approve the extracted (or the edited) mask and train stage 2; returns "" or why not."""
        if self.engine is None or not self.engine.awaiting_review:
            return "there is no mask waiting for approval"
        if self.session.busy:
            return self.session.busy_reason()
        chosen = self.engine.review_request.extraction.mask if mask is None else mask
        try:
            approved = check_mask(chosen, self.mode)  # a few pixels: cheap enough for the GUI thread
            self.engine.pipeline.stage2_config(approved)  # and stage 2 can train with it
        except ConfigError as err:
            return str(err)
        self._set_state(TRAINING, f"mask approved ({int(approved.sum())} px); training stage 2")
        self._phase("stage2", TRAINING, "")

        def call() -> StepOutput:
            self.engine.decide(Approve(approved))
            return self._after_step(with_stage1=True)

        return self._run("autoStructN2V stage 2", call, self._on_step_done)

    def skip_stage2(self) -> str:
        if self.state != REVIEW:
            return "there is no review to skip"
        if self.session.busy:
            return self.session.busy_reason()

        def call() -> StepOutput:
            self.engine.decide(SkipStage2())
            return self._after_step()

        return self._run("stage-1 result", call, self._on_step_done, kind="denoising")

    # -- results -------------------------------------------------------------------------------------------
    def _conclude(self, output: StepOutput) -> None:
        result = output.result
        if result is None or result.model is None:
            message = result.message if result is not None else "no model was kept"
            self._end(STOPPED, message, self._current_phase if not self.autostruct else None)
            return
        self.model = result.model
        self._publish(output.prediction)
        message = "; ".join(part for part in (result.message, output.note, self._input_note()) if part)
        if self.autostruct:
            if self.engine.pipeline.state == AutoStructState.SKIPPED and not self.stop.requested:
                self._phase("stage2", "skipped", "skipped: the stage-1 (N2V) model is the result")
            self._end(result.state.value, message, None)
        else:
            self._end(result.state.value, message, "training")

    def _input_note(self) -> str:
        layer = self.source_layer
        if layer is not None and layer not in self.session.viewer.layers:
            return f"the input layer {self.source!r} was deleted during the run; the result was added as a new layer"
        return ""

    def _publish(self, prediction: Prediction | None) -> None:
        self.session.set_model(self.model)
        if prediction is not None:
            layer = self.source_layer
            if layer is not None and layer in self.session.viewer.layers:
                prediction.source = layer.name  # renamed during the run: results sit beside it under its new name
            names = add_result_layers(self.session, self.model, prediction, axes=self.axes)
            # Comparison order: noisy | stage 1 | final.
            ordered = sorted(names, key=lambda n: 0 if "(stage 1)" in n else 1)
            self.session.set_comparison(prediction.source, ordered)

    def _end(self, state: str, message: str, phase: str | None) -> None:
        if phase:
            self._phase(phase, state, message)
        # Drop the image: the model lives on in self.model, the rest can be freed.
        self.image = None
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
        if event.kind == "notice":
            self.notice.emit(event.message)
            return
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
