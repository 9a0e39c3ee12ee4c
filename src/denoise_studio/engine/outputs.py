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

from .axes import ImageMeta, layout_for
from .bigdata import fits_in_memory, is_zarr_path, predict_array_lazy, predict_file_lazy, renamed_axes, zarr_axes
from .events import ProgressCallback, StopRequest
from .io import output_array, peek_image, read_image_meta, write_ome_tiff, write_tiff
from .model import STAGE1, TrainedModel
from .prediction import check_finite_output

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


def output_path(
    folder: Path, output: str, stem: str | None = None, unique: bool = False, suffix: str = ".tif"
) -> Path:
    tag = OUTPUT_TAGS.get(output, output)
    name = f"{safe_stem(stem)}_{tag}" if stem else tag
    return free_path(folder, name, suffix) if unique else folder / f"{name}{suffix}"


def wanted_outputs(model: TrainedModel, with_stage1: bool = False) -> tuple[str, ...]:
    """The model's outputs, plus "stage1" when asked for and it differs from the final network."""
    extra = (STAGE1,) if with_stage1 and model.has_separate_stage1 else ()
    return (*model.outputs, *extra)


def write_result(
    path: Path,
    array: np.ndarray,
    axes: str | None,
    meta: ImageMeta | None,
    dtype: str = "float32",
    input_dtype=None,
    overwrite: bool = False,
) -> Path:
    """One result file: an OME-Zarr (``.zarr``) or an OME-TIFF with the input's axes, pixel sizes and
    channel names when its axes are known, else a plain TIFF; ``dtype`` "input" gives the input's type
    (rounded, clipped)."""
    array = output_array(array, dtype, input_dtype)
    if is_zarr_path(path):
        from .zarr_io import write_ome_zarr

        layout = layout_for(array.shape, array.dtype, axes, str(path))
        data = array if layout.declared else array.reshape(layout.squeezed)
        meta = meta or ImageMeta()
        written = zarr_axes(layout.axes, path)
        return write_ome_zarr(
            path, data, written, scales=renamed_axes(meta.scales, layout.axes, written),
            units=renamed_axes(meta.units, layout.axes, written),
            translation=renamed_axes(meta.translation, layout.axes, written),
            channel_names=list(meta.channel_names) or None, overwrite=overwrite,
        )  # fmt: skip
    if axes is None:
        return write_tiff(path, array)
    return write_ome_tiff(path, array, axes, meta)


def predict_and_write(
    model: TrainedModel,
    image: np.ndarray,
    folder: str | Path | None,
    *,
    axes: str | None = None,
    meta: ImageMeta | None = None,
    dtype: str = "float32",
    source: str = "image",
    stem: str | None = None,
    with_stage1: bool = False,
    unique: bool = False,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    tta: bool | None = None,
) -> Prediction:
    """Every output of ``model`` on ``image`` of ``axes`` (one forward pass per tile for all the network's
    outputs), each written into ``folder`` when one is given, with ``meta``'s pixel sizes and channel
    names. Stopping writes nothing."""
    arrays = model.predict_outputs(
        image, wanted_outputs(model, with_stage1), axes=axes, callback=callback, stop=stop, tta=tta
    )
    result = Prediction(source, arrays)
    if folder is not None:
        folder = Path(folder)
        for name, array in arrays.items():
            path = output_path(folder, name, stem, unique)
            result.files[name] = write_result(path, array, axes, meta, dtype, np.asarray(image).dtype)
    return result


def predict_lazy_outputs(
    model: TrainedModel,
    image,
    folder: str | Path,
    *,
    axes: str | None = None,
    meta: ImageMeta | None = None,
    source: str = "image",
    stem: str | None = None,
    with_stage1: bool = False,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    tta: bool | None = None,
) -> Prediction:
    """Every output of ``model`` on a lazy (dask or zarr) image, block by block into new OME-Zarrs in
    ``folder``; the arrays handed back are those files, opened lazily, in the image's own axes and shape
    (so a viewer shows them without loading them)."""
    from .zarr_io import read_ome_zarr

    folder = Path(folder)
    base = meta or ImageMeta()
    meta = ImageMeta(axes, base.scales, base.units, base.translation, base.channel_names)
    layout = layout_for(image.shape, image.dtype, axes, source)
    result = Prediction(source)
    for which in wanted_outputs(model, with_stage1):
        path = output_path(folder, which, stem, unique=True, suffix=".zarr")
        result.files[which] = predict_array_lazy(
            model, image, path, meta=meta, name=source, output=which, callback=callback, stop=stop, tta=tta
        )
        written = read_ome_zarr(result.files[which])
        # Written in the engine's axis order (samples as time points); back to the image's own.
        present = layout.present
        order = zarr_axes(present, path)
        data = written.data.transpose([written.axes.index(letter) for letter in order])
        result.arrays[which] = layout.from_canonical_order(data, present)
    return result


