"""One trainer for every method: the loop, events, stop, time budget, early stopping, checkpoints.

The trainer draws patches (:mod:`.data`), asks the method for (input, target, loss mask), steps
Adam, validates once per epoch on held-out blocks with a fixed mask, keeps the best weights, and
reports progress through plain :class:`~.events.ProgressEvent` records.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, DenoiseConfig
from .data import (
    Normalization,
    PatchSampler,
    check_training_images,
    fit_channel_normalizations,
    network_channels,
    normalize_channels,
)
from .events import ProgressCallback, RunState, StateEvent, StopRequest, TrainingEvent, emit
from .gaintuning import GainTunedNetwork
from .io import InputError, available_memory
from .lazy import is_lazy
from .memory import is_out_of_memory, release_cached_memory
from .methods import make_method
from .registry import stop_reason_text
from .targets import prepare_targets
from .unet import UNet, build_model

logger = logging.getLogger(__name__)

#: Cosine schedules decay to this fraction of the initial learning rate.
COSINE_FLOOR = 0.02
#: Validation forward passes per epoch, in patches: a bound on the cost of a reliable validation loss.
VALIDATION_PATCH_BUDGET = 128
#: Best weights reach disk at most this often (seconds) while training, and always at the end.
CHECKPOINT_INTERVAL = 10.0

Checkpoint = Callable[[dict, dict], None]


@dataclass
class TrainingResult:
    """What a finished (or stopped) training hands back: the best model and its record."""

    model: UNet
    normalization: Normalization
    config: DenoiseConfig
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_epoch: int = 0
    stop_reason: str = "completed"
    epochs_run: int = 0
    steps: int = 0
    elapsed: float = 0.0
    patches_per_second: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    seed: int = 0
    #: Supervised methods: the target's intensity mapping, in which predictions are returned.
    target_normalization: Normalization | None = None
    #: One normalisation per image channel (the first is ``normalization``), and of the targets'.
    channel_normalizations: list[Normalization] = field(default_factory=list)
    target_channel_normalizations: list[Normalization] | None = None
    #: What running out of memory changed (a smaller batch), in words.
    memory_notes: list[str] = field(default_factory=list)
    #: GainTuning: the held-out loss of the network before adaptation.
    initial_val_loss: float | None = None

    def summary(self) -> dict:
        notes = {"memory_notes": list(self.memory_notes)} if self.memory_notes else {}
        if self.initial_val_loss is not None:
            notes["initial_val_loss"] = self.initial_val_loss
        return notes | {
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "stop_reason": self.stop_reason,
            "epochs_run": self.epochs_run,
            "steps": self.steps,
            "elapsed_s": round(self.elapsed, 2),
            "patches_per_second": round(self.patches_per_second, 1),
            "device": self.device,
            "precision": self.precision,
            "seed": self.seed,
        }


# -- hardware --------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("training.device: CUDA was requested but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True on processors with bf16 matrix instructions (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_context(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def memory_format(device: torch.device, dims: int = 2) -> torch.memory_format:
    # channels_last lets oneDNN pick its fastest convolution kernels on the CPU.
    if device.type != "cpu":
        return torch.contiguous_format
    return torch.channels_last_3d if dims == 3 else torch.channels_last


# -- memory ----------------------------------------------------------------------------------
#: Activations autograd keeps per U-Net level and pixel, in feature maps: encoder and decoder blocks
#: (two convolutions and two ReLUs each), the up-sampling, the skip concatenation, and Adam's state.
ACTIVATIONS_PER_LEVEL = 12
#: Refuse a training that needs more than this share of the available memory.
MAX_MEMORY_SHARE = 0.8


def estimate_training_bytes(config: DenoiseConfig, pixels: int = 0) -> int:
    """Bytes a training needs, roughly: the activations of one batch, the weights with Adam's two moments
    and gradients, and the normalised copy of ``pixels`` input pixels (targets double it)."""
    model, patch = config.model, config.data.patch_size
    depth = config.data.patch_size_z if config.mode == "3d" else 1
    per_sample = 0
    for level in range(model.depth + 1):
        features = model.base_features * 2**level
        slices = max(1, depth // 2**level) if model.pool_z else depth
        per_sample += ACTIVATIONS_PER_LEVEL * features * (patch // 2**level) ** 2 * slices
    validation = max(config.training.batch_size, 16)  # validation batches run without gradients
    activations = 4 * per_sample * (config.training.batch_size + validation // 4)
    weights = 4 * 4 * sum(9 * (model.base_features * 2**level) ** 2 * 4 for level in range(model.depth + 1))
    data = 4 * pixels * (1 if config.is_blind_spot else 2)
    return int(activations + weights + data)


def check_memory(config: DenoiseConfig, pixels: int, device: torch.device) -> None:
    """Refuse, with the figure, a configuration that would die in the allocator minutes later."""
    if device.type != "cpu":
        return
    needed, available = estimate_training_bytes(config, pixels), available_memory()
    if needed > MAX_MEMORY_SHARE * available:
        raise ConfigError(
            f"training.batch_size: this configuration needs about {needed / 1e9:.1f} GB of memory "
            f"(batch {config.training.batch_size} of {config.data.patch_size}-px patches, "
            f"{config.model.base_features} features, depth {config.model.depth}) but {available / 1e9:.1f} GB "
            "is available; lower training.batch_size, data.patch_size or model.base_features",
            [
                ("training.batch_size", "too large for the available memory"),
                ("data.patch_size", "too large for the available memory"),
                ("model.base_features", "too large for the available memory"),
            ],
        )


# -- trainer ---------------------------------------------------------------------------------
@dataclass
class _Loop:
    """What one fit works with: the data, the network and its optimiser, and the running record."""

    sampler: PatchSampler
    model: UNet
    optimizer: torch.optim.Optimizer
    plateau: object | None
    validation: list
    device: torch.device
    precision: str
    fmt: torch.memory_format
    generator: torch.Generator
    rng: np.random.Generator
    result: TrainingResult
    best_state: dict
    steps_per_epoch: int
    total_steps: int
    start: float = 0.0
    epochs_without_gain: int = 0
    patches_seen: int = 0
    last_checkpoint: float = -math.inf
    #: Patches per optimiser step: the config's, halved each time the device runs out of memory.
    batch_size: int = 0


class Trainer:
    """Trains one model for one config; ``fit`` may be called once."""

    def __init__(
        self,
        config: DenoiseConfig,
        *,
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
        checkpoint: Checkpoint | None = None,
        stage: str = "training",
        method=None,
        adapt_gains: bool = False,
    ):
        """``method``: the loss and batches (default: the config's method). ``adapt_gains``: GainTuning,
        train only a gain per feature channel of the ``initial_state`` network (see :mod:`.gaintuning`)."""
        if adapt_gains and method is None:
            raise ValueError("GainTuning needs its loss (gaintuning.gain_tuning_loss)")
        self.adapt_gains = adapt_gains
        self.config = config
        self.callback = callback
        self.stop = stop or StopRequest()
        self.checkpoint = checkpoint
        self.stage = stage
        self.method = method

    def fit(
        self,
        stacks: np.ndarray | Sequence[np.ndarray],
        normalization: Normalization | Sequence[Normalization] | None = None,
        initial_state: dict | None = None,
        targets: Sequence[np.ndarray] | None = None,
        target_normalization: Normalization | Sequence[Normalization] | None = None,
    ) -> TrainingResult:
        """Train on checked ``(Z, Y, X)`` stacks or ``(C, Z, Y, X)`` images; ``targets`` are already
        prepared (checked, aligned). A normalisation is one for every channel, or a list of one per channel."""
        loop = self._setup(stacks, normalization, initial_state, targets, target_normalization)
        self._emit_started(loop)
        for epoch in range(1, self.config.training.epochs + 1):
            losses = self._train_epoch(loop, epoch)
            if not losses and loop.result.stop_reason != "completed" and epoch > 1:
                break  # stopped right at an epoch boundary: the last epoch was already validated
            self._end_epoch(loop, epoch, losses)
            if self._should_stop(loop):
                break
        return self._finish(loop)

    # -- the named steps -------------------------------------------------------------------------
    def _setup(self, stacks, normalization, initial_state, targets, target_normalization) -> _Loop:
        cfg = self.config
        images = check_training_images(stacks, cfg)
        channels = images[0].shape[0]
        joint = cfg.data.channels == "joint" and channels > 1
        norms = _channel_norms(normalization, images, cfg)
        normalized = [normalize_channels(image, norms) for image in images]
        target_norms = None
        if targets is not None:
            # Targets keep their own intensity scale (a clean acquisition is brighter than a noisy one);
            # predictions are returned in it.
            targets = [t if t.ndim == 4 else t[np.newaxis] for t in (np.asarray(t) for t in targets)]
            if any(is_lazy(image) for image in images):
                raise InputError("paired training needs its images in memory; this one is read from disk")
            target_norms = _channel_norms(target_normalization, targets, cfg)
            targets = [normalize_channels(t, target_norms) for t in targets]
        elif target_normalization is not None:
            # No targets but an output scale of its own (GainTuning of a paired model): it is kept.
            target_norms = _channel_norms(target_normalization, images, cfg)
        if self.method is None:
            self.method = make_method(cfg, channels if joint else 1)
        if hasattr(self.method, "set_normalization"):
            self.method.set_normalization(norms if joint else norms[:1])

        seed = cfg.training.seed if cfg.training.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        device = resolve_device(cfg.training.device)
        # Images read from disk patch by patch hold no normalised copy in memory.
        check_memory(cfg, sum(int(image.size) for image in images if not is_lazy(image)), device)
        precision = resolve_precision(cfg.training.precision, device)
        dims = 3 if cfg.mode == "3d" else 2
        fmt = memory_format(device, dims)

        struct = getattr(self.method, "struct_kernel", None)
        sampler = PatchSampler(normalized, cfg.mode, cfg.data, rng, struct_kernel=struct, targets=targets, joint=joint)
        in_channels, out_channels = network_channels(cfg.mode, channels, joint)
        model = build_model(cfg.model, in_channels, psf_sigma=cfg.psf_sigma, out_channels=out_channels, dims=dims)
        if initial_state is not None:
            model.load_state_dict(initial_state)
        model = model.to(device=device, memory_format=fmt)
        if self.adapt_gains:
            model = GainTunedNetwork(model)
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=cfg.training.learning_rate)
        plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=max(1, cfg.training.patience // 2)
            )
            if cfg.training.lr_schedule == "plateau"
            else None
        )
        result = TrainingResult(
            model=model,
            normalization=norms[0],
            config=cfg,
            device=str(device),
            precision=precision,
            seed=seed,
            target_normalization=target_norms[0] if target_norms else None,
            channel_normalizations=list(norms),
            target_channel_normalizations=list(target_norms) if target_norms else None,
        )
        steps_per_epoch = sampler.steps_per_epoch(cfg.training.batch_size)
        loop = _Loop(
            sampler=sampler,
            model=model,
            optimizer=optimizer,
            plateau=plateau,
            validation=self._validation_batches(sampler, torch.Generator().manual_seed(seed + 1)),
            device=device,
            precision=precision,
            fmt=fmt,
            generator=torch.Generator().manual_seed(seed),
            rng=rng,
            result=result,
            best_state=copy.deepcopy(model.state_dict()),
            steps_per_epoch=steps_per_epoch,
            total_steps=steps_per_epoch * cfg.training.epochs,
            batch_size=cfg.training.batch_size,
        )
        if self.adapt_gains:
            # The unadapted network is the first candidate: an adaptation that does not lower the
            # held-out loss leaves the model as it was.
            result.initial_val_loss = self._validate(model, loop.validation, device, precision, fmt)
            result.best_val_loss = result.initial_val_loss
        return loop

    def _emit_started(self, loop: _Loop) -> None:
        loop.start = time.perf_counter()
        emit(
            self.callback,
            TrainingEvent(
                "started", self.stage, RunState.TRAINING, 0, self.config.training.epochs, 0, loop.steps_per_epoch,
                message=f"device {loop.device}, {loop.precision}",
            ),
        )  # fmt: skip

    def _train_epoch(self, loop: _Loop, epoch: int) -> list[float]:
        """One epoch of optimiser steps (fewer when stopped or out of time); returns the batch losses."""
        cfg, result, model = self.config, loop.result, loop.model
        model.train()
        losses: list[float] = []
        for index, patches in enumerate(loop.sampler.epoch(loop.rng, cfg.training.batch_size), start=1):
            elapsed = time.perf_counter() - loop.start
            if self.stop.requested:
                result.stop_reason = "stopped"
                break
            if cfg.training.max_time is not None and elapsed >= cfg.training.max_time:
                result.stop_reason = "time_budget"
                break
            if cfg.training.lr_schedule == "cosine":
                self._set_cosine_lr(loop.optimizer, result.steps, loop.total_steps, elapsed)
            losses.append(self._step_within_memory(loop, patches))
            result.steps += 1
            loop.patches_seen += min(patches.shape[0], loop.batch_size)
            emit(self.callback, self._event("batch", epoch, index, loop.steps_per_epoch, losses[-1], loop))
        return losses

    def _step_within_memory(self, loop: _Loop, patches: np.ndarray) -> float:
        """One step on the first ``loop.batch_size`` patches; out of memory, halve the batch for the
        rest of the run, say so, and take the step again."""
        while True:
            try:
                return self._step(loop, patches[: loop.batch_size])
            except Exception as err:
                # A Python MemoryError is the host's arrays, which a smaller batch would not shrink.
                if isinstance(err, MemoryError) or not is_out_of_memory(err) or loop.batch_size <= 1:
                    raise
                loop.optimizer.zero_grad(set_to_none=True)
                release_cached_memory()
                loop.batch_size = max(1, loop.batch_size // 2)
                note = f"out of memory: batch size halved to {loop.batch_size}; training goes on"
                loop.result.memory_notes.append(note)
                logger.warning(note)
                emit(self.callback, StateEvent(self.stage, RunState.TRAINING, note, kind="notice"))

    def _step(self, loop: _Loop, patches: np.ndarray) -> float:
        batch = self.method.make_batch(patches, loop.generator)
        inputs = batch.inputs.to(loop.device, non_blocking=True).contiguous(memory_format=loop.fmt)
        batch.targets = batch.targets.to(loop.device, non_blocking=True)
        batch.loss_mask = batch.loss_mask.to(loop.device, non_blocking=True)
        with autocast_context(loop.device, loop.precision):
            prediction = loop.model(inputs)
        loss = self.method.loss(prediction, batch)
        penalty = self.method.penalty(loop.model)
        if penalty is not None:
            loss = loss + penalty
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loop.optimizer.step()
        return float(loss.detach())

    def _end_epoch(self, loop: _Loop, epoch: int, losses: list[float]) -> None:
        """Validate, record the epoch, keep the best weights (on disk too) and step the plateau schedule."""
        result = loop.result
        val_loss = self._validate(loop.model, loop.validation, loop.device, loop.precision, loop.fmt)
        train_loss = float(np.mean(losses)) if losses else math.nan
        result.epochs_run = epoch
        result.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "learning_rate": loop.optimizer.param_groups[0]["lr"],
                "elapsed_s": round(time.perf_counter() - loop.start, 3),
                "steps": result.steps,
            }
        )
        if val_loss < result.best_val_loss and result.steps > 0:
            result.best_val_loss, result.best_epoch = val_loss, epoch
            loop.best_state = copy.deepcopy(loop.model.state_dict())
            loop.epochs_without_gain = 0
            if self.checkpoint and time.perf_counter() - loop.last_checkpoint >= CHECKPOINT_INTERVAL:
                # A run killed now leaves this checkpoint; its record must not claim the run completed.
                state = _cpu_state(self._network_state(loop))
                self.checkpoint(state, {**result.summary(), "stop_reason": "interrupted"})
                loop.last_checkpoint = time.perf_counter()
        else:
            loop.epochs_without_gain += 1
        if loop.plateau is not None:
            loop.plateau.step(val_loss)
        event = self._event("epoch", epoch, loop.steps_per_epoch, loop.steps_per_epoch, train_loss, loop)
        event.val_loss = val_loss
        emit(self.callback, event)

    def _should_stop(self, loop: _Loop) -> bool:
        result = loop.result
        if result.stop_reason != "completed":
            return True
        if self.config.training.early_stopping and loop.epochs_without_gain >= self.config.training.patience:
            result.stop_reason = "early_stopping"
            return True
        return False

    def _finish(self, loop: _Loop) -> TrainingResult:
        """Restore the best weights, write the final checkpoint (none when no step was taken), report."""
        result, model = loop.result, loop.model
        result.elapsed = time.perf_counter() - loop.start
        result.patches_per_second = loop.patches_seen / result.elapsed if result.elapsed > 0 else 0.0
        if isinstance(model, GainTunedNetwork):
            model = model.unwrap(loop.best_state)
        else:
            model.load_state_dict(loop.best_state)
        model.eval()
        result.model = model
        if self.checkpoint and result.steps > 0:
            self.checkpoint(_cpu_state(model.state_dict()), result.summary())
        if loop.device.type == "cuda":
            torch.cuda.empty_cache()  # give GPU memory back as soon as training ends
        state = RunState.STOPPED if result.stop_reason == "stopped" else RunState.COMPLETE
        emit(
            self.callback,
            TrainingEvent(
                "finished", self.stage, state, result.epochs_run, self.config.training.epochs, 0,
                loop.steps_per_epoch, val_loss=result.best_val_loss, best_val_loss=result.best_val_loss,
                elapsed=result.elapsed, time_left=0.0, message=_finish_message(result),
            ),
        )  # fmt: skip
        return result

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _network_state(loop: _Loop) -> dict:
        """The best weights as the network's own state dict (GainTuning: gains folded in)."""
        if isinstance(loop.model, GainTunedNetwork):
            return loop.model.folded_state(loop.best_state)
        return loop.best_state

    def _validation_batches(self, sampler: PatchSampler, generator: torch.Generator) -> list:
        """Fixed validation batches. A blind-spot loss sees only the masked pixels, so few held-out
        blocks (a single image) give a noisy estimate, too noisy to tell a better model from a worse
        one: such blocks are repeated with independent masks, up to about one mask per pixel."""
        patches = sampler.validation_patches(np.random.default_rng(0))
        masking = getattr(self.method, "masking", None)
        if masking is not None:
            per_pixel = int(np.ceil(100.0 / masking.mask_percent))
            repeats = int(np.clip(VALIDATION_PATCH_BUDGET // len(patches), 1, per_pixel))
            patches = np.concatenate([patches] * repeats)
        size = max(self.config.training.batch_size, 16)
        return [self.method.make_batch(patches[i : i + size], generator) for i in range(0, len(patches), size)]

    def _validate(self, model, batches, device, precision, fmt) -> float:
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad(), autocast_context(device, precision):
            for batch in batches:
                prediction = model(batch.inputs.to(device).contiguous(memory_format=fmt))
                moved = type(batch)(batch.inputs, batch.targets.to(device), batch.loss_mask.to(device))
                n = int(batch.loss_mask.sum())
                total += float(self.method.loss(prediction, moved)) * n
                count += n
        model.train()
        return total / max(count, 1)

    def _set_cosine_lr(self, optimizer, step: int, total_steps: int, elapsed: float) -> None:
        progress = step / max(total_steps, 1)
        budget = self.config.training.max_time
        if budget:
            progress = max(progress, elapsed / budget)
        progress = min(progress, 1.0)
        factor = COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = self.config.training.learning_rate * factor

    def _event(self, kind: str, epoch: int, batch: int, batches: int, loss: float, loop: _Loop) -> TrainingEvent:
        result = loop.result
        elapsed = time.perf_counter() - loop.start
        done = result.steps / max(loop.total_steps, 1)
        time_left = elapsed / done * (1 - done) if done > 0 else None
        budget = self.config.training.max_time
        limited = False
        if budget is not None:
            remaining = max(0.0, budget - elapsed)
            limited = time_left is None or remaining < time_left
            time_left = remaining if time_left is None else min(time_left, remaining)
        return TrainingEvent(
            kind,
            self.stage,
            RunState.TRAINING,
            epoch,
            self.config.training.epochs,
            batch,
            batches,
            train_loss=loss,
            best_val_loss=result.best_val_loss if result.best_epoch else None,
            learning_rate=loop.optimizer.param_groups[0]["lr"],
            elapsed=elapsed,
            time_left=time_left,
            limited_by_time=limited,
        )


def _channel_norms(
    given: Normalization | Sequence[Normalization] | None, images: Sequence[np.ndarray], config: DenoiseConfig
) -> list[Normalization]:
    channels = images[0].shape[0]
    if given is None:
        return fit_channel_normalizations(images, config.data)
    if isinstance(given, Normalization):
        return [given] * channels
    norms = list(given)
    if len(norms) != channels:
        raise ValueError(f"{len(norms)} normalisations for images of {channels} channels")
    return norms


def _cpu_state(state: dict) -> dict:
    return {key: value.detach().to("cpu") for key, value in state.items()}


def _finish_message(result: TrainingResult) -> str:
    if result.steps == 0:
        return stop_reason_text("no_step")
    return (
        f"{stop_reason_text(result.stop_reason)}; best validation loss "
        f"{result.best_val_loss:.4g} at epoch {result.best_epoch}"
    )


def train(
    config: DenoiseConfig,
    stacks: np.ndarray | Sequence[np.ndarray],
    *,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    checkpoint: Checkpoint | None = None,
    normalization: Normalization | Sequence[Normalization] | None = None,
    initial_state: dict | None = None,
    stage: str = "training",
    targets: np.ndarray | Sequence[np.ndarray] | None = None,
    target_normalization: Normalization | Sequence[Normalization] | None = None,
    targets_prepared: bool = False,
    method=None,
    adapt_gains: bool = False,
) -> TrainingResult:
    """Train one network on ``stacks`` (one array or a list of ``(Z, Y, X)``/``(Y, X)`` arrays).

    ``targets`` are the paired images of Noise2Noise / CARE (same shapes as ``stacks``); they are
    checked and aligned here unless ``targets_prepared`` says the caller did it (the run does, once).
    This is the engine's building block; a whole run (files, outputs, autoStructN2V) is
    :func:`denoise_studio.engine.run.run_training`. ``method`` and ``adapt_gains``: see :class:`Trainer`.
    """
    stacks = check_training_images(stacks, config)
    if not targets_prepared:
        targets = prepare_targets(config, stacks, targets)
    trainer = Trainer(
        config, callback=callback, stop=stop, checkpoint=checkpoint, stage=stage, method=method,
        adapt_gains=adapt_gains,
    )  # fmt: skip
    return trainer.fit(
        stacks,
        normalization=normalization,
        initial_state=initial_state,
        targets=targets,
        target_normalization=target_normalization,
    )
