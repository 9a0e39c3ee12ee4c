"""Applying a trained model: engine calls for the worker thread, and result layers for the GUI thread.

Results are written to ``<workspace>/results/<training-id>/`` and shown as new layers next to
their input; an input layer is never replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
import torch

from ..engine.events import ProgressCallback, StopRequest
from ..engine.io import write_tiff
from ..engine.prediction import Predictor
from .session import Session, unique_layer_name
from .trained_model import METHOD_NAMES, TrainedModel

STAGE_LABELS = {"stage1": "stage 1", "stage2": "stage 2"}
#: File tag of each output ("final" is the denoised image of the final model).
OUTPUT_TAGS = {"final": "denoised", "deconvolved": "deconvolved", "stage1": "stage1_denoised"}


@dataclass
class Prediction:
    """Arrays keyed by what made them ("final"; "deconvolved" for DecoNoising; "stage1" for a comparison),
    and their files."""

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


def release_device_memory(*networks: torch.nn.Module) -> None:
    """Move networks back to the CPU and hand cached GPU memory back: napari may stay open for hours."""
    for network in networks:
        network.to("cpu")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def all_networks(model: TrainedModel) -> list[torch.nn.Module]:
    return [model.model, *(n for n in model.stage_models.values() if n is not model.model)]


def predictor_for(model: TrainedModel, which: str = "final") -> Predictor:
    if which == "stage1":
        return Predictor(model.stage_models["stage1"], model.normalization, model.mode, device=model.device)
    return Predictor(
        model.model,
        model.normalization,
        model.mode,
        device=model.device,
        # Paired models answer in the target's intensity scale (a clean image is brighter than a noisy one).
        output_normalization=model.output_normalization,
        output="deconvolved" if which == "deconvolved" else "denoised",
    )


def wanted_outputs(model: TrainedModel, with_stage1: bool) -> list[str]:
    """"final"; "deconvolved" for DecoNoising; "stage1" when asked for and it differs from the final model."""
    outputs = ["final"]
    if model.deconvolving:
        outputs.append("deconvolved")
    if with_stage1 and "stage1" in model.stage_models and model.stage_models["stage1"] is not model.model:
        outputs.append("stage1")
    return outputs


def predict_image(
    model: TrainedModel,
    image: np.ndarray,
    source: str,
    out_dir: Path,
    callback: ProgressCallback,
    stop: StopRequest,
    with_stage1: bool = False,
) -> Prediction:
    """Denoise an array (worker thread) and write each output as a TIFF into ``out_dir``."""
    result = Prediction(source)
    try:
        for which in wanted_outputs(model, with_stage1):
            denoised = predictor_for(model, which).predict(image, callback=callback, stop=stop)
            tag = OUTPUT_TAGS[which]
            result.arrays[which] = denoised
            result.files[which] = write_tiff(free_path(out_dir, f"{safe_stem(source)}_{tag}"), denoised)
    finally:
        release_device_memory(*all_networks(model))
    return result


def predict_file(
    model: TrainedModel,
    path: Path,
    out_dir: Path,
    callback: ProgressCallback,
    stop: StopRequest,
    with_stage1: bool = False,
    load_result: bool = True,
) -> Prediction:
    """Denoise a TIFF slice by slice straight to disk (bounded memory); optionally read the result back."""
    result = Prediction(path.stem)
    try:
        for which in wanted_outputs(model, with_stage1):
            tag = OUTPUT_TAGS[which]
            target = free_path(out_dir, f"{safe_stem(path.stem)}_{tag}")
            result.files[which] = predictor_for(model, which).predict_file(path, target, callback=callback, stop=stop)
            if load_result:
                result.arrays[which] = np.squeeze(tifffile.imread(result.files[which]))
    finally:
        release_device_memory(*all_networks(model))
    return result


def result_layer_name(model: TrainedModel, source: str, which: str) -> str:
    method = METHOD_NAMES.get(model.method, model.method)
    if which == "final":
        return f"{source} denoised ({method})"
    if which == "deconvolved":
        return f"{source} deconvolved ({method})"
    return f"{source} denoised ({STAGE_LABELS.get(which, which)})"


def add_result_layers(session: Session, model: TrainedModel, prediction: Prediction) -> list[str]:
    """Add each result array as a new layer (GUI thread); returns the layer names, final first."""
    viewer = session.viewer
    source_layer = viewer.layers[prediction.source] if prediction.source in viewer.layers else None  # noqa: SIM401
    names = []
    for which in sorted(prediction.arrays, key=lambda w: w != "final"):
        style = {}
        # A paired model answers in the target's scale, so the input's display range would not fit it.
        if source_layer is not None and model.target_normalization is None:
            # Same colormap and display range as the input, so the two compare at a glance.
            style = {"colormap": source_layer.colormap.name, "contrast_limits": source_layer.contrast_limits}
        name = unique_layer_name(viewer, result_layer_name(model, prediction.source, which))
        viewer.add_image(
            prediction.arrays[which],
            name=name,
            metadata={
                "denoise_studio": {
                    "source": prediction.source,
                    "training_id": model.training_id,
                    "output": which,
                    "file": str(prediction.files.get(which, "")),
                }
            },
            **style,
        )
        names.append(name)
    return names
