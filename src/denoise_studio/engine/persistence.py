"""Run folders: what a training run writes, how it is read back, and who may write it.

A run folder holds ``config.json`` (method, mode, every parameter, the normalisation, package
versions, a training summary), the weights (``model.pth``; autoStructN2V: ``stage1.pth``,
``stage2.pth`` and ``mask.npy``) and ``history.csv``. Every file is written atomically with normal
permissions. Loading validates all of it and reads weights with ``weights_only=True``, so a foreign,
damaged or hand-edited file gives a clear :class:`ModelFileError` instead of running code or
producing NaN images. This module knows the formats only; it imports no pipeline.
"""

from __future__ import annotations

import csv
import io as _io
import json
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .config import AutoStructConfig, ConfigError, DenoiseConfig
from .data import Normalization, network_channels
from .io import atomic_write
from .model import TrainedModel, now_iso
from .noise_model import NoiseModel
from .registry import METHODS
from .unet import UNet, build_model

FORMAT = "denoise-studio-model"
FORMAT_VERSION = 2
#: Records of one channel are still written as format 1, which every earlier release reads; a model of
#: several channels is format 2, which an earlier release refuses rather than mispredicting.
SINGLE_CHANNEL_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pth"
STAGE1_WEIGHTS = "stage1.pth"
STAGE2_WEIGHTS = "stage2.pth"
MASK_FILE = "mask.npy"
HISTORY_FILE = "history.csv"
#: The noise model measured after training (one per channel), read by ``assess`` and the Compare estimate.
NOISE_MODEL_FILE = "noise_model.json"
LOCK_FILE = ".run.lock"
AUTOSTRUCT = "autostructn2v"
#: Files a run writes; ``overwrite`` removes exactly these (and its outputs) from an old run folder.
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, STAGE1_WEIGHTS, STAGE2_WEIGHTS, MASK_FILE, HISTORY_FILE, NOISE_MODEL_FILE)
RUN_FILE_PATTERNS = ("history_*.csv", "denoised*.tif", "deconvolved*.tif")
#: config.json is small; anything much larger is not one of ours (and may be a memory bomb).
MAX_CONFIG_BYTES = 64 * 1024 * 1024


class ModelFileError(ValueError):
    """A model directory or file is missing, foreign, corrupt or inconsistent."""


class RunFolderError(ValueError):
    """The run folder cannot be used: another run writes into it, or it holds someone else's files."""


def versions() -> dict[str, str]:
    return {
        "denoise_studio": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


# -- writing ------------------------------------------------------------------------------------
def write_json_atomic(path: Path, data: Any) -> Path:
    text = json.dumps(data, indent=2)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_weights(path: Path, state: dict) -> Path:
    # Serialised in memory first: a full disk then fails in a plain file write (an OSError that names
    # the file), not inside torch's zip writer (a RuntimeError with a C++ trace).
    buffer = _io.BytesIO()
    torch.save({key: value.detach().cpu() for key, value in state.items()}, buffer)
    data = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save_mask(path: Path, mask: np.ndarray) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(mask, dtype=bool), allow_pickle=False)

    return atomic_write(path, write)


def write_history(path: Path, history: list[dict]) -> Path | None:
    """The per-epoch losses as CSV (atomically); nothing when no epoch ran."""
    if not history:
        return None
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    text = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_text(text))


Norms = Normalization | Sequence[Normalization]


def _norm_list(value: Norms | None) -> list[Normalization]:
    if value is None:
        return []
    return [value] if isinstance(value, Normalization) else list(value)


def config_record(
    config: DenoiseConfig,
    normalization: Norms,
    summary: dict | None = None,
    extra: dict | None = None,
    target_normalization: Norms | None = None,
    input_axes: str = "",
) -> dict:
    """The ``config.json`` record; ``normalization`` is one, or one per image channel."""
    norms, targets = _norm_list(normalization), _norm_list(target_normalization)
    channels = len(norms)
    joint = channels > 1 and config.data.channels == "joint"
    in_channels, out_channels = network_channels(config.mode, channels, joint)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION if channels > 1 else SINGLE_CHANNEL_FORMAT_VERSION,
        "method": config.method,
        "mode": config.mode,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "channels": channels,
        "config": config.to_dict(),
        "normalization": norms[0].to_dict(),
        "target_normalization": targets[0].to_dict() if targets else None,
        "weights": WEIGHTS_FILE,
        "created": now_iso(),
        "versions": versions(),
        "training": summary or {},
    }
    if channels > 1:
        record["channel_normalizations"] = [norm.to_dict() for norm in norms]
        record["target_channel_normalizations"] = [norm.to_dict() for norm in targets] if targets else None
    if input_axes:
        record["input_axes"] = input_axes
    if extra:
        record.update(extra)
    return record


