"""OME-Zarr (NGFF) images in and out, without loading them.

Reading gives level 0 of the multiscale pyramid as a lazy dask array with its axes, pixel sizes,
units, offset and channel names; NGFF 0.4 (Zarr v2, ``.zattrs``) and 0.5 (Zarr v3, ``zarr.json``)
are both read. The down-sampled levels are never used: averaging correlates the noise of
neighbouring pixels, which blind-spot denoisers rely on being independent.

Writing produces NGFF **0.4** (Zarr v2): the version today's viewers and converters read (Fiji and
BigDataViewer, QuPath, OMERO, napari-ome-zarr, MoBIE), where 0.5 needs Zarr v3 readers that many of
them lack. The pyramid is made by 2 x 2 means in Y and X, level by level from the level just
written, so memory holds a few chunks whatever the image's size. The folder is written under a
hidden temporary name and renamed into place when complete, like :func:`.io.atomic_write` does for
files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import numpy as np

from .errors import InputError
from .io import _is_disk_full, stale_parts

#: The NGFF version written.
NGFF_VERSION = "0.4"

#: NGFF axis names and the engine's letters for them.
AXIS_LETTERS = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}
AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
#: The order NGFF 0.4 requires: time, then channel, then space (z, y, x).
NGFF_ORDER = "TCZYX"

#: Chunk sides written by default, per axis.
DEFAULT_CHUNKS = {"T": 1, "C": 1, "Z": 16, "Y": 512, "X": 512}

#: The pyramid stops once the smaller of Y and X is at most this (or at most the chunk side).
MIN_PYRAMID_SIDE = 256

#: Chunks written per dask computation: enough to keep every worker busy, few enough to report progress.
CHUNKS_PER_BATCH = 64
#: ... and at most about this many bytes of them: a batch's chunks (and, for a prediction, the blocks
#: they are computed from) are in memory together, so a batch of 64 float32 chunks of 16 x 512 x 512
#: would hold a gigabyte.
BYTES_PER_BATCH = 128 * 2**20

#: A write in progress touches its temporary folder this often (seconds), so that another process never
#: takes it for the leftover of a dead one (the folder's own time changes only when its top level does).
HEARTBEAT_S = 60.0

#: Common spellings of units and their NGFF (UDUNITS-2) names.
UNIT_NAMES = {
    "um": "micrometer",
    "µm": "micrometer",
    "μm": "micrometer",
    "\\u00b5m": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "a": "angstrom",
    "å": "angstrom",
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "us": "microsecond",
    "µs": "microsecond",
    "ns": "nanosecond",
    "min": "minute",
    "h": "hour",
}

_COMPRESSOR_SETTINGS = {"cname": "zstd", "clevel": 5}


@dataclass(frozen=True)
class ZarrImage:
    """Level 0 of an OME-Zarr image, lazily."""

    path: Path
    #: Level 0, a dask array: nothing is read until it is computed.
    data: da.Array
    #: One upper-case letter per dimension, from ``TCZYX`` (e.g. ``"CZYX"``).
    axes: str
    #: Physical pixel size per space or time axis (level 0).
    scales: dict[str, float] = field(default_factory=dict)
    #: Unit per axis, where the file gives one.
    units: dict[str, str] = field(default_factory=dict)
    #: Offset of the first pixel per space or time axis, where the file gives one.
    translation: dict[str, float] = field(default_factory=dict)
    #: Channel labels from the ``omero`` metadata, or empty.
    channel_names: list[str] = field(default_factory=list)
    #: The NGFF version of the file.
    version: str = ""

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


# -- reading ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def _raw_attributes(path: Path) -> tuple[dict, int] | None:
    """The group attributes (the ``ome`` namespace for Zarr v3) and the Zarr format, or None."""
    v3 = _read_json(path / "zarr.json")
    if v3 is not None:
        attributes = v3.get("attributes") or {}
        return (attributes.get("ome", attributes) if isinstance(attributes, dict) else {}), 3
    attrs = _read_json(path / ".zattrs")
    if attrs is not None or (path / ".zgroup").is_file():
        return attrs or {}, 2
    return None


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``.zarr`` / ``.ome.zarr`` folder with multiscales metadata (NGFF 0.4 or 0.5)."""
    path = Path(path)
    if not path.name.lower().endswith(".zarr") or not path.is_dir():
        return False
    try:
        found = _raw_attributes(path)
    except (OSError, ValueError):
        return False
    return found is not None and bool(found[0].get("multiscales"))


