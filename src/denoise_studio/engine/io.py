"""Reading and writing images, with axis and value checks that give clear messages.

Files are read with what they say of themselves (:class:`~.axes.ImageMeta`: axes, pixel sizes,
channel names), and results are written as OME-TIFF carrying the same. An array without axes is
read as ``YX`` or ``ZYX``; NaN/Inf, constant or tiny images are refused with an :class:`InputError`
that names the problem, before any training starts.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile

from .axes import MIN_SIDE, ImageMeta, layout_for, parse_axes
from .errors import InputError

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)

#: Memory figure used when the system does not report one (bytes).
FALLBACK_AVAILABLE_MEMORY = 8 * 2**30

#: A file is refused when decoding it would need more than this share of the available memory.
MAX_MEMORY_SHARE = 0.5

#: Where the kernel reports the umask without the process having to change it (Linux).
_PROC_STATUS = "/proc/self/status"
_PROC_MEMINFO = "/proc/meminfo"

#: A leftover ``.part`` file of a dead process is removed only when it has not been written for this
#: long (seconds): on a shared network folder the PID may belong to a live process on another host.
STALE_PART_AGE_S = 300.0

_UMASK_LOCK = threading.Lock()
_PART_RE = re.compile(r"(\d+)\.([0-9a-f]+)")
_SHORT_WRITE_RE = re.compile(r"requested and \d+ (?:bytes )?written")
_DISK_FULL_TEXTS = ("No space left", "ENOSPC", "file write failed")


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable, else free pages, else 8 GiB)."""
    try:
        with open(_PROC_MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        value = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return FALLBACK_AVAILABLE_MEMORY
    return value if value > 0 else FALLBACK_AVAILABLE_MEMORY


def _tiff_axes(path: Path, series) -> str | None:
    """The engine's axes for a TIFF series (None: no axes the file vouches for; the reader guesses).

    tifffile names a plain multi-page file's planes ``I`` or ``Q`` (unknown); OME-TIFF and ImageJ
    hyperstacks name ``T``, ``C``, ``Z``. ``S`` is tifffile's colour sample axis: the channels of an
    RGB file, except in a floating-point "RGB" file, which is a stack older tifffile wrote that way.
    """
    axes = str(getattr(series, "axes", "") or "").upper()
    shape = tuple(int(n) for n in series.shape)
    if len(axes) != len(shape) or not axes:
        return None
    page = series.pages[0] if getattr(series, "pages", None) else None
    photometric = getattr(page, "photometric", None)
    is_rgb = photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
    # tifffile (before 2024) stored any 3- or 4-slice array as planar RGB unless told otherwise, so a
    # floating-point "RGB" file is such a stack: real colour images are 8- or 16-bit integers.
    planar_float_stack = is_rgb and axes.startswith("S") and np.dtype(series.dtype).kind == "f"
    unknown = [axis for axis in axes if axis not in "TCZYXSIQ"]
    if any(size > 1 for axis, size in zip(axes, shape, strict=True) if axis in unknown):
        named = ", ".join(f"{axis} ({size})" for axis, size in zip(axes, shape, strict=True) if axis in unknown)
        raise InputError(
            f"{path}: the file's axes {axes} include {named}, which the engine does not know; "
            "give the axes (--axes, axes=) with letters from STCZYX"
        )
    sequences = [axis for axis in axes if axis in "IQ"]
    if planar_float_stack and set(axes) <= set("SYX"):
        return None  # read as slices, as before
    mapped = []
    for axis in axes:
        if axis in unknown:
            continue  # a singleton of an axis we do not use
        if axis == "S":
            mapped.append("C")
        elif axis in "IQ":
            if len(sequences) == 1 and set(axes) - set("IQ") <= set("YX"):
                return None  # a plain stack of planes: the reader guesses ZYX as it always did
            mapped.append("S")
        else:
            mapped.append(axis)
    text = "".join(mapped)
    if len(set(text)) != len(text):
        raise InputError(f"{path}: cannot tell the file's axes apart ({axes}); give them (--axes, axes=)")
    return text


def _squeeze_unknown(series, array: np.ndarray) -> np.ndarray:
    """Drop the singleton dimensions of axis letters the engine does not use (so the array matches its axes)."""
    axes = str(getattr(series, "axes", "") or "").upper()
    if len(axes) != array.ndim:
        return array
    drop = tuple(i for i, axis in enumerate(axes) if axis not in "TCZYXSIQ" and array.shape[i] == 1)
    return array.squeeze(drop) if drop else array


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _resolution_size(page, tag: str) -> float | None:
    """Pixel size from a TIFF resolution tag (pixels per unit), as ImageJ stores it."""
    try:
        numerator, denominator = page.tags[tag].value
    except (KeyError, TypeError, ValueError):
        return None
    return _float(denominator / numerator) if numerator else None


def _tiff_meta(tif: tifffile.TiffFile, axes: str | None) -> ImageMeta:
    scales: dict[str, float] = {}
    units: dict[str, str] = {}
    names: tuple[str, ...] = ()
    if tif.is_ome and tif.ome_metadata:
        try:
            image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
            pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        except (KeyError, IndexError, TypeError, ValueError):
            pixels = {}
        for axis in "XYZ":
            size = _float(pixels.get(f"PhysicalSize{axis}"))
            if size is not None:
                scales[axis] = size
                units[axis] = str(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        increment = _float(pixels.get("TimeIncrement"))
        if increment is not None:
            scales["T"], units["T"] = increment, str(pixels.get("TimeIncrementUnit", "s"))
        channels = pixels.get("Channel", [])
        channels = channels if isinstance(channels, list) else [channels]
        found = [str(c.get("Name", "")) for c in channels if isinstance(c, dict)]
        names = tuple(found) if any(found) else ()
    elif tif.is_imagej and tif.imagej_metadata is not None:
        info = tif.imagej_metadata
        page = tif.pages[0]
        unit = str(info.get("unit", "") or "pixel").replace("\\u00B5", "µ").replace("micron", "µm")
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            size = _resolution_size(page, tag)
            if size is not None and size != 1.0:
                scales[axis], units[axis] = size, unit
        spacing = _float(info.get("spacing"))
        if spacing is not None:
            scales["Z"], units["Z"] = spacing, unit
        interval = _float(info.get("finterval"))
        if interval is not None:
            scales["T"], units["T"] = interval, "s"
    return ImageMeta(axes=axes, scales=scales, units=units, channel_names=names)


def _check_tiff_memory(path: Path, series) -> None:
    """Refuse a TIFF whose decoded pixels would not fit comfortably in memory, before allocating them."""
    needed = math.prod(int(n) for n in series.shape) * np.dtype(series.dtype).itemsize
    available = available_memory()
    if needed > MAX_MEMORY_SHARE * available:
        raise InputError(
            f"{path}: too large to load: the decoded image ({' x '.join(map(str, series.shape))} {series.dtype}) "
            f"needs {needed / 1e9:.1f} GB, but only {available / 1e9:.1f} GB of memory is available; "
            "crop it or split it into smaller files first"
        )


def _read_tiff(path: Path) -> tuple[np.ndarray, ImageMeta]:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = _tiff_axes(path, series)
        _check_tiff_memory(path, series)
        return _squeeze_unknown(series, tif.asarray()), _tiff_meta(tif, axes)


def read_image_meta(path: str | os.PathLike, axes: str | None = None) -> tuple[np.ndarray, ImageMeta]:
    """Read a TIFF/OME-TIFF or PNG file into a numpy array (no conversion of values) with what the
    file says of its axes, pixel sizes and channel names.

    ``axes`` (e.g. "CZYX") overrides the file's own; it must have one letter per dimension. A TIFF is
    inspected before any pixel is decoded: a size beyond half the available memory raises
    :class:`InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            image, meta = _read_tiff(path)
        elif suffix in PNG_SUFFIXES:
            import imageio.v3 as iio

            image, meta = np.asarray(iio.imread(path)), ImageMeta()
        else:
            raise InputError(f"{path}: unsupported file type {suffix!r}; use TIFF (.tif, .tiff) or PNG")
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: too large to load into memory; crop it or split it into smaller files") from None
    except Exception as err:  # corrupt or truncated files raise many different errors
        raise InputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from None
    if axes is not None:
        meta = ImageMeta(
            axes=parse_axes(axes, image.ndim, name=f"{path}: axes"),
            scales=meta.scales, units=meta.units, translation=meta.translation, channel_names=meta.channel_names,
        )  # fmt: skip
    return image, meta


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels of an image file (see :func:`read_image_meta`)."""
    return read_image_meta(path)[0]


def image_layout(shape: tuple[int, ...], dtype, name: str = "image") -> tuple[int, int, int]:
    """The ``(Z, Y, X)`` shape an image without axes of ``shape`` and ``dtype`` is read as, without
    looking at a pixel.

    Raises :class:`InputError` for RGB, channels, 4D+, complex, boolean, empty or tiny input. Cheap
    enough for a GUI thread on every edit; :func:`check_image` adds the checks that read the values.
    """
    layout = layout_for(shape, dtype, None, name)
    return layout.canonical_shape[2:]


def check_values(image: np.ndarray, name: str = "image") -> None:
    """Refuse NaN/Inf, a constant image and a value range that overflows float32 (reads every pixel)."""
    if image.dtype.kind == "f":
        finite = np.isfinite(image)
        if not finite.all():
            bad = int(image.size - np.count_nonzero(finite))
            raise InputError(f"{name}: contains {bad} NaN or Inf values; replace or crop them first")
    low, high = image.min(), image.max()
    if low == high:
        raise InputError(f"{name}: the image is constant (all pixels {image.flat[0]}); there is nothing to denoise")
    if image.dtype.kind == "f":
        # The engine computes in float32: the value range must stay finite there.
        with np.errstate(over="ignore", invalid="ignore"):
            span = np.float32(high) - np.float32(low)
        if not np.isfinite(span):
            raise InputError(
                f"{name}: values too large (from {low:.3g} to {high:.3g}); their range overflows 32-bit floats; "
                "rescale the image to a smaller range first"
            )


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an image or stack without axes and return it as ``(Z, Y, X)`` (a 2D image becomes Z=1).

    Raises :class:`InputError` for RGB, 4D+, complex, boolean, NaN/Inf, empty, constant or tiny input.
    """
    image = np.asarray(image)
    stack = image.reshape(image_layout(image.shape, image.dtype, name))
    check_values(stack, name)
    return stack


def single_channel_stack(image: np.ndarray, axes: str | None, name: str = "image") -> np.ndarray:
    """An image of known (or guessed) axes as one ``(Z, Y, X)`` stack, for the tools that take a single
    channel (filters, comparisons, mask extraction); several channels, or time and depth together, are refused."""
    layout = layout_for(np.shape(image), np.asarray(image).dtype, axes, name)
    if layout.channels > 1:
        raise InputError(
            f"{name}: has {layout.channels} channels ({layout.describe()}); this takes one channel at a time: "
            "split the channels and open one at a time"
        )
    if layout.samples > 1 and layout.depth > 1:
        raise InputError(f"{name}: has both time points (or samples) and slices ({layout.describe()}); "
                         "this takes one stack at a time")
    stack = layout.to_canonical(np.asarray(image)).reshape(-1, layout.size("Y"), layout.size("X"))
    check_values(stack, name)
    return stack


def load_image(path: str | os.PathLike, axes: str | None = None) -> np.ndarray:
    """Read and validate a single-channel image file, returned as ``(Z, Y, X)``."""
    image, meta = read_image_meta(path, axes)
    return single_channel_stack(image, meta.axes, name=str(path))


def _current_umask() -> int:
    """The process umask, read without changing it where the kernel reports it."""
    try:
        with open(_PROC_STATUS) as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Fallback: set and restore it; the lock keeps two readers from restoring each other's value, and the
    # interim value is restrictive, so a file another thread creates meanwhile is never too open.
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a PID of ours; never treat as dead
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    return True


def stale_parts(target: Path) -> list[os.DirEntry]:
    """The ``.{name}.<pid>.<random>.part`` entries (files or folders) beside ``target`` that processes
    which died left behind and that have not been written for :data:`STALE_PART_AGE_S`."""
    if os.name != "posix":  # os.kill(pid, 0) terminates the process on Windows
        return []
    prefix, suffix = f".{target.name}.", ".part"
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    now, stale = time.time(), []
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
            continue
        match = _PART_RE.fullmatch(name[len(prefix) : -len(suffix)])
        if match is None or _pid_alive(int(match.group(1))):
            continue
        try:
            if entry.is_symlink() or now - entry.stat(follow_symlinks=False).st_mtime < STALE_PART_AGE_S:
                continue
        except OSError:
            continue
        stale.append(entry)
    return stale


def _remove_stale_parts(target: Path) -> None:
    """Delete the stale ``.part`` files of the target (see :func:`stale_parts`)."""
    for entry in stale_parts(target):
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            pass  # another process cleaned it, or the folder is not ours to clean


def _new_part(target: Path) -> Path:
    """Create (exclusively) an empty ``.{name}.{pid}.{random}.part`` file next to the target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(target)
    while True:
        tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(6)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    text = str(err)
    if isinstance(err, RuntimeError) and any(word in text for word in _DISK_FULL_TEXTS):
        return True  # torch.save: "PytorchStreamWriter failed writing file ...: file write failed"
    return isinstance(err, (OSError, ValueError, RuntimeError)) and _SHORT_WRITE_RE.search(text) is not None


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file atomically and return its path: ``write(tmp)`` fills a temporary file in the same
    folder, which then replaces ``path`` in one step.

    A crash or an error never leaves a half-written file at ``path`` (the temporary file is removed;
    one left by a killed process is removed by the next write to the same path). The file gets the
    usual permissions (``0o666`` less the umask). A full disk or quota raises
    ``OSError(ENOSPC, "no space left on the device", path)``; other errors propagate unchanged.
    """
    target = Path(path)
    tmp = _new_part(target)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and _is_disk_full(err):
            raise OSError(errno.ENOSPC, "no space left on the device", str(target)) from None
        raise
    return target


def write_tiff(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a TIFF atomically: a crash or a full disk never leaves a half-written file at ``path``."""
    image = np.asarray(image)
    # minisblack: otherwise tifffile stores a 3- or 4-slice stack as one RGB(A) image.
    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, image, photometric="minisblack"))