def save_model(
    run_dir: str | os.PathLike,
    config: DenoiseConfig,
    normalization: Norms,
    state: dict,
    summary: dict | None = None,
    extra: dict | None = None,
    target_normalization: Norms | None = None,
    input_axes: str = "",
) -> Path:
    """Write ``config.json`` and ``model.pth`` of a single-network run into ``run_dir`` (each atomically)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights(run_dir / WEIGHTS_FILE, state)
    record = config_record(config, normalization, summary, extra, target_normalization, input_axes)
    write_json_atomic(run_dir / CONFIG_FILE, record)
    return run_dir


def save_pipeline_record(
    run_dir: Path,
    config: AutoStructConfig,
    final_config: DenoiseConfig,
    normalization: Normalization,
    *,
    state: str,
    final_stage: str,
    stage_summaries: dict[str, dict | None],
    mask: np.ndarray | None,
    extraction: dict | None,
) -> Path:
    """``config.json`` (and ``mask.npy``) of an autoStructN2V run; the stage weights are written on their own."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if mask is not None:
        save_mask(run_dir / MASK_FILE, mask)
    extra = {
        "autostruct": config.to_dict(),
        "state": state,
        "weights": {
            "stage1": STAGE1_WEIGHTS if (run_dir / STAGE1_WEIGHTS).exists() else None,
            "stage2": STAGE2_WEIGHTS if (run_dir / STAGE2_WEIGHTS).exists() else None,
        },
        "final_stage": final_stage,
        "mask": None if mask is None else np.asarray(mask).astype(int).tolist(),
        "mask_file": MASK_FILE if mask is not None else None,
        "extraction": extraction,
        "stages": stage_summaries,
    }
    record = config_record(final_config, normalization, stage_summaries.get(final_stage) or {}, extra)
    record["method"] = AUTOSTRUCT
    return write_json_atomic(run_dir / CONFIG_FILE, record)


# -- the run folder -----------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_or_create(staged: Path, lock: Path) -> None:
    """Make ``lock`` appear at once with ``staged``'s content; FileExistsError when it exists."""
    try:
        os.link(staged, lock)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: an exclusive create, then the PID
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(staged.read_text())


