"""autoStructN2V: N2V (stage 1), a structured-noise mask from its residual, review, structN2V (stage 2).

The pipeline is a small state machine driven by explicit calls, so a terminal prompt, a napari dock
or a test can sit at the review gate between the stages:

    pending -> stage1 -> extracting -> awaiting_review -> stage2 -> done
                                          |  ^ regenerate       \\-> skipped (stage 1 is the result)
    any training stage -> stopped (best weights kept) / failed

Stage 2 trains on the *noisy* data (not on stage 1's output): the stage-1 output no longer follows
the noise model that blind-spot training relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path

import numpy as np

from ..config import (
    MAX_EXTRACTOR_RADIUS,
    MIN_MASK_PERCENT,
    AutoStructConfig,
    ConfigError,
    DenoiseConfig,
    MaskExtractorConfig,
)
from ..data import Normalization, check_stack_for_mode, plane_input
from ..errors import PipelineStateError
from ..events import ProgressCallback, RunState, StateEvent, StopRequest, emit
from ..mask_extraction import (
    MaskExtractionResult,
    border_warnings,
    residual_autocorrelation,
    threshold_correlation,
)
from ..persistence import STAGE1_WEIGHTS, STAGE2_WEIGHTS, save_pipeline_record, save_weights
from ..prediction import NonFiniteOutputError, Predictor
from ..training import TrainingResult, train
from ..unet import UNet

#: Mask extraction looks at this many slices at most: the correlation estimate converges quickly.
MAX_EXTRACTION_SLICES = 16


class AutoStructState(str, Enum):
    PENDING = "pending"
    STAGE1 = "stage1"
    EXTRACTING = "extracting"
    AWAITING_REVIEW = "awaiting_review"
    STAGE2 = "stage2"
    DONE = "done"
    SKIPPED = "skipped"
    STOPPED = "stopped"
    FAILED = "failed"


def check_mask(mask: np.ndarray, mode: str) -> np.ndarray:
    """Validate a (possibly user-edited) struct mask: planes x K x K, odd K, centre set."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[np.newaxis]
    planes = 3 if mode == "2.5d" else 1
    if mask.ndim != 3 or mask.shape[0] not in (1, planes) or mask.shape[1] != mask.shape[2]:
        raise ConfigError(f"mask: expected shape ({planes}, K, K), got {mask.shape}")
    if mask.shape[1] % 2 == 0:
        raise ConfigError(f"mask: the kernel side must be odd, got {mask.shape[1]}")
    k = mask.shape[1] // 2
    if not mask[mask.shape[0] // 2, k, k]:
        raise ConfigError("mask: the centre pixel must be set")
    return mask


class AutoStructPipeline:
    """Runs autoStructN2V step by step on noisy images; see the module docstring for the states."""

    def __init__(
        self,
        config: AutoStructConfig,
        images: np.ndarray | Sequence[np.ndarray],
        *,
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
        run_dir: str | Path | None = None,
    ):
        self.config = config
        if isinstance(images, np.ndarray):
            images = [images]
        self.images = [check_stack_for_mode(im, config.mode, name=f"image {i + 1}") for i, im in enumerate(images)]
        self.normalization = Normalization.fit(self.images, config.stage1.data)
        self.callback = callback
        self.stop = stop or StopRequest()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.state = AutoStructState.PENDING
        self.message = ""
        self.stage1: TrainingResult | None = None
        self.stage2: TrainingResult | None = None
        self.extraction: MaskExtractionResult | None = None
        self.approved_mask: np.ndarray | None = None
        self._correlation_cache: tuple[np.ndarray, int] | None = None

    # -- state -----------------------------------------------------------------------------------
    def _set_state(self, state: AutoStructState, message: str = "") -> None:
        self.state = state
        self.message = message
        emit(self.callback, StateEvent(state.value, _run_state(state), message))

    def _require(self, *states: AutoStructState) -> None:
        if self.state not in states:
            wanted = ", ".join(s.value for s in states)
            raise PipelineStateError(f"cannot do this while {self.state.value}; needs {wanted}")

    # -- stage 1 ---------------------------------------------------------------------------------
    def run_stage1(self) -> TrainingResult:
        self._require(AutoStructState.PENDING)
        self._set_state(AutoStructState.STAGE1, "training stage 1 (Noise2Void)")
        try:
            self.stage1 = train(
                self.config.stage1,
                self.images,
                callback=self.callback,
                stop=self.stop,
                checkpoint=self._checkpoint("stage1"),
                normalization=self.normalization,
                stage="stage1",
            )
        except Exception as err:
            self._set_state(AutoStructState.FAILED, f"stage 1 failed: {err}")
            raise
        if self.stage1.stop_reason == "stopped":
            self._set_state(AutoStructState.STOPPED, "stopped during stage 1; the best stage-1 model is kept")
        return self.stage1

    # -- mask extraction and review --------------------------------------------------------------
    def extract_mask(self, params: MaskExtractorConfig | None = None) -> MaskExtractionResult:
        """Extract (or regenerate, with new parameters) the mask from stage 1's residual."""
        self._require(AutoStructState.STAGE1, AutoStructState.AWAITING_REVIEW, AutoStructState.STOPPED)
        if self.stage1 is None:
            raise PipelineStateError("stage 1 has not been trained")
        params = params or self.config.extractor
        self.config = self.config.model_copy(update={"extractor": params})
        self._set_state(AutoStructState.EXTRACTING, "extracting the structured-noise mask")
        try:
            self.extraction = mask_from_correlation(*self._correlation(), params)
        except Exception as err:
            self._set_state(AutoStructState.FAILED, f"mask extraction failed: {err}")
            raise
        self._set_state(AutoStructState.AWAITING_REVIEW, self.extraction.summary())
        return self.extraction

    def regenerate(self, params: MaskExtractorConfig) -> MaskExtractionResult:
        """New extractor parameters, same stage-1 model: no retraining, and the FFTs are reused."""
        return self.extract_mask(params)

    def _correlation(self) -> tuple[np.ndarray, int]:
        """The residual correlation up to the largest radius the extractor allows, computed once:
        regenerating with any parameters (radius included) then needs neither prediction nor FFTs."""
        if self._correlation_cache is None:
            self._correlation_cache = residual_correlation(
                self.stage1.model, self.normalization, self.config.mode, self.images,
                device=self.config.stage1.training.device,
            )  # fmt: skip
        return self._correlation_cache

    def approve(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Accept the extracted mask, or an edited one, for stage 2."""
        self._require(AutoStructState.AWAITING_REVIEW)
        chosen = check_mask(self.extraction.mask if mask is None else mask, self.config.mode)
        self.stage2_config(chosen)  # a mask stage 2 cannot train with is refused now, at the review
        self.approved_mask = chosen
        self.message = f"mask approved ({int(self.approved_mask.sum())} px)"
        return self.approved_mask

    def use_mask(self, mask: np.ndarray) -> np.ndarray:
        """Skip stage 1 and extraction with a mask the user already has (structN2V with a given mask)."""
        self._require(AutoStructState.PENDING)
        chosen = check_mask(mask, self.config.mode)
        self.stage2_config(chosen)
        self.approved_mask = chosen
        self.state = AutoStructState.AWAITING_REVIEW
        return self.approved_mask

    def skip_stage2(self) -> None:
        """Keep stage 1's model as the result."""
        self._require(AutoStructState.AWAITING_REVIEW, AutoStructState.STOPPED)
        if self.stage1 is None:
            raise PipelineStateError("there is no stage-1 model to keep")
        self._set_state(AutoStructState.SKIPPED, "stage 2 skipped; the stage-1 (N2V) model is the result")
        self.save()

    # -- stage 2 ---------------------------------------------------------------------------------
    def stage2_config(self, mask: np.ndarray | None = None) -> DenoiseConfig:
        """Stage 2's config: the approved mask, and a blind-spot percentage the kernel leaves room for.

        Every blind spot overwrites its whole kernel footprint (the centre plane's pixels) in the input;
        at 10 % blind spots a 19-pixel kernel would overwrite the patch twice over and leave the network
        little real context. The percentage is lowered so that percent x kernel pixels stays within
        ``stage2_max_coverage`` (on synthetic scan-line noise 2 % beat 6.25 % by 0.9 dB with such a kernel).
        """
        mask = self.approved_mask if mask is None else mask
        if mask is None:
            raise PipelineStateError("approve a mask before stage 2")
        percent = stage2_mask_percent(self.config.stage2.masking.mask_percent, mask, self.config.stage2_max_coverage)
        data = self.config.stage2.to_dict()
        data["masking"].update(struct_mask=np.asarray(mask, dtype=bool).tolist(), mask_percent=percent)
        try:
            return DenoiseConfig.from_dict(data)  # validated: e.g. a kernel that leaves no replacement pixel
        except ConfigError as err:
            raise err.prefixed("stage2") from None

    def run_stage2(self) -> TrainingResult:
        self._require(AutoStructState.AWAITING_REVIEW)
        config = self.stage2_config()
        initial = None
        if self.config.stage2_init == "stage1" and self.stage1 is not None:
            initial = {k: v.detach().cpu() for k, v in self.stage1.model.state_dict().items()}
        percent = config.masking.mask_percent
        lowered = (
            f"; {percent:.2g} % blind spots (lowered from {self.config.stage2.masking.mask_percent:g} % so the "
            f"kernel covers at most {self.config.stage2_max_coverage:g} % of each patch)"
            if percent < self.config.stage2.masking.mask_percent
            else ""
        )
        self._set_state(AutoStructState.STAGE2, f"training stage 2 (structN2V with the approved mask{lowered})")
        try:
            self.stage2 = train(
                config,
                self.images,
                callback=self.callback,
                stop=self.stop,
                checkpoint=self._checkpoint("stage2"),
                normalization=self.normalization,
                initial_state=initial,
                stage="stage2",
            )
        except Exception as err:
            self._set_state(AutoStructState.FAILED, f"stage 2 failed: {err}")
            raise
        if self.stage2.stop_reason == "stopped" and self.stage2.steps == 0 and self.stage1 is not None:
            # Stopped before stage 2 learnt anything: its weights are random, stage 1 stays the result.
            self.stage2 = None
            if self.run_dir is not None:
                (self.run_dir / STAGE2_WEIGHTS).unlink(missing_ok=True)
            self._set_state(AutoStructState.STOPPED, "stopped before stage 2 trained; the stage-1 model is kept")
        elif self.stage2.stop_reason == "stopped":
            self._set_state(AutoStructState.STOPPED, "stopped during stage 2; the best stage-2 model is kept")
        else:
            self._set_state(AutoStructState.DONE, "autoStructN2V complete")
        self.save()
        return self.stage2

    # -- whole run -------------------------------------------------------------------------------
    def run(self, review: Callable[[AutoStructPipeline], None] | None = None) -> AutoStructPipeline:
        """Stage 1, extraction, review (``review`` calls approve/regenerate/skip_stage2), stage 2.

        With ``auto_approve`` (or no ``review``) the extracted mask is approved as it is.
        """
        self.run_stage1()
        if self.state == AutoStructState.STOPPED:
            return self
        result = self.extract_mask()
        if self.config.auto_approve or review is None:
            self.approve(result.mask)
        else:
            review(self)
        if self.state == AutoStructState.SKIPPED:
            return self
        if self.approved_mask is None:
            raise PipelineStateError("the review neither approved a mask nor skipped stage 2")
        self.run_stage2()
        return self

    # -- results and files -----------------------------------------------------------------------
    @property
    def final(self) -> TrainingResult | None:
        """The result that counts: stage 2 when it ran, else stage 1."""
        return self.stage2 if self.stage2 is not None else self.stage1

    @property
    def final_config(self) -> DenoiseConfig:
        return self.stage2_config() if self.stage2 is not None else self.config.stage1

    def _checkpoint(self, stage: str):
        if self.run_dir is None:
            return None
        weights = self.run_dir / (STAGE1_WEIGHTS if stage == "stage1" else STAGE2_WEIGHTS)

        def write(state: dict, summary: dict) -> None:
            save_weights(weights, state)
            self._write_record()

        return write

    def save(self, run_dir: str | Path | None = None) -> Path | None:
        """Write config.json, stage-1/stage-2 weights and mask.npy (each atomically)."""
        if run_dir is not None:
            self.run_dir = Path(run_dir)
        if self.run_dir is None:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.stage1 is not None:
            save_weights(self.run_dir / STAGE1_WEIGHTS, self.stage1.model.state_dict())
        if self.stage2 is not None:
            save_weights(self.run_dir / STAGE2_WEIGHTS, self.stage2.model.state_dict())
        self._write_record()
        return self.run_dir

    def _write_record(self) -> None:
        final = self.final_config if (self.stage1 or self.stage2) else self.config.stage1
        save_pipeline_record(
            self.run_dir,
            self.config,
            final,
            self.normalization,
            state=self.state.value,
            final_stage="stage2" if self.stage2 is not None else "stage1",
            stage_summaries={
                "stage1": self.stage1.summary() if self.stage1 else None,
                "stage2": self.stage2.summary() if self.stage2 else None,
            },
            mask=self.approved_mask,
            extraction=None if self.extraction is None else self.extraction_record(),
        )

    def extraction_record(self) -> dict:
        result = self.extraction
        return {
            "kernel_size": result.kernel_size,
            "active_pixels": result.active_pixels,
            "coverage_percent": round(result.coverage_percent, 2),
            "floor": result.floor,
            "summary": result.summary(),
            "warnings": list(result.warnings),
        }


def residual_correlation(
    network: UNet, normalization: Normalization, mode: str, stacks: Sequence[np.ndarray], device: str = "auto"
) -> tuple[np.ndarray, int]:
    """The residual (noisy - denoised) autocorrelation of a denoiser on ``stacks`` up to the largest
    extractor radius, pooled over the stacks and weighted by their pixel counts; and that count.

    At most :data:`MAX_EXTRACTION_SLICES` slices of each stack are used: the estimate converges quickly.
    """
    predictor = Predictor(network, normalization, mode, device=device)
    weighted, total = None, 0
    for stack in stacks:
        picks = np.unique(np.linspace(0, stack.shape[0] - 1, min(stack.shape[0], MAX_EXTRACTION_SLICES)))
        picks = picks.round().astype(int)
        if mode == "2.5d" and len(picks) < stack.shape[0]:
            # z-correlation needs neighbouring slices: take a contiguous block from the middle.
            start = (stack.shape[0] - MAX_EXTRACTION_SLICES) // 2
            picks = np.arange(start, start + MAX_EXTRACTION_SLICES)
        noisy = normalization.normalize(stack)
        denoised = np.stack([predictor.predict_normalized_plane(plane_input(noisy, z, mode)) for z in picks])
        if not np.isfinite(denoised).all():
            raise NonFiniteOutputError(
                "the stage-1 model gives NaN or Inf values; its weights are damaged or its training diverged"
            )
        rho, pixels = residual_autocorrelation(noisy[picks], denoised, MAX_EXTRACTOR_RADIUS, mode=mode)
        weighted = rho * pixels if weighted is None else weighted + rho * pixels
        total += pixels
    return weighted / total, total


def mask_from_correlation(rho: np.ndarray, pixels: int, params: MaskExtractorConfig) -> MaskExtractionResult:
    """Threshold a residual correlation (cropped to ``params.max_radius``) into a struct mask."""
    big = rho.shape[-1] // 2
    r = params.max_radius
    rho = rho[:, big - r : big + r + 1, big - r : big + r + 1]
    mask, floor = threshold_correlation(rho, pixels, params)
    return MaskExtractionResult(mask, rho, floor, border_warnings(rho, floor))


def _run_state(state: AutoStructState) -> RunState:
    return {
        AutoStructState.PENDING: RunState.PENDING,
        AutoStructState.DONE: RunState.COMPLETE,
        AutoStructState.SKIPPED: RunState.COMPLETE,
        AutoStructState.STOPPED: RunState.STOPPED,
        AutoStructState.FAILED: RunState.FAILED,
    }.get(state, RunState.TRAINING)


def stage2_mask_percent(configured: float, mask: np.ndarray, max_coverage: float) -> float:
    """The blind-spot percentage for ``mask``: ``configured``, or lower so that it times the pixels of
    the mask's centre plane stays within ``max_coverage`` percent (never below the config's minimum)."""
    kernel_pixels = int(np.count_nonzero(mask[mask.shape[0] // 2]))
    limit = max_coverage / max(kernel_pixels, 1)
    return float(max(min(configured, limit), MIN_MASK_PERCENT))
