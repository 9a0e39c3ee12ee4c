"""Applying a trained model from the docks: engine calls for the worker thread, result layers for the GUI thread.

Results are written to ``<workspace>/results/<run>/`` and shown as new layers next to their input;
an input layer is never replaced, and an earlier result file never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from ...api import adapt
from ...engine.axes import ImageMeta
from ...engine.batch import BatchResult, predict_files
from ...engine.events import ProgressCallback, StopRequest
from ...engine.lazy import is_on_disk
from ...engine.model import TrainedModel
from ...engine.outputs import Prediction, predict_and_write, predict_file_outputs, predict_lazy_outputs
from ...engine.registry import method_label
from ...engine.run import RunResult
from ..state.session import Session, layer_shape, read_pixels, unique_layer_name

STAGE_LABELS = {"stage1": "stage 1", "stage2": "stage 2"}


def release_device_memory() -> None:
    """Hand cached GPU memory back: napari may stay open for hours."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def predict_image(
    model: TrainedModel,
    image,
    source: str,
    out_dir: Path,
    callback: ProgressCallback,
    stop: StopRequest,
    with_stage1: bool = False,
    axes: str | None = None,
    meta: ImageMeta | None = None,
    tta: bool | None = None,
) -> Prediction:
    """Denoise an array of ``axes`` (worker thread: a lazy layer's array is read here) and write each
    output into ``out_dir``: an OME-TIFF with ``meta``'s pixel sizes when the axes are known, else a TIFF.

    A lazy layer (dask, zarr: an OME-Zarr of any size) is never loaded: it is predicted block by block
    into OME-Zarrs in ``out_dir``, and the result layers show those files lazily."""
    try:
        if is_on_disk(image):
            return predict_lazy_outputs(
                model, image, out_dir, axes=axes, meta=meta, source=source, stem=source, with_stage1=with_stage1,
                callback=callback, stop=stop, tta=tta,
            )  # fmt: skip
        return predict_and_write(
            model, read_pixels(image), out_dir, axes=axes, meta=meta, source=source, stem=source,
            with_stage1=with_stage1, unique=True, callback=callback, stop=stop, tta=tta,
        )  # fmt: skip
    finally:
        model.release_device_memory()


def predict_file(
    model: TrainedModel,
    path: Path,
    out_dir: Path,
    callback: ProgressCallback,
    stop: StopRequest,
    with_stage1: bool = False,
    load_result: bool = True,
    axes: str | None = None,
    tta: bool | None = None,
) -> Prediction:
    """Denoise a TIFF to disk (a single-channel stack slice by slice, in bounded memory); optionally read
    the result back. ``axes`` overrides the file's own (None: the file's, or the guess)."""
    try:
        result = predict_file_outputs(
            model, path, out_dir, with_stage1=with_stage1, axes=axes, callback=callback, stop=stop, tta=tta
        )
    finally:
        model.release_device_memory()
    if load_result:
        result.arrays = {which: np.squeeze(tifffile.imread(file)) for which, file in result.files.items()}
    return result


@dataclass
class Adaptation:
    """What adapting a model to a layer gives: the run (its model, how it ended) and the layer denoised with it."""

    result: RunResult
    prediction: Prediction | None = None


def adapt_to_image(
    model: TrainedModel,
    image,
    source: str,
    run_dir: Path,
    out_dir: Path,
    callback: ProgressCallback,
    stop: StopRequest,
    axes: str | None = None,
    meta: ImageMeta | None = None,
    max_time: float | None = None,
) -> Adaptation:
    """GainTuning of ``model`` to a layer's pixels (worker thread: read here), then that layer denoised
    with the adapted model into ``out_dir``; a stopped adaptation keeps its best gains and denoises nothing."""
    pixels = read_pixels(image)
    adapted = None
    try:
        result = adapt(model, pixels, run_dir=run_dir, axes=axes, max_time=max_time, callback=callback, stop=stop)
        adapted = result.model
        if adapted is None or result.stopped:
            return Adaptation(result)
        prediction = predict_and_write(
            adapted, pixels, out_dir, axes=axes, meta=meta, source=source, stem=source, unique=True,
            callback=callback, stop=stop,
        )  # fmt: skip
        return Adaptation(result, prediction)
    finally:
        if adapted is not None:
            adapted.release_device_memory()


def predict_folder(
    model: TrainedModel,
    folder: Path,
    out_dir: Path,
    callback: ProgressCallback,
    stop: StopRequest,
    tta: bool | None = None,
) -> BatchResult:
    """Denoise every image file of ``folder`` into ``out_dir`` (worker thread); outputs already there
    are kept, never overwritten, and a file that fails does not stop the others."""
    try:
        return predict_files(model, [folder], out_dir, callback=callback, stop=stop, tta=tta)
    finally:
        model.release_device_memory()


def result_layer_name(model: TrainedModel, source: str, which: str) -> str:
    method = method_label(model.method) + (", adapted" if model.summary.get("adapted_from") else "")
    if which == "denoised":
        return f"{source} denoised ({method})"
    if which == "deconvolved":
        return f"{source} deconvolved ({method})"
    return f"{source} denoised ({STAGE_LABELS.get(which, which)})"


def add_result_layers(
    session: Session, model: TrainedModel, prediction: Prediction, axes: str | None = None
) -> list[str]:
    """Add each result array as a new layer (GUI thread); returns the layer names, final first.

    A result of its input's shape lies over it (same scale and translate); ``axes`` (the input's) go
    into its metadata, so that denoising or training on the result uses them too."""
    viewer = session.viewer
    source_layer = viewer.layers[prediction.source] if prediction.source in viewer.layers else None  # noqa: SIM401
    names = []
    for which in sorted(prediction.arrays, key=lambda w: w != "denoised"):
        array = prediction.arrays[which]
        style = {}
        if source_layer is not None and tuple(array.shape) == layer_shape(source_layer):
            style = {"scale": source_layer.scale, "translate": source_layer.translate}
        # A paired model answers in the target's scale, so the input's display range would not fit it.
        if source_layer is not None and model.target_normalization is None:
            # Same colormap and display range as the input, so the two compare at a glance.
            style |= {"colormap": source_layer.colormap.name, "contrast_limits": source_layer.contrast_limits}
        ours = {
            "source": prediction.source,
            "training_id": model.name,
            "output": which,
            "file": str(prediction.files.get(which, "")),
        }
        if axes:
            ours["axes"] = axes
        name = unique_layer_name(viewer, result_layer_name(model, prediction.source, which))
        viewer.add_image(array, name=name, metadata={"denoise_studio": ours}, **style)
        names.append(name)
    return names