class RunFolder:
    """Exclusive use of a run folder for one run: a lock file naming the writing process.

    A second run on the same folder is refused while the first is alive; the lock of a killed run is
    taken over. ``overwrite`` removes an old run's files first (only files a run writes), and refuses
    when one of them is an input of the new run.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()):
        self.path = Path(path)
        self.overwrite = overwrite
        self.inputs = [Path(p) for p in inputs]
        self._locked = False

    def __enter__(self) -> RunFolder:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{path} is a file, not a folder; choose another run folder")
        path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._prepare()
        except BaseException:
            self.release()
            raise

    def _take_lock(self) -> None:
        lock = self.path / LOCK_FILE
        for _ in range(2):
            # The lock appears with the PID already in it (a hard link of a finished file), so another
            # process never reads an empty lock and takes it for a dead one.
            staged = self.path / f".run.lock.{os.getpid()}"
            staged.write_text(str(os.getpid()))
            try:
                _link_or_create(staged, lock)
            except FileExistsError:
                try:
                    pid = int(lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise RunFolderError(
                        f"{self.path}: another training (process {pid}) is writing into this folder; "
                        "wait for it to end or choose another run folder"
                    ) from None
                if pid == os.getpid():
                    raise RunFolderError(f"{self.path}: a training of this program already writes here") from None
                lock.unlink(missing_ok=True)  # left by a killed run
                continue
            finally:
                staged.unlink(missing_ok=True)
            self._locked = True
            return
        raise RunFolderError(f"{self.path}: could not lock the run folder")

    def old_run_files(self) -> list[Path]:
        found = [self.path / name for name in RUN_FILES if (self.path / name).exists()]
        for pattern in RUN_FILE_PATTERNS:
            found.extend(sorted(self.path.glob(pattern)))
        return found

    def _prepare(self) -> None:
        others = [p for p in self.path.iterdir() if p.name != LOCK_FILE]
        if not others:
            return
        if not self.overwrite:
            raise RunFolderError(f"{self.path} already exists; choose another run folder or allow overwriting it")
        try:
            read_record(self.path)
        except ModelFileError:
            # Not one of our run folders: its files are someone else's, whatever their names.
            raise RunFolderError(
                f"{self.path} holds files but no denoise-studio run (no config.json of ours); nothing there is "
                "overwritten: choose an empty or new run folder"
            ) from None
        old = self.old_run_files()
        inputs = {p.resolve() for p in self.inputs if p.exists()}
        clash = [p for p in old if p.resolve() in inputs]
        if clash:
            raise RunFolderError(f"{clash[0]} is an input of this run; it is not overwritten. Choose another folder")
        for file in old:
            file.unlink()

    def release(self) -> None:
        if self._locked:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            self._locked = False

    def discard(self) -> None:
        """Remove what this run wrote (a run that kept no model leaves no half-written folder)."""
        for file in self.old_run_files():
            file.unlink(missing_ok=True)


# -- reading ------------------------------------------------------------------------------------
def read_record(path: str | os.PathLike) -> tuple[Path, dict]:
    """Find and parse ``config.json`` (``path`` is a run directory or the JSON file itself)."""
    path = Path(path)
    config_path = path / CONFIG_FILE if path.is_dir() else path
    if not config_path.exists():
        raise ModelFileError(f"{path}: no {CONFIG_FILE} found; is this a denoise-studio model folder?")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{config_path}: far too large for a model configuration (foreign file)")
    try:
        record = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{config_path}: corrupt model configuration ({err})") from None
    except RecursionError:
        raise ModelFileError(f"{config_path}: corrupt model configuration (nested too deeply)") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelFileError(f"{config_path}: not a denoise-studio model configuration (foreign file)")
    version = record.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{config_path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{config_path}: written by a newer denoise-studio (format {version}); upgrade to load it")
    method = record.get("method")
    if method not in METHODS:
        raise ModelFileError(f"{config_path}: unknown method {method!r} (known: {', '.join(METHODS)})")
    return config_path, record


def load_state(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated zip archives, foreign objects...
        raise ModelFileError(f"{path}: corrupt or foreign weights file ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: not a state dict of tensors")
    return state


def build_checked_model(config: DenoiseConfig, state: dict, source: Path, channels: int = 1) -> UNet:
    """The network for ``config`` (and ``channels`` image channels) with ``state`` loaded, after checking
    names, shapes, dtypes and values."""
    in_channels, out_channels = network_channels(config.mode, channels, config.data.channels == "joint")
    dims = 3 if config.mode == "3d" else 2
    model = build_model(config.model, in_channels, psf_sigma=config.psf_sigma, out_channels=out_channels, dims=dims)
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
    wrong_type = [k for k in expected if expected[k].is_floating_point() and not state[k].is_floating_point()]
    if wrong_type:
        raise ModelFileError(
            f"{source}: weights must be floating point, {wrong_type[0]} is {state[wrong_type[0]].dtype}"
        )
    damaged = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if damaged:
        raise ModelFileError(f"{source}: weights contain NaN or Inf values ({damaged[0]}); the file is damaged")
    model.load_state_dict(state)
    return model.eval()


def _weights_path(config_path: Path, name: Any, what: str) -> Path:
    if not isinstance(name, str) or not name:
        raise ModelFileError(f"{config_path}: {what} must name a weights file, got {name!r}")
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise ModelFileError(f"{config_path}: {what} must be a file inside the run folder, got {name!r}")
    return config_path.parent / path


def save_noise_models(run_dir: str | os.PathLike, models: Sequence[NoiseModel]) -> Path:
    """``noise_model.json``: the noise model of each image channel, written atomically."""
    record = {"format": FORMAT, "noise_models": [model.to_dict() for model in models]}
    return write_json_atomic(Path(run_dir) / NOISE_MODEL_FILE, record)


def read_noise_models(run_dir: str | os.PathLike) -> list[NoiseModel]:
    """The noise models stored beside a model (empty when it has none: trained before they were measured)."""
    path = Path(run_dir) / NOISE_MODEL_FILE
    if not path.exists():
        return []
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError("far too large for a noise model")
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError("not a denoise-studio noise model")
        return [NoiseModel.from_dict(item) for item in record["noise_models"]]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise ModelFileError(
            f"{path}: damaged noise model ({err}); delete the file to load the model without it"
        ) from None


def load_model(path: str | os.PathLike, weights: str | os.PathLike | None = None) -> TrainedModel:
    """Load a run folder (or a ``config.json``); ``weights`` replaces the final network's weights file."""
    config_path, record = read_record(path)
    model = _load_pipeline(config_path, record, weights) if record["method"] == AUTOSTRUCT else (
        _load_single(config_path, record, weights)
    )
    model.noise_models = read_noise_models(config_path.parent)
    return model


