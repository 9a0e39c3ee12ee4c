"""Model files: a run directory with ``config.json`` and ``model.pth`` (a state dict only).

``config.json`` holds the method, mode, every parameter, the normalisation, the package versions
and a training summary. Loading validates all of it and loads weights with ``weights_only=True``,
so a foreign or corrupt file gives a clear :class:`ModelFileError` instead of running code.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .config import ConfigError, DenoiseConfig
from .data import Normalization, input_channels
from .io import atomic_path
from .unet import UNet, build_model

FORMAT = "denoise-studio-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pth"


class ModelFileError(ValueError):
    """A model directory or file is missing, foreign, corrupt or inconsistent."""


@dataclass
class LoadedModel:
    config: DenoiseConfig
    normalization: Normalization
    model: UNet
    record: dict = field(default_factory=dict)
    #: autoStructN2V: every stage's model ("stage1", "stage2") and the approved struct mask.
    stage_models: dict[str, UNet] = field(default_factory=dict)
    mask: np.ndarray | None = None
    #: Supervised methods predict in their target's intensity scale (None: the input's).
    target_normalization: Normalization | None = None

    @property
    def output_normalization(self) -> Normalization:
        return self.target_normalization or self.normalization

    @property
    def mode(self) -> str:
        return self.config.mode


def versions() -> dict[str, str]:
    return {
        "denoise_studio": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def write_json_atomic(path: Path, data: Any) -> None:
    target, tmp = atomic_path(path)
    try:
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_weights(path: Path, state: dict) -> None:
    target, tmp = atomic_path(path)
    try:
        torch.save({key: value.detach().cpu() for key, value in state.items()}, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def config_record(
    config: DenoiseConfig,
    normalization: Normalization,
    summary: dict | None = None,
    extra: dict | None = None,
    target_normalization: Normalization | None = None,
) -> dict:
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": config.method,
        "mode": config.mode,
        "in_channels": input_channels(config.mode),
        "config": config.to_dict(),
        "normalization": normalization.to_dict(),
        "target_normalization": None if target_normalization is None else target_normalization.to_dict(),
        "weights": WEIGHTS_FILE,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "training": summary or {},
    }
    if extra:
        record.update(extra)
    return record


def save_model(
    run_dir: str | os.PathLike,
    config: DenoiseConfig,
    normalization: Normalization,
    state: dict,
    summary: dict | None = None,
    extra: dict | None = None,
    target_normalization: Normalization | None = None,
) -> Path:
    """Write ``config.json`` and ``model.pth`` into ``run_dir`` (each atomically)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(run_dir / WEIGHTS_FILE, state)
    record = config_record(config, normalization, summary, extra, target_normalization)
    write_json_atomic(run_dir / CONFIG_FILE, record)
    return run_dir


def read_record(path: str | os.PathLike) -> tuple[Path, dict]:
    """Find and parse ``config.json`` (``path`` is a run directory or the JSON file itself)."""
    path = Path(path)
    config_path = path / CONFIG_FILE if path.is_dir() else path
    if not config_path.exists():
        raise ModelFileError(f"{path}: no {CONFIG_FILE} found; is this a denoise-studio model folder?")
    try:
        record = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{config_path}: corrupt model configuration ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelFileError(f"{config_path}: not a denoise-studio model configuration (foreign file)")
    version = record.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{config_path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path}: written by a newer denoise-studio (format {record['format_version']}); upgrade to load it"
        )
    return config_path, record


def load_state(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated zip archives, foreign objects...
        raise ModelFileError(f"{path}: corrupt or foreign weights file ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: not a state dict of tensors")
    return state


def build_checked_model(config: DenoiseConfig, state: dict, source: Path) -> UNet:
    model = build_model(config.model, input_channels(config.mode), psf_sigma=config.deconv.psf_sigma)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            details.append(f"unexpected {', '.join(unexpected[:3])}")
        if mismatched:
            details.append(f"wrong shape for {', '.join(mismatched[:3])}")
        raise ModelFileError(f"{source}: weights do not match the configuration ({'; '.join(details)})")
    model.load_state_dict(state)
    return model.eval()


def load_model(path: str | os.PathLike, weights: str | os.PathLike | None = None) -> LoadedModel:
    """Load a run directory (or a ``config.json`` plus an explicit ``weights`` file)."""
    config_path, record = read_record(path)
    if record.get("method") == "autostructn2v":
        from .methods.autostruct import load_autostruct

        return load_autostruct(config_path, record)
    try:
        config = DenoiseConfig.from_dict(record["config"])
        normalization = Normalization.from_dict(record["normalization"])
        target = record.get("target_normalization")
        target_normalization = Normalization.from_dict(target) if target else None
    except ConfigError as err:
        raise ModelFileError(f"{config_path}: invalid configuration: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{config_path}: invalid or incomplete model configuration ({err})") from None
    weights_path = Path(weights) if weights else config_path.parent / record.get("weights", WEIGHTS_FILE)
    model = build_checked_model(config, load_state(weights_path), weights_path)
    return LoadedModel(
        config=config,
        normalization=normalization,
        model=model,
        record=record,
        target_normalization=target_normalization,
    )