#: What ``dtype="input"`` means for an output: the input's own type, values rounded and clipped to it.
OUTPUT_DTYPES = ("float32", "input")


def output_array(image: np.ndarray, dtype: str | np.dtype = "float32", input_dtype=None) -> np.ndarray:
    """A float result in the type asked for: ``float32``, or ``input`` (the input's type: integers are
    rounded and clipped to their range, so a uint16 input gives a uint16 output)."""
    if isinstance(dtype, str) and dtype not in OUTPUT_DTYPES:
        raise InputError(f"dtype: must be one of {', '.join(OUTPUT_DTYPES)}, got {dtype!r}")
    target = np.dtype(np.float32) if dtype == "float32" else np.dtype(input_dtype if dtype == "input" else dtype)
    if target.kind in "ui":
        info = np.iinfo(target)
        return np.clip(np.rint(image), info.min, info.max).astype(target)
    return np.asarray(image, dtype=target)


def _ome_metadata(axes: str, meta: ImageMeta | None) -> dict:
    """tifffile's OME metadata for an array of ``axes``: our sample axis S is written as OME's T (or Q
    beside a T), since OME's S means colour samples."""
    written = axes.replace("S", "Q" if "T" in axes else "T")
    metadata: dict = {"axes": written}
    if meta is None:
        return metadata
    for axis in "XYZ":
        if axis in meta.scales and axis in axes:
            metadata[f"PhysicalSize{axis}"] = float(meta.scales[axis])
            metadata[f"PhysicalSize{axis}Unit"] = meta.units.get(axis, "µm")
    if "T" in meta.scales and "T" in axes:
        metadata["TimeIncrement"] = float(meta.scales["T"])
        metadata["TimeIncrementUnit"] = meta.units.get("T", "s")
    if meta.channel_names and "C" in axes:
        metadata["Channel"] = {"Name": list(meta.channel_names)}
    return metadata


