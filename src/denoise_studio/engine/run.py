"""One training run, from the checked input to the model on disk: the only orchestration there is.

Every face starts training here (the Python API, the command line, the napari docks). A run

1. checks the images for the mode, resolves and aligns the targets (paired methods) once,
2. fits the normalisation(s),
3. locks its run folder (a second run on it is refused) and clears an old run's files when allowed,
4. trains, with the best weights checkpointed to disk while it goes,
5. autoStructN2V: stops at the review gate, where a *decision* (approve the mask as extracted or as
   edited, regenerate it with other extractor settings, skip stage 2) moves it on,
6. writes ``history.csv`` and builds the one model record, :class:`~.model.TrainedModel`,
7. measures the noise of the training images against the model's result (methods trained on the
   noisy images alone) and stores it beside the weights (``noise_model.json``).

A run stopped before its first optimiser step keeps no model and leaves no files behind.

:func:`run_training` drives a run to its end with a review *hook* (a function that looks at the
extracted mask and returns a decision): the terminal review and :func:`auto_approve` are such hooks.
The napari dock steps the same :class:`TrainingRun` with the same decisions from the GUI thread.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .axes import layout_for
from .config import METHOD_VALUES, AutoStructConfig, DenoiseConfig, MaskExtractorConfig
from .data import Normalization, check_training_images, fit_channel_normalizations
from .errors import ConfigError, InputError, PipelineStateError
from .events import ProgressCallback, RunState, StopRequest
from .gaintuning import RELATION_PIXELS, adaptation_patch, gain_tuning_loss, output_relation
from .lazy import is_lazy, is_on_disk, lazy_samples
from .mask_extraction import MaskExtractionResult
from .model import STAGE1, TrainedModel, now_iso
from .noise_model import NoiseModel, fit_from_prediction
from .persistence import HISTORY_FILE, RunFolder, save_model, save_noise_models, write_history
from .pipelines.autostruct import AutoStructPipeline, AutoStructState
from .registry import METHODS, stop_reason_text
from .simulation import check_simulation, on_target_scale, simulate, simulation_noise_model
from .targets import prepare_targets
from .training import TrainingResult, resolve_device, train

RunConfig = DenoiseConfig | AutoStructConfig
logger = logging.getLogger(__name__)

#: Pixels of the training data the noise model is measured on at most (a central block of planes).
NOISE_MEASUREMENT_PIXELS = 4_000_000


# -- review decisions ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Approve:
    """Train stage 2 with the extracted mask, or with ``mask`` (an edited one)."""

    mask: np.ndarray | None = None


@dataclass(frozen=True)
class Regenerate:
    """Extract the mask again with other extractor settings (no retraining; the correlation is reused)."""

    extractor: MaskExtractorConfig


@dataclass(frozen=True)
class SkipStage2:
    """Keep stage 1 (plain N2V) as the result."""


Decision = Approve | Regenerate | SkipStage2


@dataclass(frozen=True)
class ReviewRequest:
    """What a review hook is shown: the extracted mask with its evidence, and the settings that made it."""

    extraction: MaskExtractionResult
    extractor: MaskExtractorConfig
    mode: str


ReviewHook = Callable[[ReviewRequest], Decision]


def auto_approve(_request: ReviewRequest) -> Decision:
    """The review hook that approves the extracted mask unseen."""
    return Approve()


# -- the result -----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a run hands back: the model (None when it kept none), the history, how it ended."""

    model: TrainedModel | None
    state: RunState
    message: str
    run_dir: Path | None = None
    #: Per-epoch records by stage ("training"; autoStructN2V: "stage1", "stage2").
    histories: dict[str, list[dict]] = field(default_factory=dict)
    #: The training summary of each stage (best loss, stop reason, steps, speed, device, ...).
    summaries: dict[str, dict] = field(default_factory=dict)
    extraction: MaskExtractionResult | None = None

    @property
    def history(self) -> list[dict]:
        """The final network's per-epoch record."""
        for stage in ("stage2", "stage1", "training"):
            if self.histories.get(stage):
                return self.histories[stage]
        return []

    @property
    def summary(self) -> dict:
        if self.model is not None:
            return self.model.summary
        return next(iter(self.summaries.values()), {})

    @property
    def stopped(self) -> bool:
        return self.state == RunState.STOPPED


