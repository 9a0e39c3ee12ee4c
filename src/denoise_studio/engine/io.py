"""Reading and writing images, with axis and value checks that give clear messages.

The engine works on ``YX`` images and ``ZYX`` (or ``TYX``) stacks of a single channel. Anything
else (RGB, 4D, NaN/Inf, constant or tiny images) is refused with an :class:`InputError` that
names the problem, before any training starts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile

#: Smallest image side we accept: one training patch of the smallest size must fit.
MIN_SIDE = 16

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)


class InputError(ValueError):
    """The input image cannot be used; the message says why and what to do."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF/OME-TIFF or PNG file into a numpy array (no conversion of values)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            image = tifffile.imread(path)
        elif suffix in PNG_SUFFIXES:
            import imageio.v3 as iio

            image = np.asarray(iio.imread(path))
        else:
            raise InputError(f"{path}: unsupported file type {suffix!r}; use TIFF (.tif, .tiff) or PNG")
    except InputError:
        raise
    except Exception as err:  # corrupt or truncated files raise many different errors
        raise InputError(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from None
    return image


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an image or stack and return it as ``(Z, Y, X)`` (a 2D image becomes Z=1).

    Raises :class:`InputError` for RGB, 4D+, complex, boolean, NaN/Inf, empty, constant or tiny input.
    """
    image = np.asarray(image)
    if image.dtype.kind == "c":
        raise InputError(f"{name}: complex values are not supported")
    if image.dtype.kind == "b":
        raise InputError(f"{name}: a boolean mask is not an image")
    if image.dtype.kind not in "uif":
        raise InputError(f"{name}: unsupported data type {image.dtype}")
    if image.size == 0:
        raise InputError(f"{name}: the image is empty (shape {image.shape})")
    squeezed = np.squeeze(image) if image.ndim > 3 else image
    if squeezed.ndim == 3 and squeezed.shape[-1] in (3, 4) and squeezed.shape[0] > 4:
        raise InputError(
            f"{name}: looks like an RGB(A) image (shape {image.shape}); convert it to a single channel first"
        )
    if squeezed.ndim < 2 or squeezed.ndim > 3:
        raise InputError(
            f"{name}: expected a 2D image (YX) or a stack (ZYX or TYX), got {image.ndim} dimensions "
            f"(shape {image.shape}); split channels or time points first"
        )
    stack = squeezed[np.newaxis] if squeezed.ndim == 2 else squeezed
    if min(stack.shape[1:]) < MIN_SIDE:
        raise InputError(
            f"{name}: too small ({stack.shape[-2]}x{stack.shape[-1]} pixels); need at least {MIN_SIDE}x{MIN_SIDE}"
        )
    if stack.dtype.kind == "f":
        finite = np.isfinite(stack)
        if not finite.all():
            bad = int(stack.size - np.count_nonzero(finite))
            raise InputError(f"{name}: contains {bad} NaN or Inf values; replace or crop them first")
    if stack.min() == stack.max():
        raise InputError(f"{name}: the image is constant (all pixels {stack.flat[0]}); there is nothing to denoise")
    return stack


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read and validate an image file, returned as ``(Z, Y, X)``."""
    return check_image(read_image(path), name=str(path))


def atomic_path(target: str | os.PathLike) -> tuple[Path, Path]:
    """A temporary path in the target's folder, so that ``os.replace`` is atomic."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    return target, Path(tmp)


def write_tiff(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a TIFF atomically: a crash or a full disk never leaves a half-written file at ``path``."""
    target, tmp = atomic_path(path)
    try:
        # minisblack: otherwise tifffile stores a 3- or 4-slice stack as one RGB(A) image.
        tifffile.imwrite(tmp, np.asarray(image), photometric="minisblack")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_tiff_stream(
    path: str | os.PathLike, planes: Iterable[np.ndarray], shape: tuple[int, ...], dtype: np.dtype
) -> Path:
    """Stream planes to a TIFF stack on disk (bounded memory), atomically."""
    target, tmp = atomic_path(path)
    try:
        with tifffile.TiffWriter(tmp, bigtiff=int(np.prod(shape)) * np.dtype(dtype).itemsize > 2**31) as tif:
            for plane in planes:
                tif.write(np.asarray(plane, dtype=dtype), contiguous=True)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


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
            try:
                tif = tifffile.TiffFile(self.path)
                series = tif.series[0]
                pages = len(series.pages) if hasattr(series, "pages") else 0
                if series.ndim == 3 and pages == series.shape[0] and series.shape[-1] not in (3, 4):
                    self._tif = tif
                    self._series = series
                    self.shape = tuple(series.shape)
                    self.dtype = np.dtype(series.dtype)
                else:
                    tif.close()
            except Exception:
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
