"""One trainer for every method: the loop, events, stop, time budget, early stopping, checkpoints.

The trainer draws patches (:mod:`.data`), asks the method for (input, target, loss mask), steps
Adam, validates once per epoch on held-out blocks with a fixed mask, keeps the best weights, and
reports progress through plain :class:`~.events.ProgressEvent` records.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, DenoiseConfig
from .data import Normalization, PatchSampler, check_stack_for_mode, input_channels
from .events import ProgressCallback, ProgressEvent, RunState, StopRequest, emit
from .methods import make_method
from .targets import prepare_targets
from .unet import UNet, build_model

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

    def summary(self) -> dict:
        return {
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


def memory_format(device: torch.device) -> torch.memory_format:
    # channels_last lets oneDNN pick its fastest convolution kernels on the CPU.
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


# -- trainer ---------------------------------------------------------------------------------
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
    ):
        self.config = config
        self.callback = callback
        self.stop = stop or StopRequest()
        self.checkpoint = checkpoint
        self.stage = stage
        self.method = method or make_method(config)

    def fit(
        self,
        stacks: np.ndarray | Sequence[np.ndarray],
        normalization: Normalization | None = None,
        initial_state: dict | None = None,
        targets: np.ndarray | Sequence[np.ndarray] | None = None,
        target_normalization: Normalization | None = None,
    ) -> TrainingResult:
        cfg = self.config
        if isinstance(stacks, np.ndarray):
            stacks = [stacks]
        stacks = [check_stack_for_mode(s, cfg.mode, name=f"image {i + 1}") for i, s in enumerate(stacks)]
        normalization = normalization or Normalization.fit(stacks, cfg.data)
        normalized = [normalization.normalize(s) for s in stacks]
        targets = prepare_targets(cfg, stacks, targets)
        if targets is not None:
            # Targets keep their own intensity scale (a clean acquisition is brighter than a noisy one);
            # predictions are returned in it.
            target_normalization = target_normalization or Normalization.fit(targets, cfg.data)
            targets = [target_normalization.normalize(t) for t in targets]
        if hasattr(self.method, "set_normalization"):
            self.method.set_normalization(normalization)

        seed = cfg.training.seed if cfg.training.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        device = resolve_device(cfg.training.device)
        precision = resolve_precision(cfg.training.precision, device)
        fmt = memory_format(device)

        struct = getattr(self.method, "struct_kernel", None)
        sampler = PatchSampler(normalized, cfg.mode, cfg.data, rng, struct_kernel=struct, targets=targets)
        model = build_model(cfg.model, input_channels(cfg.mode), psf_sigma=cfg.deconv.psf_sigma)
        if initial_state is not None:
            model.load_state_dict(initial_state)
        model = model.to(device=device, memory_format=fmt)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.training.learning_rate)
        plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=0.5, patience=max(1, cfg.training.patience // 2)
            )
            if cfg.training.lr_schedule == "plateau"
            else None
        )
        validation = self._validation_batches(sampler, torch.Generator().manual_seed(seed + 1))

        result = TrainingResult(
            model=model,
            normalization=normalization,
            config=cfg,
            device=str(device),
            precision=precision,
            seed=seed,
            target_normalization=target_normalization if targets is not None else None,
        )
        best_state = copy.deepcopy(model.state_dict())
        steps_per_epoch = sampler.steps_per_epoch(cfg.training.batch_size)
        total_steps = steps_per_epoch * cfg.training.epochs
        epochs_without_gain = 0
        patches_seen = 0
        last_checkpoint = -math.inf
        start = time.perf_counter()
        emit(
            self.callback,
            ProgressEvent(
                "started",
                self.stage,
                RunState.TRAINING,
                0,
                cfg.training.epochs,
                0,
                steps_per_epoch,
                message=f"device {device}, {precision}",
            ),
        )

        for epoch in range(1, cfg.training.epochs + 1):
            model.train()
            losses = []
            for index, patches in enumerate(sampler.epoch(rng, cfg.training.batch_size), start=1):
                elapsed = time.perf_counter() - start
                if self.stop.requested:
                    result.stop_reason = "stopped"
                    break
                if cfg.training.max_time is not None and elapsed >= cfg.training.max_time:
                    result.stop_reason = "time_budget"
                    break
                if cfg.training.lr_schedule == "cosine":
                    self._set_cosine_lr(optimizer, result.steps, total_steps, elapsed)
                batch = self.method.make_batch(patches, generator)
                inputs = batch.inputs.to(device, non_blocking=True).contiguous(memory_format=fmt)
                batch.targets = batch.targets.to(device, non_blocking=True)
                batch.loss_mask = batch.loss_mask.to(device, non_blocking=True)
                with autocast_context(device, precision):
                    prediction = model(inputs)
                loss = self.method.loss(prediction, batch)
                penalty = self.method.penalty(model)
                if penalty is not None:
                    loss = loss + penalty
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                result.steps += 1
                patches_seen += patches.shape[0]
                emit(
                    self.callback,
                    self._event(
                        "batch", epoch, index, steps_per_epoch, losses[-1], result, optimizer, start, total_steps
                    ),
                )
            if not losses and result.stop_reason != "completed" and epoch > 1:
                break  # stopped right at an epoch boundary: the last epoch was already validated
            val_loss = self._validate(model, validation, device, precision, fmt)
            train_loss = float(np.mean(losses)) if losses else math.nan
            result.epochs_run = epoch
            result.history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    "elapsed_s": round(time.perf_counter() - start, 3),
                    "steps": result.steps,
                }
            )
            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch = val_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
                epochs_without_gain = 0
                if self.checkpoint and time.perf_counter() - last_checkpoint >= CHECKPOINT_INTERVAL:
                    self.checkpoint(_cpu_state(best_state), result.summary())
                    last_checkpoint = time.perf_counter()
            else:
                epochs_without_gain += 1
            if plateau is not None:
                plateau.step(val_loss)
            event = self._event(
                "epoch", epoch, steps_per_epoch, steps_per_epoch, train_loss, result, optimizer, start, total_steps
            )
            event.val_loss = val_loss
            emit(self.callback, event)
            if result.stop_reason != "completed":
                break
            if cfg.training.early_stopping and epochs_without_gain >= cfg.training.patience:
                result.stop_reason = "early_stopping"
                break

        result.elapsed = time.perf_counter() - start
        result.patches_per_second = patches_seen / result.elapsed if result.elapsed > 0 else 0.0
        model.load_state_dict(best_state)
        model.eval()
        result.model = model
        if self.checkpoint:
            self.checkpoint(_cpu_state(best_state), result.summary())
        if device.type == "cuda":
            torch.cuda.empty_cache()  # give GPU memory back as soon as training ends
        state = RunState.STOPPED if result.stop_reason == "stopped" else RunState.COMPLETE
        emit(
            self.callback,
            ProgressEvent(
                "finished",
                self.stage,
                state,
                result.epochs_run,
                cfg.training.epochs,
                0,
                steps_per_epoch,
                val_loss=result.best_val_loss,
                best_val_loss=result.best_val_loss,
                elapsed=result.elapsed,
                time_left=0.0,
                message=_finish_message(result),
            ),
        )
        return result

    # -- helpers -----------------------------------------------------------------------------
    def _validation_batches(self, sampler: PatchSampler, generator: torch.Generator) -> list:
        """Fixed validation batches. A blind-spot loss sees only the masked pixels, so few held-out
        blocks (a single image) give a noisy estimate, too noisy to tell a better model from a worse
        one: such blocks are repeated with independent masks, up to about one mask per pixel."""
        patches = sampler.validation_patches(np.random.default_rng(0))
        if self.config.is_blind_spot:
            per_pixel = int(np.ceil(100.0 / self.config.masking.mask_percent))
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

    def _event(self, kind, epoch, batch, batches, loss, result, optimizer, start, total_steps) -> ProgressEvent:
        elapsed = time.perf_counter() - start
        done = result.steps / max(total_steps, 1)
        time_left = elapsed / done * (1 - done) if done > 0 else None
        budget = self.config.training.max_time
        if budget is not None:
            remaining = max(0.0, budget - elapsed)
            time_left = remaining if time_left is None else min(time_left, remaining)
        return ProgressEvent(
            kind,
            self.stage,
            RunState.TRAINING,
            epoch,
            self.config.training.epochs,
            batch,
            batches,
            train_loss=loss,
            best_val_loss=result.best_val_loss if result.best_epoch else None,
            learning_rate=optimizer.param_groups[0]["lr"],
            elapsed=elapsed,
            time_left=time_left,
        )


def _cpu_state(state: dict) -> dict:
    return {key: value.detach().to("cpu") for key, value in state.items()}


def _finish_message(result: TrainingResult) -> str:
    reasons = {
        "completed": "all epochs done",
        "early_stopping": "early stopping: validation loss stopped improving",
        "time_budget": "time budget reached",
        "stopped": "stopped on request",
    }
    return (
        f"{reasons.get(result.stop_reason, result.stop_reason)}; best validation loss "
        f"{result.best_val_loss:.4g} at epoch {result.best_epoch}"
    )


def train(
    config: DenoiseConfig,
    stacks: np.ndarray | Sequence[np.ndarray],
    *,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    checkpoint: Checkpoint | None = None,
    normalization: Normalization | None = None,
    initial_state: dict | None = None,
    stage: str = "training",
    targets: np.ndarray | Sequence[np.ndarray] | None = None,
    target_normalization: Normalization | None = None,
) -> TrainingResult:
    """Train a model on ``stacks`` (one array or a list of ``(Z, Y, X)``/``(Y, X)`` arrays).

    ``targets`` are the paired images of Noise2Noise / CARE (same shapes as ``stacks``).
    """
    trainer = Trainer(config, callback=callback, stop=stop, checkpoint=checkpoint, stage=stage)
    return trainer.fit(
        stacks,
        normalization=normalization,
        initial_state=initial_state,
        targets=targets,
        target_normalization=target_normalization,
    )
