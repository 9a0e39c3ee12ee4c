"""Reading and writing images, with axis and value checks that give clear messages.

The engine works on ``YX`` images and ``ZYX`` (or ``TYX``) stacks of a single channel. Anything
else (RGB, 4D, NaN/Inf, constant or tiny images) is refused with an :class:`InputError` that
names the problem, before any training starts.
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

#: Smallest image side we accept: one training patch of the smallest size must fit.
MIN_SIDE = 16

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


class InputError(ValueError):
    """The input image cannot be used; the message says why and what to do."""


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


def _check_tiff_series(path: Path, series) -> None:
    """Refuse a TIFF series that holds several channels (they would be read as Z slices)."""
    axes = str(getattr(series, "axes", "") or "")
    shape = tuple(series.shape)
    if len(axes) != len(shape):
        return
    page = series.pages[0] if getattr(series, "pages", None) else None
    photometric = getattr(page, "photometric", None)
    is_rgb = photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
    # tifffile (before 2024) stored any 3- or 4-slice array as planar RGB unless told otherwise, so a
    # floating-point "RGB" file is such a stack: real colour images are 8- or 16-bit integers.
    planar_float_stack = is_rgb and axes.startswith("S") and np.dtype(series.dtype).kind == "f"
    channels = math.prod(
        size for axis, size in zip(axes, shape, strict=True) if axis == "C" or (axis == "S" and not planar_float_stack)
    )
    if channels <= 1:
        return
    rgb = ", an RGB image" if is_rgb else ""
    raise InputError(
        f"{path}: has {channels} channels (axes {axes}, shape {shape}{rgb}); the engine denoises one channel "
        "at a time: split the channels and open one at a time"
    )


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


def _read_tiff(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        _check_tiff_series(path, series)
        _check_tiff_memory(path, series)
        return tif.asarray()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF/OME-TIFF or PNG file into a numpy array (no conversion of values).

    A TIFF is inspected before any pixel is decoded: several channels (axes ``C`` or ``S``) or a size
    beyond half the available memory raise :class:`InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            image = _read_tiff(path)
        elif suffix in PNG_SUFFIXES:
            import imageio.v3 as iio

            image = np.asarray(iio.imread(path))
        else:
            raise InputError(f"{path}: unsupported file type {suffix!r}; use TIFF (.tif, .tiff) or PNG")
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: too large to load into memory; crop it or split it into smaller files") from None
    except Exception as err:  # corrupt or truncated files raise many different errors
        raise InputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from None
    return image


def image_layout(shape: tuple[int, ...], dtype, name: str = "image") -> tuple[int, int, int]:
    """The ``(Z, Y, X)`` shape an image of ``shape`` and ``dtype`` is read as, without looking at a pixel.

    Raises :class:`InputError` for RGB, channels, 4D+, complex, boolean, empty or tiny input. Cheap
    enough for a GUI thread on every edit; :func:`check_image` adds the checks that read the values.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(f"{name}: complex values are not supported")
    if dtype.kind == "b":
        raise InputError(f"{name}: a boolean mask is not an image")
    if dtype.kind not in "uif":
        raise InputError(f"{name}: unsupported data type {dtype}")
    shape = tuple(int(n) for n in shape)
    if math.prod(shape) == 0:
        raise InputError(f"{name}: the image is empty (shape {shape})")
    # Singleton axes carry no pixels: (Y, X, 1) and (1, 1, Y, X) are 2D images.
    squeezed = tuple(n for n in shape if n != 1) if len(shape) >= 3 else shape
    if len(squeezed) == 3 and squeezed[-1] in (3, 4) and squeezed[0] > 4:
        raise InputError(f"{name}: looks like an RGB(A) image (shape {shape}); convert it to a single channel first")
    if len(squeezed) == 3 and squeezed[-1] < MIN_SIDE and min(squeezed[:2]) >= MIN_SIDE:
        raise InputError(
            f"{name}: looks like a {squeezed[-1]}-channel image (channels last, shape {shape}); "
            "the engine denoises one channel at a time: split the channels and open one at a time"
        )
    if len(squeezed) < 2 or len(squeezed) > 3:
        raise InputError(
            f"{name}: expected a 2D image (YX) or a stack (ZYX or TYX), got {len(shape)} dimensions "
            f"(shape {shape}); split channels or time points first"
        )
    zyx = (1, *squeezed) if len(squeezed) == 2 else squeezed
    if min(zyx[1:]) < MIN_SIDE:
        raise InputError(f"{name}: too small ({zyx[-2]}x{zyx[-1]} pixels); need at least {MIN_SIDE}x{MIN_SIDE}")
    return zyx


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an image or stack and return it as ``(Z, Y, X)`` (a 2D image becomes Z=1).

    Raises :class:`InputError` for RGB, 4D+, complex, boolean, NaN/Inf, empty, constant or tiny input.
    """
    image = np.asarray(image)
    stack = image.reshape(image_layout(image.shape, image.dtype, name))
    if stack.dtype.kind == "f":
        finite = np.isfinite(stack)
        if not finite.all():
            bad = int(stack.size - np.count_nonzero(finite))
            raise InputError(f"{name}: contains {bad} NaN or Inf values; replace or crop them first")
    low, high = stack.min(), stack.max()
    if low == high:
        raise InputError(f"{name}: the image is constant (all pixels {stack.flat[0]}); there is nothing to denoise")
    if stack.dtype.kind == "f":
        # The engine computes in float32: the value range must stay finite there.
        with np.errstate(over="ignore", invalid="ignore"):
            span = np.float32(high) - np.float32(low)
        if not np.isfinite(span):
            raise InputError(
                f"{name}: values too large (from {low:.3g} to {high:.3g}); their range overflows 32-bit floats; "
                "rescale the image to a smaller range first"
            )
    return stack


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read and validate an image file, returned as ``(Z, Y, X)``."""
    return check_image(read_image(path), name=str(path))


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


def _remove_stale_parts(target: Path) -> None:
    """Delete ``.{name}.<pid>.<random>.part`` files of the target left by processes that died."""
    if os.name != "posix":  # os.kill(pid, 0) terminates the process on Windows
        return
    prefix, suffix = f".{target.name}.", ".part"
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
            continue
        match = _PART_RE.fullmatch(name[len(prefix) : -len(suffix)])
        if match is None or _pid_alive(int(match.group(1))):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_PART_AGE_S:
                continue
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


def write_tiff_stream(
    path: str | os.PathLike, planes: Iterable[np.ndarray], shape: tuple[int, ...], dtype: np.dtype
) -> Path:
    """Stream planes to a TIFF stack on disk (bounded memory), atomically."""

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=int(np.prod(shape)) * np.dtype(dtype).itemsize > 2**31) as tif:
            for plane in planes:
                tif.write(np.asarray(plane, dtype=dtype), contiguous=True)

    return atomic_write(path, write)


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
                _check_tiff_series(self.path, series)  # channels must not be read as planes
                pages = len(series.pages) if hasattr(series, "pages") else 0
                if series.ndim == 3 and pages == series.shape[0] and series.shape[-1] not in (3, 4):
                    self._tif = tif
                    self._series = series
                    self.shape = tuple(series.shape)
                    self.dtype = np.dtype(series.dtype)
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
            self._array = load_image(self.path)
            self.shape = self._array.shape
            self.dtype = self._array.dtype
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