def _transform(transforms, kind: str, ndim: int, where: str) -> list[float] | None:
    if transforms is None:
        return None
    if not isinstance(transforms, list):
        raise ValueError(f"{where}: coordinateTransformations is not a list")
    for item in transforms:
        if isinstance(item, dict) and item.get("type") == kind:
            values = item.get(kind)
            if not isinstance(values, list) or len(values) != ndim:
                raise ValueError(f"{where}: {kind} {values!r} does not have one number per axis ({ndim})")
            return [float(v) for v in values]
    return None


def _axis_letters(path: Path, axes) -> tuple[str, list[dict]]:
    dicts = [{"name": axis} if isinstance(axis, str) else dict(axis) for axis in axes]
    names = [str(axis.get("name", "")) for axis in dicts]
    unknown = [name for name in names if name.lower() not in AXIS_LETTERS]
    if unknown:
        raise InputError(
            f"{path}: unknown axis name{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)}; "
            "the engine reads OME-Zarr axes t, c, z, y and x"
        )
    letters = "".join(AXIS_LETTERS[name.lower()] for name in names)
    if len(set(letters)) != len(letters) or "Y" not in letters or "X" not in letters:
        raise InputError(f"{path}: axes {names} must name y and x, and no axis twice")
    return letters, dicts


def read_ome_zarr(path: str | os.PathLike) -> ZarrImage:
    """Level 0 of an OME-Zarr image (lazily) with its axes, pixel sizes, units, offset and channel names.

    Every failure (no such folder, not OME-Zarr, no multiscales, damaged metadata, missing level 0,
    unknown axes) raises :class:`InputError` naming the path.
    """
    from ome_zarr.axes import Axes
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such folder")
    if not path.is_dir():
        raise InputError(f"{path}: is a file, expected an OME-Zarr folder (.ome.zarr)")
    try:
        found = _raw_attributes(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: damaged Zarr metadata ({type(err).__name__}: {err})") from None
    if found is None:
        raise InputError(f"{path}: not a Zarr folder (no .zgroup, .zattrs or zarr.json)")
    # Telling ome-zarr the version up front keeps it from warning about a "version mismatch".
    fmt = FormatV05() if found[1] == 3 else FormatV04()
    try:
        location = parse_url(path, mode="r", fmt=fmt)
    except Exception as err:  # zarr raises many kinds of errors for damaged metadata
        raise InputError(f"{path}: damaged Zarr metadata ({type(err).__name__}: {err})") from None
    if location is None:
        raise InputError(f"{path}: not a Zarr group")
    if not Multiscales.matches(location):
        raise InputError(f"{path}: {_not_an_image(location.root_attrs)}")
    attrs = location.root_attrs
    try:
        multiscale = attrs["multiscales"][0]
        datasets = multiscale["datasets"]
        level0 = datasets[0]["path"]
        axes = multiscale.get("axes")
        if axes is None:
            raise ValueError("no axes")
        Axes(axes, fmt=location.fmt)  # raises ValueError where the axes break the NGFF rules
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise InputError(f"{path}: damaged OME-Zarr multiscales metadata ({type(err).__name__}: {err})") from None
    letters, axis_dicts = _axis_letters(path, axes)
    try:
        data = location.load(str(level0))
    except Exception as err:  # a missing or damaged array: zarr raises many kinds
        raise InputError(
            f"{path}: level 0 ({level0!r}) of the image is missing or damaged ({type(err).__name__}: {err})"
        ) from None
    ndim = len(letters)
    if data.ndim != ndim:
        raise InputError(f"{path}: level 0 has {data.ndim} dimensions but the metadata names {ndim} axes")
    try:
        where = f"dataset {level0!r}"
        scale = _transform(datasets[0].get("coordinateTransformations"), "scale", ndim, where) or [1.0] * ndim
        shift = _transform(datasets[0].get("coordinateTransformations"), "translation", ndim, where)
        # NGFF 0.4 allows transformations for the whole multiscale, applied after each dataset's.
        outer = multiscale.get("coordinateTransformations")
        outer_scale = _transform(outer, "scale", ndim, "multiscales")
        outer_shift = _transform(outer, "translation", ndim, "multiscales")
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: damaged OME-Zarr coordinate transformations ({err})") from None
    if outer_scale is not None:
        scale = [s * o for s, o in zip(scale, outer_scale, strict=True)]
        if shift is not None:
            shift = [t * o for t, o in zip(shift, outer_scale, strict=True)]
    if outer_shift is not None:
        shift = outer_shift if shift is None else [a + b for a, b in zip(shift, outer_shift, strict=True)]
    physical = [i for i, letter in enumerate(letters) if letter != "C"]
    units = {letters[i]: str(axis["unit"]) for i, axis in enumerate(axis_dicts) if axis.get("unit") not in (None, "")}
    return ZarrImage(
        path=path,
        data=data,
        axes=letters,
        scales={letters[i]: scale[i] for i in physical},
        units=units,
        translation={} if shift is None else {letters[i]: shift[i] for i in physical},
        channel_names=_channel_names(attrs),
        version=location.fmt.version,
    )


def _not_an_image(attrs: dict) -> str:
    if "bioformats2raw.layout" in attrs:
        return "a bioformats2raw container of several images; open one of them (the folder 0 inside it)"
    if "plate" in attrs or "well" in attrs:
        return "an OME-Zarr plate or well of several images; open one of its fields (e.g. A/1/0 inside it)"
    return "a Zarr folder without OME-Zarr multiscales metadata (not an OME-Zarr image)"


def _channel_names(attrs: dict) -> list[str]:
    omero = attrs.get("omero")
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(channels, list):
        return []
    labels = [channel.get("label") if isinstance(channel, dict) else None for channel in channels]
    if all(label is None for label in labels):
        return []
    return [str(label) if label is not None else f"channel {i}" for i, label in enumerate(labels)]


# -- writing: temporary folders -----------------------------------------------------------------------


def _remove_stale_part_folders(target: Path) -> None:
    """Delete the ``.{name}.<pid>.<random>.part`` folders of the target left by processes that died
    (:func:`.io.stale_parts`: a dead PID and no change for :data:`.io.STALE_PART_AGE_S`)."""
    for entry in stale_parts(target):
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)  # another process may be cleaning it too


