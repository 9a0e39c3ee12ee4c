"""Images larger than memory: read lazily (TIFF pages, OME-Zarr level 0), predicted block by block with
dask (:mod:`.chunked`), written chunk by chunk (OME-Zarr with a pyramid, or OME-TIFF plane by plane),
in this process, on a local cluster (``workers``) or on an existing one (``scheduler``).

Only level 0 of an OME-Zarr is read: its down-sampled levels average neighbouring pixels, so their
noise is correlated and a blind-spot model trained on raw pixels does not apply to them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import tifffile

from . import io as image_io
from .axes import ImageMeta, layout_for, parse_axes
from .chunked import compute_context, predict_lazy
from .errors import InputError
from .events import PredictionEvent, ProgressCallback, StopRequest, emit
from .io import MAX_MEMORY_SHARE, TIFF_SUFFIXES, _tiff_axes, _tiff_meta, output_array, write_tiff_stream
from .model import TrainedModel
from .prediction import PredictionStopped

#: TIFF pages read per task: enough to amortise opening the file, few enough to keep tasks small.
PAGES_PER_TASK = 16

ZARR_SUFFIXES = (".zarr",)

#: Blocks (Z, Y, X) by mode when none are given: thin in Z where a block needs no Z context (2D) or
#: one slice of it (2.5D), so that a slab of planes (what a TIFF is written from) stays small; 3D
#: blocks must be deeper than their Z margin (:func:`.chunked.aligned_chunks` sees to it).
DEFAULT_BLOCKS = {"2d": (4, 512, 512), "2.5d": (8, 512, 512), "3d": (16, 512, 512)}


def is_zarr_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in ZARR_SUFFIXES


def _read_pages(path: str, start: int, stop: int) -> np.ndarray:
    """Pages ``start``..``stop`` of a TIFF's first series as ``(k, Y, X)`` (runs in a dask task; it
    opens the file itself, so it runs in any worker that sees the path)."""
    with tifffile.TiffFile(path) as tif:
        pages = tif.series[0].pages
        return np.stack([pages[index].asarray() for index in range(start, stop)])


def _lazy_tiff(path: Path) -> tuple[da.Array, ImageMeta]:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = _tiff_axes(path, series)
        meta = _tiff_meta(tif, axes)
        shape, dtype = tuple(int(n) for n in series.shape), np.dtype(series.dtype)
        file_axes = str(series.axes).upper()
        count = len(series.pages)
        page_shape = tuple(series.pages[0].shape) if count else ()
    if len(page_shape) != 2 or count * math.prod(page_shape) != math.prod(shape):
        raise InputError(f"{path}: its pages are not single planes (page shape {page_shape}); it cannot be read lazily")
    tasks = [
        da.from_delayed(
            dask.delayed(_read_pages)(str(path), start, min(start + PAGES_PER_TASK, count)),
            shape=(min(start + PAGES_PER_TASK, count) - start, *page_shape),
            dtype=dtype,
        )
        for start in range(0, count, PAGES_PER_TASK)
    ]
    array = da.concatenate(tasks).reshape(shape)
    if len(file_axes) == len(shape):
        # The reader drops singleton dimensions of axis letters the engine does not use.
        keep = [i for i, axis in enumerate(file_axes) if axis in "TCZYXSIQ" or shape[i] != 1]
        array = array.reshape([shape[i] for i in keep])
    return array, meta


def open_lazy(path: str | Path, axes: str | None = None) -> tuple[da.Array, ImageMeta]:
    """An image file as a lazy dask array (nothing read yet) with its metadata: OME-Zarr (level 0)
    or TIFF (plane pages). ``axes`` overrides the file's own."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if is_zarr_path(path) or path.is_dir():
        from .zarr_io import read_ome_zarr

        image = read_ome_zarr(path)
        array = image.data
        meta = ImageMeta(image.axes, dict(image.scales), dict(image.units), dict(image.translation),
                         tuple(image.channel_names))  # fmt: skip
    elif path.suffix.lower() in TIFF_SUFFIXES:
        try:
            array, meta = _lazy_tiff(path)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from None
    else:
        raise InputError(f"{path}: only TIFF and OME-Zarr files are read lazily")
    if axes is not None:
        meta = ImageMeta(parse_axes(axes, array.ndim, name=f"{path}: axes"), meta.scales, meta.units,
                         meta.translation, meta.channel_names)  # fmt: skip
    return array, meta


def fits_in_memory(shape: tuple[int, ...], dtype, copies: float = 3.0) -> bool:
    """Whether an image and ``copies`` float32 versions of it (normalised input, outputs) fit comfortably."""
    pixels = math.prod(int(n) for n in shape)
    needed = pixels * (np.dtype(dtype).itemsize + copies * 4)
    return needed <= MAX_MEMORY_SHARE * image_io.available_memory()