def _streamable(model: TrainedModel, path: Path, axes: str | None) -> bool:
    """Whether the file can be predicted plane by plane from disk: a single-channel TIFF stack whose
    pages are its planes (anything else is read whole)."""
    if path.suffix.lower() not in (".tif", ".tiff") or model.mode == "3d":
        return False  # a 3D model needs the whole volume around each voxel, not one plane at a time
    shape, dtype, meta = peek_image(path, axes)
    if axes is not None:
        return False  # the user's axes may regroup the planes; read whole and rearrange
    layout = layout_for(shape, dtype, meta.axes, str(path))
    return layout.channels == 1 and len(shape) == 3 and (meta.axes is None or meta.axes in ("ZYX", "TYX"))


def predict_file_to(
    model: TrainedModel,
    source: str | Path,
    target: str | Path,
    *,
    output: str = "denoised",
    axes: str | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    tile_size: int = 256,
    batch_size: int = 4,
    device: str | None = None,
    chunks: tuple[int, int, int] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    tta: bool | None = None,
) -> Path:
    """One output of ``model`` on an image file, written atomically to ``target`` with the source's
    axes, pixel sizes and channel names.

    An OME-Zarr (in or out), a cluster (``workers``, ``scheduler``) or a file too large for memory
    goes block by block through dask (:mod:`.bigdata`); otherwise a single-channel stack is streamed
    plane by plane and anything else (channels, time and depth, user axes) is read whole.
    """
    source, target = Path(source), Path(target)
    lazy_args = dict(
        output=output, axes=axes, dtype=dtype, overwrite=overwrite, tile_size=tile_size, batch_size=batch_size,
        device=device, chunks=chunks, workers=workers, scheduler=scheduler, callback=callback, stop=stop, tta=tta,
    )  # fmt: skip
    if workers is not None or scheduler is not None or is_zarr_path(source) or source.is_dir():
        return predict_file_lazy(model, source, target, **lazy_args)
    shape, file_dtype, _meta = peek_image(source, axes)
    if not fits_in_memory(shape, file_dtype) and not model.joint and not _streamable(model, source, axes):
        return predict_file_lazy(model, source, target, **lazy_args)
    if is_zarr_path(target) and not model.joint:
        return predict_file_lazy(model, source, target, **lazy_args)
    predictor = model.predictor(output, tile_size=tile_size, batch_size=batch_size, device=device, tta=tta)
    if _streamable(model, source, axes) and not is_zarr_path(target):
        return predictor.predict_file(source, target, dtype=dtype, callback=callback, stop=stop)
    image, meta = read_image_meta(source, axes)
    # A stage-1 predictor names its one output "denoised": take the first, whatever it is called.
    array = predictor.predict_all(image, axes=meta.axes, callback=callback, stop=stop)[predictor.outputs[0]]
    check_finite_output(array, output)
    if meta.axes is not None:
        meta = meta.for_layout(layout_for(image.shape, image.dtype, meta.axes, str(source)))
    return write_result(target, array, meta.axes, meta, dtype, image.dtype, overwrite=overwrite)


def predict_file_outputs(
    model: TrainedModel,
    path: str | Path,
    folder: str | Path,
    *,
    with_stage1: bool = False,
    axes: str | None = None,
    dtype: str = "float32",
    callback: ProgressCallback | None = None,
    stop: StopRequest | None = None,
    tta: bool | None = None,
) -> Prediction:
    """Every output of ``model`` on an image file, each to a new file in ``folder`` (see
    :func:`predict_file_to`; each output is its own pass over the file)."""
    path, folder = Path(path), Path(folder)
    result = Prediction(path.stem)
    for which in wanted_outputs(model, with_stage1):
        target = output_path(folder, which, path.stem, unique=True)
        result.files[which] = predict_file_to(
            model, path, target, output=which, axes=axes, dtype=dtype, callback=callback, stop=stop, tta=tta
        )
    return result