def _part_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.part"


def _new_part_folder(target: Path) -> Path:
    """Create (exclusively) an empty ``.{name}.{pid}.{random}.part`` folder next to the target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_part_folders(target)
    while True:
        tmp = _part_name(target)
        try:
            os.mkdir(tmp, 0o777)  # the umask applies, as for any new folder
        except FileExistsError:
            continue
        return tmp


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def _heartbeat(folder: Path) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(folder)

    thread = threading.Thread(target=beat, name=f"heartbeat {folder.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    if not os.path.lexists(target):
        try:
            os.rename(tmp, target)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another writer got there first
                raise FileExistsError(errno.EEXIST, "already exists", str(target)) from None
            raise
        return
    if not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists (pass overwrite=True to replace it)", str(target))
    # The old image steps aside under a temporary name (removed as a leftover should we die right
    # now) and the new one takes its place: the target is missing only between two renames.
    old = _part_name(target)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    _remove(old)


# -- writing: arrays ------------------------------------------------------------------------------------


def _check_axes(axes: str, ndim: int) -> str:
    letters = str(axes).strip().upper()
    problems = []
    unknown = sorted({letter for letter in letters if letter not in NGFF_ORDER})
    if unknown:
        problems.append(f"{', '.join(unknown)} not in {NGFF_ORDER}")
    if len(set(letters)) != len(letters):
        problems.append("an axis named twice")
    if "Y" not in letters or "X" not in letters:
        problems.append("no Y or no X")
    if len(letters) != ndim:
        problems.append(f"{len(letters)} letters for an array of {ndim} dimensions")
    if problems:
        raise InputError(f"axes {axes!r} cannot be written as OME-Zarr: {'; '.join(problems)}")
    return letters


def _unit_name(unit: str) -> str:
    return UNIT_NAMES.get(unit.strip().lower(), UNIT_NAMES.get(unit.strip(), unit.strip()))


def _chunk_shape(axes: str, shape: tuple[int, ...], chunks) -> tuple[int, ...]:
    if chunks is None:
        sizes = [DEFAULT_CHUNKS[letter] for letter in axes]
    elif isinstance(chunks, dict):
        sizes = [int(chunks.get(letter, chunks.get(letter.lower(), DEFAULT_CHUNKS[letter]))) for letter in axes]
    else:
        sizes = [int(c) for c in chunks]
        if len(sizes) != len(axes):
            raise ValueError(f"chunks {chunks!r} must give one size per axis of {axes}")
    if min(sizes) < 1:
        raise ValueError(f"chunk sizes must be positive, got {chunks!r}")
    return tuple(min(size, n) for size, n in zip(sizes, shape, strict=True))


def _pyramid_shapes(shape: tuple[int, ...], axes: str, chunks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Level shapes: each halves Y and X (rounding up) until the smaller side is at most
    :data:`MIN_PYRAMID_SIDE` or the chunk side."""
    y, x = axes.index("Y"), axes.index("X")
    stop = max(MIN_PYRAMID_SIDE, min(chunks[y], chunks[x]))
    shapes = [tuple(shape)]
    while min(shapes[-1][y], shapes[-1][x]) > stop:
        last = list(shapes[-1])
        last[y], last[x] = -(-last[y] // 2), -(-last[x] // 2)
        shapes.append(tuple(last))
    return shapes


def _mean_dtype(dtype: np.dtype) -> np.dtype:
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize >= 4):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _halve(level: da.Array, axes: str) -> da.Array:
    """The next pyramid level: 2 x 2 means in Y and X (an odd last row or column is its own mean)."""
    y, x = axes.index("Y"), axes.index("X")
    pad = [(0, 0)] * level.ndim
    pad[y], pad[x] = (0, level.shape[y] % 2), (0, level.shape[x] % 2)
    work = level.astype(_mean_dtype(level.dtype))
    if any(after for _, after in pad):
        work = da.pad(work, pad, mode="edge")
    mean = da.coarsen(np.mean, work, {y: 2, x: 2})
    dtype = level.dtype
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        mean = da.clip(da.round(mean), info.min, info.max)
    return mean.astype(dtype)


