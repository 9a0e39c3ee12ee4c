"""The model a session works with: freshly trained, or imported from a run folder."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.config import DenoiseConfig
from ..engine.data import Normalization
from ..engine.model_files import LoadedModel
from ..engine.unet import UNet

METHOD_NAMES = {
    "n2v": "Noise2Void",
    "n2v2": "N2V2",
    "n2n": "Noise2Noise",
    "care": "CARE",
    "autoencoder": "Autoencoder",
    "autostructn2v": "autoStructN2V",
}
MODE_NAMES = {"2d": "2D", "2.5d": "2.5D"}


@dataclass
class TrainedModel:
    """Everything inference needs, plus what the summary card shows."""

    method: str
    mode: str
    config: DenoiseConfig  # the config of the model that predicts (stage 2 for autoStructN2V)
    normalization: Normalization
    model: UNet
    training_id: str
    run_dir: Path | None = None
    created: str = ""
    best_val_loss: float | None = None
    stop_reason: str = ""
    imported: bool = False
    #: autoStructN2V: "stage1" and, when it ran, "stage2".
    stage_models: dict[str, UNet] = field(default_factory=dict)
    mask: np.ndarray | None = None
    #: Paired methods: the target's intensity mapping; predictions are returned in the target's scale.
    target_normalization: Normalization | None = None

    @property
    def output_normalization(self) -> Normalization:
        return self.target_normalization or self.normalization

    @property
    def deconvolving(self) -> bool:
        """A DecoNoising model, which also gives a deconvolved image."""
        deconv = getattr(self.config, "deconv", None)
        return deconv is not None and deconv.psf_sigma is not None

    @property
    def title(self) -> str:
        return f"{METHOD_NAMES.get(self.method, self.method)} {MODE_NAMES.get(self.mode, self.mode)}"

    @property
    def device(self) -> str:
        return self.config.training.device

    def summary_lines(self) -> list[tuple[str, str]]:
        """(label, value) rows for the summary card."""
        rows = [
            ("Method", METHOD_NAMES.get(self.method, self.method)),
            ("Mode", MODE_NAMES.get(self.mode, self.mode)),
            ("Trained", _readable_time(self.created) or "unknown"),
            ("Best val loss", _format_loss(self.best_val_loss)),
        ]
        if self.stop_reason:
            rows.append(("Ended", self.stop_reason.replace("_", " ")))
        if self.deconvolving:
            rows.append(("DecoNoising", f"PSF sigma {self.config.deconv.psf_sigma:g} px"))
        if self.target_normalization is not None:
            rows.append(("Output scale", "the target's intensities"))
        if self.stage_models:
            rows.append(("Stages", " + ".join(sorted(self.stage_models))))
        if self.mask is not None:
            rows.append(("Mask", f"{int(self.mask.sum())} px, {' x '.join(str(s) for s in self.mask.shape)}"))
        if self.run_dir is not None:
            rows.append(("Folder", str(self.run_dir)))
        return rows

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, source: Path) -> TrainedModel:
        record = loaded.record
        summary = record.get("training") or {}
        folder = source if source.is_dir() else source.parent
        best = summary.get("best_val_loss")
        return cls(
            method=str(record.get("method", loaded.config.method)),
            mode=loaded.mode,
            config=loaded.config,
            normalization=loaded.normalization,
            model=loaded.model,
            training_id=folder.name or "imported",
            run_dir=folder,
            created=str(record.get("created", "")),
            best_val_loss=float(best) if isinstance(best, (int, float)) else None,
            stop_reason=str(summary.get("stop_reason", "")),
            imported=True,
            stage_models=dict(loaded.stage_models),
            mask=loaded.mask,
            target_normalization=loaded.target_normalization,
        )


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _readable_time(iso: str) -> str:
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