def _load_single(config_path: Path, record: dict, weights: str | os.PathLike | None) -> TrainedModel:
    try:
        config = DenoiseConfig.from_dict(record["config"])
        normalization = Normalization.from_dict(record["normalization"])
        target = record.get("target_normalization")
        target_normalization = Normalization.from_dict(target) if target else None
        channel_norms, target_channel_norms = _channel_records(record)
    except ConfigError as err:
        raise ModelFileError(f"{config_path}: invalid configuration: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{config_path}: invalid or incomplete model configuration ({err})") from None
    if weights:
        weights_path = Path(weights)
    else:
        weights_path = _weights_path(config_path, record.get("weights", WEIGHTS_FILE), "weights")
    network = build_checked_model(config, load_state(weights_path), weights_path, max(1, len(channel_norms)))
    return TrainedModel(
        method=config.method,
        config=config,
        normalization=normalization,
        network=network,
        target_normalization=target_normalization,
        run_dir=config_path.parent,
        created=str(record.get("created", "")),
        summary=_summary(record.get("training")),
        imported=True,
        channel_normalizations=channel_norms,
        target_channel_normalizations=target_channel_norms,
        input_axes=str(record.get("input_axes", "")),
    )


def _channel_records(record: dict) -> tuple[list[Normalization], list[Normalization] | None]:
    """The per-channel normalisations of a model of several channels (empty for one channel)."""
    stored = record.get("channel_normalizations")
    if stored is None:
        return [], None
    if not isinstance(stored, list) or len(stored) < 2:
        raise ValueError("channel_normalizations must list one normalisation per channel")
    channels = record.get("channels", len(stored))
    if channels != len(stored):
        raise ValueError(f"channels is {channels!r} but {len(stored)} channel normalisations are stored")
    norms = [Normalization.from_dict(item) for item in stored]
    targets = record.get("target_channel_normalizations")
    if targets is None:
        return norms, None
    if not isinstance(targets, list) or len(targets) != len(norms):
        raise ValueError("target_channel_normalizations must list one normalisation per channel")
    return norms, [Normalization.from_dict(item) for item in targets]


def _summary(value: Any) -> dict:
    return dict(value) if isinstance(value, dict) else {}


def _load_pipeline(config_path: Path, record: dict, weights: str | os.PathLike | None) -> TrainedModel:
    """An autoStructN2V run: the final network for prediction, plus the stage-1 network."""
    try:
        autostruct = AutoStructConfig.from_dict(record["autostruct"])
        final_config = DenoiseConfig.from_dict(record["config"])
        normalization = Normalization.from_dict(record["normalization"])
    except ConfigError as err:
        raise ModelFileError(f"{config_path}: invalid autoStructN2V configuration: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{config_path}: invalid or incomplete autoStructN2V configuration ({err})") from None
    files = record.get("weights") or {}
    if not isinstance(files, dict):
        raise ModelFileError(f"{config_path}: weights must map stage1/stage2 to weights files, got {files!r}")
    final_stage = record.get("final_stage", "stage2" if files.get("stage2") else "stage1")
    if final_stage not in ("stage1", "stage2"):
        raise ModelFileError(f"{config_path}: final_stage must be 'stage1' or 'stage2', got {final_stage!r}")
    networks: dict[str, UNet] = {}
    for stage, config in (("stage1", autostruct.stage1), ("stage2", final_config)):
        name = files.get(stage)
        path = Path(weights) if weights and stage == final_stage else None
        if path is None and name:
            path = _weights_path(config_path, name, f"weights.{stage}")
        if path is not None:
            networks[stage] = build_checked_model(config, load_state(path), path)
    if final_stage not in networks:
        raise ModelFileError(f"{config_path}: the {final_stage} weights are missing")
    mask = _read_mask(config_path, record.get("mask"))
    stages = record.get("stages") if isinstance(record.get("stages"), dict) else {}
    return TrainedModel(
        method=AUTOSTRUCT,
        config=final_config if final_stage == "stage2" else autostruct.stage1,
        normalization=normalization,
        network=networks[final_stage],
        stage_networks=networks,
        mask=mask,
        run_dir=config_path.parent,
        created=str(record.get("created", "")),
        summary=_summary(stages.get(final_stage) or record.get("training")),
        imported=True,
    )


def _read_mask(config_path: Path, stored: Any) -> np.ndarray | None:
    mask_path = config_path.parent / MASK_FILE
    try:
        if stored is None and mask_path.exists():
            return np.load(mask_path, allow_pickle=False).astype(bool)
        if stored is None:
            return None
        mask = np.asarray(stored)
        if mask.dtype == object or mask.ndim not in (2, 3):
            raise ValueError("not a grid")
        return mask.astype(bool)
    except (ValueError, OSError) as err:
        raise ModelFileError(f"{config_path}: the struct mask is damaged ({err}); expected planes x K x K") from None


def load_pipeline_config(path: str | os.PathLike) -> AutoStructConfig | None:
    """The autoStructN2V config of a run folder, or None for a single-network run."""
    config_path, record = read_record(path)
    if record["method"] != AUTOSTRUCT:
        return None
    try:
        return AutoStructConfig.from_dict(record["autostruct"])
    except (ConfigError, KeyError, TypeError) as err:
        raise ModelFileError(f"{config_path}: invalid autoStructN2V configuration: {err}") from None