def _batches(chunks: tuple[tuple[int, ...], ...], itemsize: int = 1) -> list[list[tuple[slice, ...]]]:
    """Regions of whole chunks grouped into batches of about :data:`CHUNKS_PER_BATCH` chunks and at
    most about :data:`BYTES_PER_BATCH` (at least one region); each region is one row of chunks along
    the last axis."""
    starts = [np.concatenate([[0], np.cumsum(sizes)]).astype(int) for sizes in chunks]
    row_length = len(chunks[-1])
    row_bytes = itemsize * int(np.prod([max(sizes) for sizes in chunks[:-1]], dtype=np.int64)) * sum(chunks[-1])
    rows_per_batch = max(1, min(CHUNKS_PER_BATCH // row_length, BYTES_PER_BATCH // max(row_bytes, 1)))
    regions = [
        (*(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts[:-1], index, strict=True)), slice(None))
        for index in np.ndindex(*(len(sizes) for sizes in chunks[:-1]))
    ]
    return [regions[i : i + rows_per_batch] for i in range(0, len(regions), rows_per_batch)]


def _store_level(level: da.Array, target, report: Callable[[], None]) -> None:
    for regions in _batches(level.chunks, level.dtype.itemsize):
        da.store([level[region] for region in regions], [target] * len(regions), regions=regions, lock=False)
        report()


def _transforms(axes: str, scales: dict, translation: dict, factor: int, level: int) -> list[dict]:
    scale, shift = [], []
    for letter in axes:
        size = float(scales.get(letter, 1.0)) if letter != "C" else 1.0
        offset = float(translation.get(letter, 0.0)) if letter != "C" else 0.0
        if letter in "YX":
            # A mean of `factor` pixels sits at their centre, (factor - 1) / 2 pixels from the first.
            offset += (factor - 1) / 2 * size
            size *= factor
        scale.append(size)
        shift.append(offset)
    transforms = [{"type": "scale", "scale": scale}]
    if translation or level > 0:
        transforms.append({"type": "translation", "translation": shift})
    return transforms


def _axis_metadata(axes: str, units: dict) -> list[dict]:
    result = []
    for letter in axes:
        axis = {"name": letter.lower(), "type": AXIS_TYPES[letter]}
        unit = units.get(letter)
        if unit and letter != "C":
            axis["unit"] = _unit_name(str(unit))
        result.append(axis)
    return result


def write_ome_zarr(
    path: str | os.PathLike,
    data,
    axes: str,
    *,
    scales: dict[str, float] | None = None,
    units: dict[str, str] | None = None,
    translation: dict[str, float] | None = None,
    channel_names: Sequence[str] | None = None,
    chunks=None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``data`` (numpy or dask) as an OME-Zarr (NGFF 0.4) image with a 2 x 2-mean pyramid in Y
    and X, atomically; returns the path.

    ``axes`` names the dimensions (letters of ``TCZYX``; written in the NGFF order, transposing the
    data if needed). ``scales``, ``units`` and ``translation`` map axis letters to level 0's pixel
    size, unit (``"µm"`` is written ``"micrometer"``) and offset; ``channel_names`` label the
    channels; ``chunks`` gives the chunk side per axis (a tuple in ``axes`` order or a dict; default
    T, C 1, Z 16, Y and X 512). A dask array is computed and written chunk by chunk, on the current
    dask scheduler (see :func:`.chunked.compute_context`); ``progress(done, total)`` counts batches
    of chunks over all levels.

    The image is written into a hidden ``.{name}.{pid}.{random}.part`` folder beside ``path`` and
    renamed into place once complete: an error or an interrupt leaves nothing at ``path``, and a
    folder left by a killed process is removed by the next write to the same path. An existing
    ``path`` raises :class:`FileExistsError` unless ``overwrite`` (then it is replaced once the new
    image is complete). A full disk raises ``OSError(ENOSPC, ...)``.
    """
    import zarr
    from numcodecs import Blosc
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    target = Path(path)
    array = data if isinstance(data, da.Array) else None
    if array is None:
        data = np.asarray(data)
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "uif":
        raise InputError(f"{target}: cannot write data of type {dtype} as an image")
    letters = _check_axes(axes, data.ndim)
    chunk_shape = _chunk_shape(letters, tuple(data.shape), chunks)
    if array is None:
        array = da.from_array(data, chunks=chunk_shape)
    # NGFF fixes the order of the axes: time, channel, then space.
    order = sorted(range(len(letters)), key=lambda i: NGFF_ORDER.index(letters[i]))
    if order != sorted(order):
        array = array.transpose(order)
        letters = "".join(letters[i] for i in order)
        chunk_shape = tuple(chunk_shape[i] for i in order)
    array = array.rechunk(chunk_shape)
    scales = {k.upper(): float(v) for k, v in (scales or {}).items()}
    translation = {k.upper(): float(v) for k, v in (translation or {}).items()}
    units = {k.upper(): str(v) for k, v in (units or {}).items()}
    names = list(channel_names or [])
    channels = array.shape[letters.index("C")] if "C" in letters else 1
    if names and len(names) != channels:
        raise InputError(f"{target}: {len(names)} channel names for {channels} channel(s)")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists (pass overwrite=True to replace it)", str(target))

    shapes = _pyramid_shapes(tuple(array.shape), letters, chunk_shape)
    level_chunks = [tuple(min(c, n) for c, n in zip(chunk_shape, shape, strict=True)) for shape in shapes]
    total = sum(
        len(_batches(da.core.normalize_chunks(c, s), dtype.itemsize)) for c, s in zip(level_chunks, shapes, strict=True)
    )
    done = 0

    def report() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    tmp = _new_part_folder(target)
    try:
        with _heartbeat(tmp):
            store = zarr.storage.LocalStore(tmp)
            group = zarr.open_group(store=store, mode="w", zarr_format=2)
            previous = None
            datasets = []
            for index, (shape, level_chunk) in enumerate(zip(shapes, level_chunks, strict=True)):
                # Each level is made from the one just written, so no level is ever held in memory.
                level = array if previous is None else _halve(da.from_zarr(previous), letters).rechunk(level_chunk)
                if level.shape != shape:  # the pyramid's arithmetic and dask's disagree
                    raise RuntimeError(f"level {index} has shape {level.shape}, expected {shape}")
                previous = group.create_array(
                    str(index),
                    shape=shape,
                    chunks=level_chunk,
                    dtype=dtype,
                    compressors=Blosc(shuffle=Blosc.SHUFFLE, **_COMPRESSOR_SETTINGS),
                    chunk_key_encoding={"name": "v2", "separator": "/"},  # NGFF 0.4 requires "/"
                    fill_value=0,
                )
                _store_level(level, previous, report)
                datasets.append(
                    {
                        "path": str(index),
                        "coordinateTransformations": _transforms(letters, scales, translation, 2**index, index),
                    }
                )
            metadata: dict = {"method": "2x2 mean in y and x per level"}
            if names:
                metadata["omero"] = {
                    "channels": [{"label": str(n), "color": "FFFFFF", "active": True} for n in names],
                    "rdefs": {"model": "greyscale"},
                }
            write_multiscales_metadata(
                group,
                datasets=datasets,
                fmt=FormatV04(),
                axes=_axis_metadata(letters, units),
                name=_image_name(target),
                metadata=metadata,
            )
        _move_into_place(tmp, target, overwrite)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, Exception) and not isinstance(err, FileExistsError) and _is_disk_full(err):
            raise OSError(errno.ENOSPC, "no space left on the device", str(target)) from None
        raise
    return target


def _image_name(target: Path) -> str:
    name = target.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
