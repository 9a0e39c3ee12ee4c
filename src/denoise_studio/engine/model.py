"""The one record of a trained model: what ``train`` returns and ``load_model`` restores.

It holds everything prediction needs (networks, normalisations, mode, the final config) and what a
model card shows (method, when, how training ended). The CLI, the Python API and the napari docks
all work with this record.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .augment import test_time_transforms
from .config import DenoiseConfig
from .data import Normalization, input_channels
from .errors import ConfigError
from .events import ProgressCallback, StopRequest
from .masking import struct_kernel_array
from .noise_model import NoiseModel
from .prediction import Predictor, check_finite_output
from .registry import method_label, mode_label, stop_reason_text
from .unet import UNet

#: What a model can be asked for: its outputs, and "stage1" (autoStructN2V's first network) for a comparison.
STAGE1 = "stage1"


@dataclass
class TrainedModel:
    method: str
    config: DenoiseConfig  # the config of the network that predicts (stage 2 for autoStructN2V)
    normalization: Normalization
    network: UNet
    #: Paired methods answer in their target's intensity scale (None: the input's).
    target_normalization: Normalization | None = None
    #: autoStructN2V: every stage's network ("stage1" and, when it trained, "stage2").
    stage_networks: dict[str, UNet] = field(default_factory=dict)
    mask: np.ndarray | None = None
    run_dir: Path | None = None
    created: str = ""
    #: The training summary of the final network (best_val_loss, stop_reason, steps, ...).
    summary: dict = field(default_factory=dict)
    #: Read from a run folder rather than trained in this process.
    imported: bool = False
    #: One normalisation per image channel the model was trained on (empty: one channel, ``normalization``).
    channel_normalizations: list[Normalization] = field(default_factory=list)
    target_channel_normalizations: list[Normalization] | None = None
    #: The axes of the images it was trained on (for the model card; prediction takes any axes).
    input_axes: str = ""
    #: The noise of the training images, measured against the model's result: one per channel
    #: (empty: not measured, e.g. paired methods, whose output is in the target's scale).
    noise_models: list[NoiseModel] = field(default_factory=list)

    @property
    def noise_model(self) -> NoiseModel | None:
        """The first channel's noise model (the only one of a single-channel model)."""
        return self.noise_models[0] if self.noise_models else None

    # -- what it is ------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def output_normalization(self) -> Normalization:
        return self.target_normalization or self.normalization

    @property
    def normalizations(self) -> list[Normalization]:
        return list(self.channel_normalizations) or [self.normalization]

    @property
    def output_normalizations(self) -> list[Normalization]:
        if self.target_channel_normalizations:
            return list(self.target_channel_normalizations)
        return [self.target_normalization] if self.target_normalization is not None else self.normalizations

    @property
    def channels(self) -> int:
        """Image channels the model takes (and gives back)."""
        return len(self.normalizations)

    @property
    def joint(self) -> bool:
        """The channels go through the network together (else each on its own, the same network)."""
        return self.channels > 1 and self.config.data.channels == "joint"

    @property
    def deconvolving(self) -> bool:
        """A DecoNoising model, which also gives a deconvolved image."""
        return self.config.psf_sigma is not None

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("denoised", "deconvolved") if self.deconvolving else ("denoised",)

    @property
    def has_separate_stage1(self) -> bool:
        stage1 = self.stage_networks.get(STAGE1)
        return stage1 is not None and stage1 is not self.network

    @property
    def best_val_loss(self) -> float | None:
        value = self.summary.get("best_val_loss")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def stop_reason(self) -> str:
        return str(self.summary.get("stop_reason", ""))

    @property
    def name(self) -> str:
        """A short identifier: the run folder's name."""
        return self.run_dir.name if self.run_dir is not None and self.run_dir.name else "model"

    @property
    def title(self) -> str:
        return f"{method_label(self.method)} {mode_label(self.mode)}"

    @property
    def device(self) -> str:
        return self.config.training.device

    def networks(self) -> list[UNet]:
        return [self.network, *(n for n in self.stage_networks.values() if n is not self.network)]

    def release_device_memory(self) -> None:
        """Move the networks back to the CPU and hand cached GPU memory back (napari may stay open for hours)."""
        for network in self.networks():
            network.to("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def test_time_transforms(self) -> tuple[int, ...]:
        """The flips/rotations test-time augmentation runs the network under: those it was trained
        under (8; 4 flips for structured noise; with a struct mask the ones that keep it)."""
        data = self.config.data
        masking = self.config.masking  # None for the paired methods
        kernel = struct_kernel_array(masking.struct_mask, input_channels(self.mode)) if masking else None
        return test_time_transforms(data.augment, data.augment_rotate, kernel)

    # -- prediction ------------------------------------------------------------------------------
    def predictor(
        self,
        outputs: str | Sequence[str] = "denoised",
        *,
        tile_size: int = 256,
        batch_size: int = 4,
        device: str | None = None,
        tta: bool | None = None,
    ) -> Predictor:
        """A predictor for ``outputs`` (``"denoised"``, ``"deconvolved"``, or ``"stage1"`` alone);
        ``tta``: average the network's answers under :attr:`test_time_transforms` (that many times slower);
        None: the config's ``prediction.tta`` (on for the High Quality preset)."""
        if tta is None:
            tta = self.config.prediction.tta
        wanted = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        device = device or self.device
        if wanted == (STAGE1,):
            if STAGE1 not in self.stage_networks:
                raise ConfigError("output: this model has no stage-1 network (only autoStructN2V runs have one)")
            # Stage 1 learns the structured noise without augmentation: it runs once, tta or not.
            return Predictor(
                self.stage_networks[STAGE1], self.normalization, self.mode, tile_size=tile_size,
                batch_size=batch_size, device=device,
            )  # fmt: skip
        unknown = [name for name in wanted if name not in self.outputs]
        if unknown:
            raise ConfigError(
                f"output: {unknown[0]!r} is not available from this {self.title} model "
                f"(it gives: {', '.join(self.outputs)}); 'deconvolved' needs a DecoNoising model"
            )
        return Predictor(
            self.network, self.normalizations, self.mode, tile_size=tile_size, batch_size=batch_size,
            device=device, output_normalization=self.output_normalizations, outputs=wanted, joint=self.joint,
            transforms=self.test_time_transforms if tta else (0,),
        )  # fmt: skip

    def predict(
        self,
        image: np.ndarray,
        output: str = "denoised",
        *,
        axes: str | None = None,
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
        tile_size: int = 256,
        batch_size: int = 4,
        tta: bool | None = None,
    ) -> np.ndarray:
        """Denoise an image of ``axes`` (e.g. "CZYX"; None: a ``(Y, X)`` image or ``(Z, Y, X)`` stack);
        returns float32 of the same shape. ``tta``: test-time augmentation (see :meth:`predictor`)."""
        return self.predict_outputs(
            image, (output,), axes=axes, callback=callback, stop=stop, tile_size=tile_size, batch_size=batch_size,
            tta=tta,
        )[output]

    def predict_outputs(
        self,
        image: np.ndarray,
        outputs: Sequence[str] | None = None,
        *,
        axes: str | None = None,
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
        tile_size: int = 256,
        batch_size: int = 4,
        tta: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Every output asked for (default: all the model gives) from one forward pass per tile (per
        transform with ``tta``)."""
        outputs = tuple(outputs or self.outputs)
        results: dict[str, np.ndarray] = {}
        network_outputs = tuple(name for name in outputs if name != STAGE1)
        if network_outputs:
            predictor = self.predictor(network_outputs, tile_size=tile_size, batch_size=batch_size, tta=tta)
            results.update(predictor.predict_all(image, axes=axes, callback=callback, stop=stop))
        if STAGE1 in outputs:
            predictor = self.predictor(STAGE1, tile_size=tile_size, batch_size=batch_size)
            results[STAGE1] = predictor.predict(image, axes=axes, callback=callback, stop=stop)
        for name, array in results.items():
            check_finite_output(array, name)
        return {name: results[name] for name in outputs}

    # -- the model card --------------------------------------------------------------------------
    def summary_lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for a model card."""
        channels = [("Channels", f"{self.channels}, {'joint' if self.joint else 'independent'}")]
        rows = [
            ("Method", method_label(self.method)),
            ("Mode", mode_label(self.mode)),
            *(channels if self.channels > 1 else []),
            ("Trained", readable_time(self.created) or "unknown"),
            ("Best val loss", _format_loss(self.best_val_loss)),
        ]
        if self.stage_networks:
            # Stage 2 learns on a different blind-spot layout: its loss cannot be compared with stage 1's.
            rows[-1] = (f"Best val loss ({_final_stage(self)})", _format_loss(self.best_val_loss))
        if self.summary.get("memory_notes"):
            rows.append(("Memory", str(self.summary["memory_notes"][-1])))
        if self.summary.get("initialized_from"):
            rows.append(("Continued from", str(self.summary["initialized_from"])))
        if self.summary.get("adapted_from"):
            rows.append(("Adapted from", f"{self.summary['adapted_from']} (GainTuning)"))
            before = self.summary.get("initial_val_loss")
            if before is not None:
                after = _format_loss(self.best_val_loss)
                rows.append(("Held-out loss", f"{_format_loss(before)} before, {after} after"))
        if self.stop_reason:
            rows.append(("Ended", stop_reason_text(self.stop_reason)))
        if self.deconvolving:
            rows.append(("DecoNoising", f"PSF sigma {self.config.psf_sigma:g} px"))
        if self.target_normalization is not None:
            rows.append(("Output scale", "the target's intensities"))
        if self.stage_networks:
            rows.append(("Stages", " + ".join(sorted(self.stage_networks))))
        for index, noise in enumerate(self.noise_models):
            label = "Noise model" if len(self.noise_models) == 1 else f"Noise model (channel {index})"
            rows.append((label, noise.describe()))
        if self.mask is not None:
            rows.append(("Mask", f"{int(self.mask.sum())} px, {' x '.join(str(s) for s in self.mask.shape)}"))
        if self.run_dir is not None:
            rows.append(("Folder", str(self.run_dir)))
        elif self.summary.get("bmz_package"):
            rows.append(("Package", str(self.summary["bmz_package"])))
        return rows


def _final_stage(model: TrainedModel) -> str:
    return "stage 2" if "stage2" in model.stage_networks and model.network is model.stage_networks["stage2"] else (
        "stage 1"
    )


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def readable_time(iso: str) -> str:
    try:
        moment = _dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M")


def _format_loss(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"