def zarr_axes(axes: str, target: Path) -> str:
    """OME-Zarr has no sample axis: samples are written as time points (where there is no T)."""
    if "S" not in axes:
        return axes
    if "T" in axes:
        raise InputError(f"{target}: OME-Zarr has no axis for samples beside time points (axes {axes}); write a TIFF")
    return axes.replace("S", "T")


def predict_file_lazy(
    model: TrainedModel, source: str | Path, target: str | Path, *, axes: str | None = None, **options
) -> Path:
    """Predict an image file block by block and write ``target`` chunk by chunk (bounded memory): an
    OME-Zarr (``.zarr``, with a multiscale pyramid) or an OME-TIFF, with the input's axes, pixel sizes
    and channel names. The halo of each block is the model's exact tile margin, so the result equals
    an in-memory prediction. ``options`` are those of :func:`predict_array_lazy`."""
    source = Path(source)
    array, meta = open_lazy(source, axes)
    return predict_array_lazy(model, array, target, meta=meta, name=str(source), **options)


def predict_array_lazy(
    model: TrainedModel,
    array,
    target: str | Path,
    *,
    meta: ImageMeta | None = None,
    name: str = "image",
    output: str = "denoised",
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
    """:func:`predict_file_lazy` for an array (a dask array of a napari layer, or any array) of
    ``meta.axes``: predicted block by block, written chunk by chunk to ``target``."""
    target = Path(target)
    meta = meta or ImageMeta()
    array = array if isinstance(array, da.Array) else da.from_array(array)
    layout = layout_for(array.shape, array.dtype, meta.axes, name)
    predictor = model.predictor(output, tile_size=tile_size, batch_size=batch_size, device=device, tta=tta)
    predictor.check_channels(layout.channels, name)
    if predictor.joint:
        raise InputError(
            f"{name}: a model of jointly trained channels predicts in memory only, not block by block; "
            "give it an image that fits in memory or a model of independent channels"
        )
    canonical = layout.to_canonical(array if layout.declared else array.reshape(layout.squeezed))
    samples, channels = canonical.shape[:2]
    chunks = chunks or DEFAULT_BLOCKS.get(model.mode)
    blocks = [
        da.stack([predict_lazy(predictor, canonical[n, c], chunks=chunks, channel=c) for c in range(channels)])
        for n in range(samples)
    ]
    result = da.stack(blocks)  # (N, C, Z, Y, X), lazy
    present = layout.present  # the engine's order: computed and written slab by slab, nothing twice
    out_shape = tuple(layout.sizes[axis] for axis in present)
    out_dtype = output_array(np.zeros(1, np.float32), dtype, array.dtype).dtype
    written_meta = ImageMeta(present, meta.scales, meta.units, meta.translation, meta.channel_names).for_layout(
        layout_for(out_shape, out_dtype, present, name)
    )
    with compute_context(workers, scheduler):
        if is_zarr_path(target):
            from .zarr_io import write_ome_zarr

            data = result.reshape(out_shape).map_blocks(output_array, dtype, array.dtype, dtype=out_dtype)
            axes_out = zarr_axes(present, target)
            progress = _zarr_progress(callback, stop, str(target))
            return write_ome_zarr(
                target, data, axes_out, scales=renamed_axes(written_meta.scales, present, axes_out),
                units=renamed_axes(written_meta.units, present, axes_out),
                translation=renamed_axes(written_meta.translation, present, axes_out),
                channel_names=list(written_meta.channel_names) or None, overwrite=overwrite, progress=progress,
            )  # fmt: skip
        planes = _planes(result, dtype, array.dtype, callback, stop, str(target))
        return write_tiff_stream(target, planes, out_shape, out_dtype, axes=present, meta=written_meta)


def renamed_axes(values: dict, present: str, written: str) -> dict:
    mapping = dict(zip(present, written, strict=True))
    return {mapping[k]: v for k, v in values.items() if k in mapping}


def _planes(
    result: da.Array, dtype: str, input_dtype, callback: ProgressCallback | None, stop: StopRequest | None, file: str
) -> Iterator[np.ndarray]:
    """The planes of an ``(N, C, Z, Y, X)`` result in C order, computed one Z-chunk slab at a time."""
    samples, channels, depth = result.shape[:3]
    total, done = samples * channels * depth, 0
    for n in range(samples):
        for c in range(channels):
            volume = result[n, c]
            start = 0
            for size in volume.chunks[0]:
                if stop is not None and stop.requested:
                    raise PredictionStopped("prediction stopped on request")
                slab = np.asarray(volume[start : start + size].compute())
                start += size
                for plane in slab:
                    yield output_array(plane, dtype, input_dtype)
                done += size
                emit(callback, PredictionEvent(done, total, file=file))


def _zarr_progress(callback: ProgressCallback | None, stop: StopRequest | None, file: str):
    def progress(done: int, total: int) -> None:
        if stop is not None and stop.requested:
            raise PredictionStopped("prediction stopped on request")
        emit(callback, PredictionEvent(done, total, file=file))

    return progress