def write_ome_tiff(path: str | os.PathLike, image: np.ndarray, axes: str, meta: ImageMeta | None = None) -> Path:
    """Write an OME-TIFF of ``axes`` (tifffile's OME writer) with the physical pixel sizes and channel
    names of ``meta``, atomically; big data as BigTIFF."""
    image = np.asarray(image)
    axes = parse_axes(axes, image.ndim)
    metadata = _ome_metadata(axes, meta)
    big = image.nbytes > 2**31

    def write(tmp: Path) -> None:
        tifffile.imwrite(tmp, image, ome=True, photometric="minisblack", metadata=metadata, bigtiff=big)

    return atomic_write(path, write)


def write_tiff_stream(
    path: str | os.PathLike,
    planes: Iterable[np.ndarray],
    shape: tuple[int, ...],
    dtype: np.dtype,
    axes: str | None = None,
    meta: ImageMeta | None = None,
) -> Path:
    """Stream ``(Y, X)`` planes (in C order of ``shape``) to a TIFF on disk (bounded memory), atomically;
    with ``axes``, an OME-TIFF carrying them and the pixel sizes and channel names of ``meta``."""
    dtype = np.dtype(dtype)
    big = int(np.prod(shape)) * dtype.itemsize > 2**31

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=big, ome=axes is not None) as tif:
            if axes is None:
                for plane in planes:
                    tif.write(np.asarray(plane, dtype=dtype), contiguous=True)
                return
            # tifffile takes the pages from an iterator when it is told the whole shape up front.
            pages = (np.asarray(plane, dtype=dtype) for plane in planes)
            tif.write(pages, shape=shape, dtype=dtype, photometric="minisblack",
                      metadata=_ome_metadata(parse_axes(axes, len(shape)), meta))

    return atomic_write(path, write)