# -- the run ----------------------------------------------------------------------------------------
class TrainingRun:
    """One run, stepped explicitly: :meth:`start`, then (autoStructN2V) :meth:`decide` until it ends.

    ``start`` and ``decide`` block while they train; a GUI calls them from a worker thread. ``stop``
    may be set from any thread; at the review gate :meth:`stop_at_review` ends the run with stage 1.
    """

    def __init__(
        self,
        config: RunConfig,
        images: np.ndarray | Sequence[np.ndarray],
        *,
        targets: np.ndarray | Sequence[np.ndarray] | None = None,
        run_dir: str | os.PathLike | None = None,
        overwrite: bool = False,
        input_files: Sequence[str | os.PathLike] = (),
        names: Sequence[str] | None = None,
        axes: str | Sequence[str | None] | None = None,
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
        init: TrainedModel | None = None,
        renormalize: bool = False,
        adapt: bool = False,
    ):
        """``axes``: of every image (one string for all, or one per image; None: ``(Y, X)``/``(Z, Y, X)``);
        targets have their input's axes. ``init``: continue from this model's weights (same network);
        its normalisation is kept unless ``renormalize``. ``adapt``: GainTuning of ``init`` to the
        images (a gain per feature channel, see :mod:`.gaintuning`); ``config`` is then
        :func:`~.gaintuning.adaptation_config` of the model's."""
        if adapt and (init is None or renormalize or targets is not None or isinstance(config, AutoStructConfig)):
            raise PipelineStateError(
                "GainTuning adapts a trained model (init) to images alone, in the model's normalisation"
            )
        self.adapt = adapt
        if init is not None:
            check_continuable(init, config)
            if run_dir is not None and init.run_dir is not None and Path(run_dir).resolve() == init.run_dir.resolve():
                raise InputError(
                    f"init: {run_dir} holds the model this run continues; write the new run to another folder"
                )
        self.init = init
        self.renormalize = renormalize
        self.config = config
        self.images = [images] if isinstance(images, np.ndarray) else list(images)
        self.axes = list(axes) if isinstance(axes, (list, tuple)) else [axes] * len(self.images)
        if len(self.axes) != len(self.images):
            raise InputError(f"{len(self.images)} image(s) but {len(self.axes)} axes strings")
        self.input_axes = ""
        if targets is not None and isinstance(targets, np.ndarray):
            targets = [targets]
        self.raw_targets = None if targets is None else list(targets)
        self.names = list(names) if names else [f"image {i + 1}" for i in range(len(self.images))]
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._folder = RunFolder(self.run_dir, overwrite=overwrite, inputs=input_files) if run_dir else None
        self.callback = callback
        self.stop = stop or StopRequest()
        self.state = RunState.PENDING
        self.message = ""
        self.pipeline: AutoStructPipeline | None = None
        self.result: RunResult | None = None
        self.normalization: list[Normalization] | None = None
        self.target_normalization: list[Normalization] | None = None

    @property
    def is_pipeline(self) -> bool:
        return isinstance(self.config, AutoStructConfig)

    @property
    def awaiting_review(self) -> bool:
        return self.state == RunState.AWAITING_REVIEW

    @property
    def review_request(self) -> ReviewRequest:
        if not self.awaiting_review or self.pipeline is None:
            raise PipelineStateError("there is no mask waiting for review")
        return ReviewRequest(self.pipeline.extraction, self.pipeline.config.extractor, self.config.mode)

    def _samples(self, images: list[np.ndarray], what: str) -> list[np.ndarray]:
        """Every image as ``(C, Z, Y, X)`` samples (its S and T entries are independent samples)."""
        samples, found = [], set()
        for image, axes, name in zip(images, self.axes, self.names, strict=True):
            label = name if what == "image" else f"{what} of {name}"
            if is_on_disk(image):  # read patch by patch, never loaded
                lazy = lazy_samples(image, axes, label)
                samples.extend(lazy)
                found.add(lazy[0][0].layout.axes)
                continue
            image = np.asarray(image)
            layout = layout_for(image.shape, image.dtype, axes, label)
            found.add(layout.axes if layout.declared else layout.present)
            if not layout.declared:
                samples.append(image)  # checked as a stack without axes, as always
                continue
            canonical = layout.to_canonical(image)
            samples.extend(canonical[n] for n in range(canonical.shape[0]))
        if what == "image":
            self.input_axes = ",".join(sorted(found))
        return samples

    def _checked_stacks(self) -> list[np.ndarray]:
        self.images = check_training_images(self._samples(self.images, "image"), self._stage_config())
        channels = self.images[0].shape[0]
        if self.is_pipeline and any(is_lazy(image) for image in self.images):
            raise InputError(
                "autoStructN2V reads its images into memory, and an image here is too large for it (it is read from "
                "disk); crop it, or train N2V or N2V2"
            )
        if self.is_pipeline and channels > 1:
            raise InputError(
                f"autoStructN2V takes one channel at a time (these images have {channels}): the structured noise "
                "of each channel is reviewed on its own; train one channel per run"
            )
        return self.images

    def _stage_config(self) -> DenoiseConfig:
        return self.config.stage1 if self.is_pipeline else self.config

    # -- steps ------------------------------------------------------------------------------------
    def _prepare(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Every check that can refuse the run, done before the run folder is touched: an old run
        that ``overwrite`` is about to replace is removed only once the new one can start."""
        stacks = self._checked_stacks()
        resolve_device(self._device())
        targets = None
        if self.is_pipeline:
            if self.raw_targets is not None:
                raise PipelineStateError("autoStructN2V learns from the noisy images alone; it takes no target")
        else:
            config: DenoiseConfig = self.config
            if self.adapt:
                self._continue_from(self.init, stacks)
                self.config = adaptation_patch(config, stacks)
                return stacks, None
            raw = None if self.raw_targets is None else self._target_samples()
            targets = prepare_targets(config, stacks, raw)
            fitted_on = stacks
            if METHODS[config.method].simulated:
                # SBD: the clean images on the target's scale; the input's mapping from one noisy draw of them.
                stacks = self.images = self._simulation_stacks(stacks)
                fitted_on = [simulate(stack, config.simulation) for stack in stacks]
            self.normalization = fit_channel_normalizations(fitted_on, config.data)
            self.target_normalization = fit_channel_normalizations(targets, config.data) if targets else None
            if self.init is not None:
                self._continue_from(self.init, stacks)
        return stacks, targets

    def _simulation_stacks(self, stacks: list[np.ndarray]) -> list[np.ndarray]:
        """SBD: the clean images on the target's intensity scale (one channel; in memory)."""
        simulation = check_simulation(self.config.simulation)
        if any(is_lazy(stack) for stack in stacks):
            raise InputError("SBD reads its clean images into memory, and an image here is too large for it; crop it")
        if stacks[0].shape[0] > 1:
            raise InputError(
                f"SBD takes one channel at a time (these images have {stacks[0].shape[0]}): its noise model is one "
                "channel's; train one channel per run"
            )
        return [on_target_scale(stack, simulation, name) for stack, name in zip(stacks, self.names, strict=False)]

    def _continue_from(self, init: TrainedModel, stacks: list[np.ndarray]) -> None:
        """The model's channel count must be the images'; its intensity mapping stays (the network
        learnt in it) unless the run was told to fit a new one."""
        channels = stacks[0].shape[0]
        if channels != init.channels:
            raise InputError(
                f"init: the model takes {init.channels} channel(s), these images have {channels}; "
                "continue training on images of the same channels"
            )
        if self.renormalize:
            return
        self.normalization = init.normalizations
        if self.adapt and init.target_normalization is not None and channels > 1 and not init.joint:
            raise InputError(
                f"GainTuning of a {init.title} model of {channels} independent channels is not supported: its "
                "channels answer on different scales; adapt a single-channel or a jointly trained model"
            )
        # The model answers in its target's scale: a continued paired run, and an adaptation, keep it.
        if init.target_normalization is not None and (self.adapt or self.target_normalization is not None):
            self.target_normalization = init.output_normalizations

    def _target_samples(self) -> list[np.ndarray]:
        if len(self.raw_targets) != len(self.images) and all(a is None for a in self.axes):
            return self.raw_targets  # prepare_targets names the count mismatch
        if len(self.raw_targets) != len(self.axes):
            raise InputError(f"{len(self.axes)} input image(s) but {len(self.raw_targets)} target(s)")
        return self._samples(self.raw_targets, "target")

    def _device(self) -> str:
        config = self.config.stage1 if self.is_pipeline else self.config
        return config.training.device

    def start(self) -> RunState:
        """Check the data, lock the folder and train (autoStructN2V: stage 1 and the mask extraction)."""
        if self.state != RunState.PENDING:
            raise PipelineStateError(f"the run has already started ({self.state.value})")
        stacks, targets = self._prepare()
        if self._folder is not None:
            self._folder.acquire()
        self.state = RunState.TRAINING
        try:
            if self.is_pipeline:
                self._start_pipeline(stacks)
            else:
                self._train_single(stacks, targets)
        except BaseException:
            self._fail()
            raise
        return self.state

    def _train_single(self, stacks: list[np.ndarray], targets: list[np.ndarray] | None) -> None:
        config: DenoiseConfig = self.config
        initial = None
        if self.init is not None:
            initial = {key: value.detach().cpu().clone() for key, value in self.init.network.state_dict().items()}
        method = None
        if self.adapt:
            groups = stacks[0].shape[0] if config.data.channels == "joint" and stacks[0].shape[0] > 1 else 1
            outputs = self.target_normalization or self.normalization
            relation = None
            if self.target_normalization is not None:
                relation = output_relation(self.init, measurement_block(self.init, stacks, RELATION_PIXELS))
            method = gain_tuning_loss(config, groups, self.normalization, outputs, relation)
        result = train(
            config, stacks, callback=self.callback, stop=self.stop, checkpoint=self._checkpoint(config),
            normalization=self.normalization, targets=targets, target_normalization=self.target_normalization,
            targets_prepared=True, initial_state=initial, method=method, adapt_gains=self.adapt,
        )  # fmt: skip
        histories = {"training": result.history}
        if result.steps == 0:
            self._end_without_model(histories, {"training": result.summary()})
            return
        model = self._record(config, result, {})
        self._finish(model, result, histories, {"training": result.summary()})

    def _checkpoint(self, config: DenoiseConfig):
        if self.run_dir is None:
            return None
        run_dir = self.run_dir

        def write(state: dict, summary: dict) -> None:
            # The best weights so far are always on disk, even if the run is killed.
            save_model(
                run_dir, config, self.normalization, state, summary | self._provenance(),
                target_normalization=self.target_normalization, input_axes=self.input_axes,
            )  # fmt: skip

        return write

    def _start_pipeline(self, stacks: list[np.ndarray]) -> None:
        pipeline = self._pipeline(stacks)
        self.pipeline = pipeline
        self.normalization = pipeline.normalization
        pipeline.run_stage1()
        if pipeline.stage1.steps == 0:
            self._end_without_model(self._histories(), self._summaries())
            return
        if pipeline.state == AutoStructState.STOPPED:
            pipeline.save()
            self._finish_pipeline(RunState.STOPPED, "stopped during stage 1; the best stage-1 model is kept")
            return
        pipeline.extract_mask()
        self.state = RunState.AWAITING_REVIEW
        self.message = pipeline.extraction.summary()

    def _pipeline(self, stacks: list[np.ndarray]) -> AutoStructPipeline:
        # One channel (checked in _checked_stacks): the pipeline works on (Z, Y, X) stacks.
        return AutoStructPipeline(
            self.config, [stack[0] for stack in stacks], callback=self.callback, stop=self.stop, run_dir=self.run_dir
        )

    def use_mask(self, mask: np.ndarray) -> RunState:
        """autoStructN2V with a mask the user already has: no stage 1, straight to stage 2."""
        if not self.is_pipeline or self.state != RunState.PENDING:
            raise PipelineStateError("a given mask needs an autoStructN2V run that has not started")
        stacks, _targets = self._prepare()
        pipeline = self._pipeline(stacks)
        pipeline.use_mask(mask)  # an unusable mask is refused here, before the folder is touched
        if self._folder is not None:
            self._folder.acquire()
        self.pipeline = pipeline
        self.normalization = pipeline.normalization
        self.state = RunState.TRAINING
        try:
            self._stage2()
        except BaseException:
            self._fail()
            raise
        return self.state

    def decide(self, decision: Decision) -> RunState:
        """Apply a review decision: regenerate (the run stays at the review), approve or skip stage 2.

        A refused decision (new extractor settings or an edited mask that do not validate) leaves the
        run at the review; an error once stage 2 has begun ends the run as failed.
        """
        if not self.awaiting_review:
            raise PipelineStateError("there is no mask waiting for review")
        pipeline = self.pipeline
        if isinstance(decision, Regenerate):
            pipeline.regenerate(decision.extractor)
            self.message = pipeline.extraction.summary()
            return self.state
        if isinstance(decision, Approve):
            pipeline.approve(decision.mask)  # validates the mask and stage 2's config with it
        elif not isinstance(decision, SkipStage2):
            raise PipelineStateError(f"not a review decision: {decision!r}")
        self.state = RunState.TRAINING
        try:
            if isinstance(decision, Approve):
                self._stage2()
            else:
                pipeline.skip_stage2()
                self._finish_pipeline(RunState.COMPLETE, stop_reason_text("skipped"))
        except BaseException:
            self._fail()
            raise
        return self.state

    def stop_at_review(self) -> RunState:
        """End a run waiting at the review: stage 1 is kept as the result."""
        if not self.awaiting_review:
            raise PipelineStateError("the run is not waiting at the review")
        try:
            self.pipeline.skip_stage2()
            self._finish_pipeline(RunState.STOPPED, "stopped at the mask review; the stage-1 model is kept")
        except BaseException:
            self._fail()
            raise
        return self.state

    def _stage2(self) -> None:
        pipeline = self.pipeline
        pipeline.run_stage2()
        stage2 = pipeline.stage2
        if pipeline.stage1 is None and (stage2 is None or stage2.steps == 0):
            # A given mask, stopped before stage 2's first step: random weights are no model.
            self._end_without_model(self._histories(), self._summaries())
        elif stage2 is None:  # stopped before stage 2 learnt anything
            self._finish_pipeline(RunState.STOPPED, "stopped before stage 2 trained; the stage-1 model is kept")
        elif stage2.stop_reason == "stopped":
            self._finish_pipeline(RunState.STOPPED, "stopped during stage 2; the best stage-2 model is kept")
        else:
            self._finish_pipeline(
                RunState.COMPLETE,
                f"stage 2 ended: {stop_reason_text(stage2.stop_reason)}; best stage-2 validation loss "
                f"{stage2.best_val_loss:.4g} (epoch {stage2.best_epoch})",
            )

    # -- endings ------------------------------------------------------------------------------------
    def _stage_results(self) -> dict[str, TrainingResult]:
        pipeline = self.pipeline
        return {stage: result for stage, result in (("stage1", pipeline.stage1), ("stage2", pipeline.stage2)) if result}

    def _histories(self) -> dict[str, list[dict]]:
        return {stage: result.history for stage, result in self._stage_results().items()}

    def _summaries(self) -> dict[str, dict]:
        return {stage: result.summary() for stage, result in self._stage_results().items()}

    def _record(self, config: DenoiseConfig, result: TrainingResult, stages: dict, **extra) -> TrainedModel:
        norms = result.channel_normalizations
        return TrainedModel(
            method=self.config.method,
            config=config,
            normalization=result.normalization,
            network=result.model,
            target_normalization=result.target_normalization,
            stage_networks=stages,
            run_dir=self.run_dir,
            created=now_iso(),
            summary=result.summary() | self._provenance(),
            channel_normalizations=list(norms) if len(norms) > 1 else [],
            target_channel_normalizations=result.target_channel_normalizations if len(norms) > 1 else None,
            input_axes=self.input_axes,
            **extra,
        )

    def _provenance(self) -> dict:
        """What the run started from, for the model card and config.json."""
        if self.init is None:
            return {}
        source = str(self.init.run_dir) if self.init.run_dir else self.init.name
        return {"adapted_from" if self.adapt else "initialized_from": source}

    def _finish_pipeline(self, state: RunState, message: str) -> None:
        pipeline = self.pipeline
        stages, final, config = {}, None, None
        if pipeline.stage1 is not None:
            stages[STAGE1] = pipeline.stage1.model
            final, config = pipeline.stage1, pipeline.config.stage1
        if pipeline.stage2 is not None:
            stages["stage2"] = pipeline.stage2.model
            final, config = pipeline.stage2, pipeline.final_config
        model = self._record(config, final, stages, mask=pipeline.approved_mask)
        self._finish(model, final, self._histories(), self._summaries(), state, message)

    def _finish(
        self,
        model: TrainedModel,
        final: TrainingResult,
        histories: dict[str, list[dict]],
        summaries: dict[str, dict],
        state: RunState | None = None,
        message: str = "",
    ) -> None:
        if state is None:
            state = RunState.STOPPED if final.stop_reason == "stopped" else RunState.COMPLETE
        if not message:
            message = f"{stop_reason_text(final.stop_reason)}; best validation loss {final.best_val_loss:.4g} " \
                      f"(epoch {final.best_epoch})"  # fmt: skip
        if self.run_dir is not None:
            for stage, history in histories.items():
                name = HISTORY_FILE if stage == "training" else f"history_{stage}.csv"
                write_history(self.run_dir / name, history)
        if METHODS[model.method].simulated:  # the noise it learnt to remove is the one it drew
            model.noise_models = [simulation_noise_model(model.config.simulation)]
        else:
            model.noise_models = measure_noise_models(model, self.images)
        if model.noise_models and self.run_dir is not None:
            save_noise_models(self.run_dir, model.noise_models)
        self._end(RunResult(model, state, message, self.run_dir, histories, summaries, self._extraction()))

    def _end_without_model(self, histories: dict, summaries: dict) -> None:
        if self._folder is not None:
            self._folder.discard()
        self._end(RunResult(None, RunState.STOPPED, stop_reason_text("no_step"), self.run_dir, histories, summaries))

    def _extraction(self) -> MaskExtractionResult | None:
        return None if self.pipeline is None else self.pipeline.extraction

    def _end(self, result: RunResult) -> None:
        self.result = result
        self.state = result.state
        self.message = result.message
        if self._folder is not None:
            self._folder.release()
        self.images = []
        self.raw_targets = None

    def _fail(self) -> None:
        self.state = RunState.FAILED
        if self._folder is not None:
            self._folder.release()


def run_training(
    config: RunConfig,
    images: np.ndarray | Sequence[np.ndarray],
    *,
    targets: np.ndarray | Sequence[np.ndarray] | None = None,
    run_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    review: ReviewHook | None = None,
    mask: np.ndarray | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    input_files: Sequence[str | os.PathLike] = (),
    names: Sequence[str] | None = None,
    axes: str | Sequence[str | None] | None = None,
    init: TrainedModel | None = None,
    renormalize: bool = False,
    adapt: bool = False,
) -> RunResult:
    """Run a whole training (see the module docstring). autoStructN2V: ``review`` decides at the gate
    (default: the config's ``auto_approve`` or, failing that, :func:`auto_approve`); ``mask`` skips stage 1.
    ``init``: continue from a trained model (see :func:`check_continuable`)."""
    run = TrainingRun(
        config, images, targets=targets, run_dir=run_dir, overwrite=overwrite, input_files=input_files,
        names=names, axes=axes, callback=callback, stop=stop, init=init, renormalize=renormalize, adapt=adapt,
    )  # fmt: skip
    if mask is not None:
        run.use_mask(mask)
        return run.result
    run.start()
    if review is None or getattr(config, "auto_approve", False):
        review = auto_approve
    while run.awaiting_review:
        if run.stop.requested:
            run.stop_at_review()
            continue
        try:
            decision = review(run.review_request)
        except BaseException:  # the hook failed, or the user aborted at the prompt: the folder is freed
            run._fail()
            raise
        run.decide(decision)
    return run.result


def continuing_config(config: DenoiseConfig, init: TrainedModel) -> DenoiseConfig:
    """``config`` with the network of ``init``: its mode, U-Net and DecoNoising PSF (what its weights fit)."""
    if isinstance(config, AutoStructConfig):
        return config  # refused by check_continuable, with the reason
    # A method that defines its network (N2V2: blur-pool, no top skip; the autoencoder: no skips)
    # continues only a network built that way, else it would not be the method its name says.
    for name, value in METHOD_VALUES.get(config.method, {}).get("model", {}).items():
        theirs = getattr(init.config.model, name)
        if theirs != value:
            raise ConfigError(
                f"init: {config.method} needs model.{name} = {value}, and the model you continue has {theirs}; "
                f"continue it with {init.config.method}, or train {config.method} from scratch"
            )
    data, theirs = config.to_dict(), init.config.to_dict()
    data.update(mode=theirs["mode"], model=theirs["model"])
    if data.get("deconv") is not None:  # the PSF is the network's; the positivity weight stays the config's
        data["deconv"]["psf_sigma"] = (theirs.get("deconv") or {}).get("psf_sigma")
    elif init.config.psf_sigma is not None:
        raise ConfigError(f"init: the model deconvolves (DecoNoising); {config.method} cannot continue it")
    return DenoiseConfig.from_dict(data)  # validated again: the mode may bring its own checks


def check_continuable(init: TrainedModel, config: RunConfig) -> None:
    """Refuse, naming the fields, a run whose network cannot take ``init``'s weights."""
    if isinstance(config, AutoStructConfig):
        raise ConfigError(
            "init: an autoStructN2V run trains two networks from scratch and cannot continue a model; continue "
            "with N2V or N2V2, or give autoStructN2V the model's mask to train stage 2 only"
        )
    differences = []
    if config.mode != init.mode:
        differences.append(f"mode: {config.mode} here, {init.mode} in the model")
    for name in type(config.model).model_fields:
        mine, theirs = getattr(config.model, name), getattr(init.config.model, name)
        if mine != theirs:
            differences.append(f"model.{name}: {mine} here, {theirs} in the model")
    if config.psf_sigma != init.config.psf_sigma:
        differences.append(f"deconv.psf_sigma: {config.psf_sigma} here, {init.config.psf_sigma} in the model")
    joint = config.data.channels == "joint"
    if init.channels > 1 and joint != init.joint:
        differences.append(f"data.channels: {config.data.channels} here, {init.config.data.channels} in the model")
    if differences:
        raise ConfigError(
            "init: continuing a model needs its network; " + "; ".join(differences)
            + " (leave the network settings to the model)"
        )


def measure_noise_models(model: TrainedModel, stacks: Sequence[np.ndarray]) -> list[NoiseModel]:
    """The noise model of each channel, measured on the largest training image against the model's
    result: a central block of at most NOISE_MEASUREMENT_PIXELS, with as many planes as the mode needs
    to predict (3 for 2.5D, the patch depth for 3D) and the Y/X crop shrunk to fit. An image trained
    on from disk has only that block read.

    Empty for paired methods (their output is in the target's scale, not the input's), and when the
    measurement fails: a trained model is never lost to it.
    """
    if METHODS[model.method].target != "none" or model.target_normalization is not None or not stacks:
        return []
    try:
        block = measurement_block(model, stacks, NOISE_MEASUREMENT_PIXELS)
        denoised = model.predict(block, axes="CZYX")
        return [fit_from_prediction(block[c], denoised[c]) for c in range(block.shape[0])]
    except Exception as err:  # noqa: BLE001 - a measurement must never fail a finished training
        logger.warning("the noise model was not measured: %s", err)
        return []


def measurement_block(model: TrainedModel, stacks: Sequence[np.ndarray], pixels: int) -> np.ndarray:
    """A central ``(C, Z, Y, X)`` block of at most ``pixels`` of the largest of ``stacks``, with as many
    planes as the model's mode needs to predict (3 for 2.5D, the patch depth for 3D), raw float32."""
    stack = max(stacks, key=lambda a: int(np.prod(a.shape[1:])))  # (C, Z, Y, X), in memory or on disk
    depth, height, width = stack.shape[1:]
    needed = {"2.5d": 3, "3d": model.config.data.patch_size_z}.get(model.mode, 1)
    planes = min(depth, max(needed, pixels // max(1, height * width)))
    crop_y = min(height, max(int(math.sqrt(pixels / planes)), 32))
    crop_x = min(width, max(pixels // planes // crop_y, 32))
    z0, y0, x0 = (depth - planes) // 2, (height - crop_y) // 2, (width - crop_x) // 2
    return _central_block(stack, (slice(z0, z0 + planes), slice(y0, y0 + crop_y), slice(x0, x0 + crop_x)))


def _central_block(stack, where: tuple[slice, slice, slice]) -> np.ndarray:
    """``stack[:, z, y, x]`` as float32 in raw intensities; an on-disk image reads only that block."""
    if is_lazy(stack):
        # Raw values: the run may hold channels that normalise what they read.
        return np.stack([channel.normalized(None).block(*where) for channel in stack]).astype(np.float32)
    return np.ascontiguousarray(np.asarray(stack[(slice(None), *where)]), dtype=np.float32)
