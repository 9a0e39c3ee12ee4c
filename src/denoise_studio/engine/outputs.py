"""A model's outputs on an image, predicted together and written atomically beside each other.

The command line writes ``denoised.tif`` (and ``deconvolved.tif``) into the run folder; napari writes
``<layer>_denoised.tif`` into a results folder and never replaces an earlier result. Both go through
:func:`predict_and_write`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .events import ProgressCallback, StopRequest
from .io import write_tiff
from .model import STAGE1, TrainedModel

#: File tag of each output.
OUTPUT_TAGS = {"denoised": "denoised", "deconvolved": "deconvolved", STAGE1: "stage1_denoised"}


@dataclass
class Prediction:
    """Arrays keyed by output ("denoised"; "deconvolved" for DecoNoising; "stage1" for a comparison)
    and the files they were written to."""

    source: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return stem or "image"


def free_path(folder: Path, stem: str, suffix: str = ".tif") -> Path:
    """``folder/stem.tif``, or ``stem-2.tif`` and so on when that exists (results are never overwritten)."""
    candidate, index = folder / f"{stem}{suffix}", 2
    while candidate.exists():
        candidate, index = folder / f"{stem}-{index}{suffix}", index + 1
    return candidate


def output_path(folder: Path, output: str, stem: str | None = None, unique: bool = False) -> Path:
    tag = OUTPUT_TAGS.get(output, output)
    name = f"{safe_stem(stem)}_{tag}" if stem else tag
    return free_path(folder, name) if unique else folder / f"{name}.tif"


def wanted_outputs(model: TrainedModel, with_stage1: bool = False) -> tuple[str, ...]:
    """The model's outputs, plus "stage1" when asked for and it differs from the final network."""
    extra = (STAGE1,) if with_stage1 and model.has_separate_stage1 else ()
    return (*model.outputs, *extra)


def predict_and_write(
    model: TrainedModel,
    image: np.ndarray,
    folder: str | Path | None,
    *,
    source: str = "image",
    stem: str | None = None,
    with_stage1: bool = False,
    unique: bool = False,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
) -> Prediction:
    """Every output of ``model`` on ``image`` (one forward pass per tile for all the network's outputs),
    each written as a TIFF into ``folder`` when one is given. Stopping writes nothing."""
    arrays = model.predict_outputs(image, wanted_outputs(model, with_stage1), callback=callback, stop=stop)
    result = Prediction(source, arrays)
    if folder is not None:
        folder = Path(folder)
        for name, array in arrays.items():
            result.files[name] = write_tiff(output_path(folder, name, stem, unique), array)
    return result


def predict_file_outputs(
    model: TrainedModel,
    path: str | Path,
    folder: str | Path,
    *,
    with_stage1: bool = False,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
) -> Prediction:
    """Every output of ``model`` on an image file, streamed plane by plane to new files in ``folder``
    (bounded memory: each output is its own pass over the file)."""
    path, folder = Path(path), Path(folder)
    result = Prediction(path.stem)
    for which in wanted_outputs(model, with_stage1):
        target = output_path(folder, which, path.stem, unique=True)
        result.files[which] = model.predictor(which).predict_file(path, target, callback=callback, stop=stop)
    return result