def peek_image(path: str | os.PathLike, axes: str | None = None) -> tuple[tuple[int, ...], np.dtype, ImageMeta]:
    """Shape, type and metadata of an image file, reading no pixel of a TIFF (a PNG is small and read)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, dtype = tuple(int(n) for n in series.shape), np.dtype(series.dtype)
                meta = _tiff_meta(tif, _tiff_axes(path, series))
                unknown = [a for a in str(series.axes).upper() if a not in "TCZYXSIQ"]
                if unknown:  # the reader drops such singleton dimensions
                    shape = tuple(n for a, n in zip(str(series.axes).upper(), shape, strict=True) if a not in unknown)
        except InputError:
            raise
        except Exception as err:
            raise InputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from None
    else:
        image, meta = read_image_meta(path)
        shape, dtype = image.shape, image.dtype
    if axes is not None:
        meta = ImageMeta(parse_axes(axes, len(shape), name=f"{path}: axes"), meta.scales, meta.units,
                         meta.translation, meta.channel_names)
    return shape, dtype, meta


class LazyStack:
    """Plane-by-plane read access to a TIFF stack without loading it all (for huge data).

    For non-TIFF files, or TIFFs whose pages are not one plane each, it falls back to reading the
    whole file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._array: np.ndarray | None = None
        self._tif: tifffile.TiffFile | None = None
        if self.path.suffix.lower() in TIFF_SUFFIXES and self.path.exists():
            tif = None
            try:
                tif = tifffile.TiffFile(self.path)
                series = tif.series[0]
                axes = _tiff_axes(self.path, series)
                if axes is not None:
                    layout = layout_for(series.shape, series.dtype, axes, str(self.path))
                    if layout.channels > 1:  # channels must not be read as planes
                        raise InputError(
                            f"{self.path}: has {layout.channels} channels ({layout.describe()}); "
                            "streamed prediction takes one channel at a time"
                        )
                pages = len(series.pages) if hasattr(series, "pages") else 0
                plain = axes is None or axes in ("ZYX", "TYX", "SYX")
                if plain and series.ndim == 3 and pages == series.shape[0] and series.shape[-1] not in (3, 4):
                    self._tif = tif
                    self._series = series
                    self.shape = tuple(series.shape)
                    self.dtype = np.dtype(series.dtype)
                    self.meta = _tiff_meta(tif, axes)
                else:
                    tif.close()
            except InputError:
                tif.close()
                raise
            except Exception:
                if tif is not None:
                    tif.close()
                self._tif = None
        if self._tif is None:
            image, meta = read_image_meta(self.path)
            self._array = single_channel_stack(image, meta.axes, name=str(self.path))
            self.shape = self._array.shape
            self.dtype = self._array.dtype
            self.meta = ImageMeta()  # the planes are a stack now, whatever the file's axes were
        elif min(self.shape[1:]) < MIN_SIDE:
            raise InputError(f"{self.path}: too small ({self.shape[1]}x{self.shape[2]} pixels)")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        if self._array is not None:
            return self._array[index]
        plane = self._series.pages[index].asarray()
        if plane.dtype.kind == "f" and not np.isfinite(plane).all():
            raise InputError(f"{self.path}: plane {index} contains NaN or Inf values")
        return plane

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
