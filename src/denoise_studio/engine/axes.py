"""Axes of microscopy images: what each dimension of an array is, and the engine's one layout.

An input's axes are any of ``S T C Z Y X`` (samples, time, channels, depth, rows, columns), in any
order, each at most once, ``Y`` and ``X`` always. They come from the file (OME-TIFF, ImageJ
hyperstack, OME-Zarr) or from the user (``--axes``, ``axes=``). Inside the engine every image is
``(N, C, Z, Y, X)``: ``S`` and ``T`` merged into one sample axis ``N`` (independent images or
frames), ``C`` the channels, ``Z`` the slices that 2.5D and 3D modes use as neighbours. Results go
back to the input's own axes and shape.

An array without axes (a plain numpy array, a napari layer without metadata) keeps the engine's
historical reading: singleton dimensions dropped, then ``YX`` or ``ZYX``; anything else must say
its axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

#: The letters an axes string may use, in the engine's order.
AXES = "STCZYX"
#: Axes whose entries are independent images.
SAMPLE_AXES = "ST"
AXIS_NAMES = {"S": "sample", "T": "time", "C": "channel", "Z": "depth", "Y": "rows", "X": "columns"}

#: Smallest image side we accept: one training patch of the smallest size must fit.
MIN_SIDE = 16


def parse_axes(axes: str, ndim: int | None = None, name: str = "axes") -> str:
    """``axes`` upper-cased and checked: letters of ``STCZYX``, none twice, ``Y`` and ``X`` present,
    one per dimension when ``ndim`` is given. One :class:`InputError` names every problem."""
    text = str(axes).strip().upper()
    problems = []
    unknown = sorted({letter for letter in text if letter not in AXES})
    if unknown:
        problems.append(f"unknown letter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    repeated = sorted({letter for letter in text if text.count(letter) > 1})
    if repeated:
        problems.append(f"{', '.join(repeated)} repeated")
    missing = [letter for letter in "YX" if letter not in text]
    if missing:
        problems.append(f"no {' or '.join(missing)}")
    if ndim is not None and len(text) != ndim:
        problems.append(f"{len(text)} letters for an image of {ndim} dimensions")
    if problems:
        raise InputError(
            f"{name}: invalid axes {axes!r} ({'; '.join(problems)}); use one letter per dimension from "
            f"S (samples), T (time), C (channels), Z (depth), Y, X, e.g. CZYX"
        )
    return text


def check_dtype(dtype, name: str = "image") -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise InputError(f"{name}: complex values are not supported")
    if dtype.kind == "b":
        raise InputError(f"{name}: a boolean mask is not an image")
    if dtype.kind not in "uif":
        raise InputError(f"{name}: unsupported data type {dtype}")
    return dtype


def guess_layout(shape: tuple[int, ...], name: str = "image") -> tuple[int, int, int]:
    """The ``(Z, Y, X)`` an array without axes is read as (singleton dimensions dropped)."""
    # Singleton axes carry no pixels: (Y, X, 1) and (1, 1, Y, X) are 2D images.
    squeezed = tuple(n for n in shape if n != 1) if len(shape) >= 3 else shape
    if len(squeezed) == 3 and squeezed[-1] in (3, 4) and squeezed[0] > 4:
        raise InputError(
            f"{name}: looks like an RGB(A) image (shape {shape}); give its axes (YXC) to denoise the colours as "
            "channels, or convert it to a single channel"
        )
    if len(squeezed) == 3 and squeezed[-1] < MIN_SIDE and min(squeezed[:2]) >= MIN_SIDE:
        raise InputError(
            f"{name}: looks like a {squeezed[-1]}-channel image (channels last, shape {shape}); "
            "give its axes (YXC) to denoise the channels"
        )
    if len(squeezed) < 2 or len(squeezed) > 3:
        raise InputError(
            f"{name}: expected a 2D image (YX) or a stack (ZYX or TYX), got {len(shape)} dimensions (shape {shape}) "
            "and no axes: give them (axes such as CZYX or TCYX) so that channels, time points and slices are told apart"
        )
    return (1, *squeezed) if len(squeezed) == 2 else squeezed


@dataclass(frozen=True)
class Layout:
    """How an array's dimensions map onto the engine's ``(N, C, Z, Y, X)``, and back."""

    #: The array's axes: given, or guessed ("YX"/"ZYX" over the shape without its singletons).
    axes: str
    #: The array's own shape (the result is given back in it).
    shape: tuple[int, ...]
    #: Whether the axes were given (file metadata or the user) rather than guessed.
    declared: bool = True
    #: The shape the guessed axes describe (the array's shape without singletons).
    squeezed: tuple[int, ...] = field(default=())

    @property
    def sizes(self) -> dict[str, int]:
        dims = self.squeezed if not self.declared else self.shape
        return dict(zip(self.axes, dims, strict=True))

    def size(self, axis: str) -> int:
        return self.sizes.get(axis, 1)

    @property
    def channels(self) -> int:
        return self.size("C")

    @property
    def depth(self) -> int:
        return self.size("Z")

    @property
    def samples(self) -> int:
        return self.size("S") * self.size("T")

    @property
    def canonical_shape(self) -> tuple[int, int, int, int, int]:
        return (self.samples, self.channels, self.depth, self.size("Y"), self.size("X"))

    @property
    def present(self) -> str:
        """The engine-order axes this image has (e.g. "CZYX")."""
        return "".join(axis for axis in AXES if axis in self.axes)

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """``array`` as ``(N, C, Z, Y, X)`` (a view where the order allows)."""
        array = np.asarray(array) if not hasattr(array, "transpose") else array
        if not self.declared:
            array = array.reshape(self.squeezed)
        order = [self.axes.index(axis) for axis in self.present]
        moved = array.transpose(order)
        return moved.reshape(self.canonical_shape)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_canonical`: ``(N, C, Z, Y, X)`` back to the array's own axes and shape."""
        present = self.present
        sizes = self.sizes
        array = array.reshape([sizes[axis] for axis in present])
        order = [present.index(axis) for axis in self.axes]
        back = array.transpose(order)
        return back.reshape(self.shape)

    def from_canonical_order(self, array, order: str):
        """An array whose axes are ``order`` (the axes of this layout, in another order) back to this
        layout's own order and shape (works on dask arrays: transpose and reshape stay lazy)."""
        moved = array.transpose([order.index(axis) for axis in self.axes])
        return moved.reshape(self.shape)

    def describe(self) -> str:
        dims = self.squeezed if not self.declared else self.shape
        return f"axes {self.axes}, shape {' x '.join(str(n) for n in dims)}"


def layout_for(shape: tuple[int, ...], dtype, axes: str | None = None, name: str = "image") -> Layout:
    """The layout of an array of ``shape`` and ``dtype`` with ``axes`` (None: guessed), checked without
    reading a pixel: type, emptiness, axes against the dimensions, the smallest image side."""
    check_dtype(dtype, name)
    shape = tuple(int(n) for n in shape)
    if math.prod(shape) == 0:
        raise InputError(f"{name}: the image is empty (shape {shape})")
    if axes is None:
        guess_layout(shape, name)
        squeezed = tuple(n for n in shape if n != 1) if len(shape) >= 3 else shape
        guessed = "YX" if len(squeezed) == 2 else "ZYX"
        layout = Layout(guessed, shape, declared=False, squeezed=tuple(squeezed))
    else:
        layout = Layout(parse_axes(axes, len(shape), name=f"{name}: axes" if name != "axes" else "axes"), shape)
    height, width = layout.size("Y"), layout.size("X")
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{name}: too small ({height}x{width} pixels); need at least {MIN_SIDE}x{MIN_SIDE}")
    return layout


@dataclass(frozen=True)
class ImageMeta:
    """What a file says about its pixels, carried to the outputs: axes, physical sizes, channel names."""

    axes: str | None = None
    #: Physical size of a step along an axis (e.g. {"X": 0.1, "Y": 0.1, "Z": 0.5}).
    scales: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    #: Position of the first pixel along an axis, in the same units.
    translation: dict[str, float] = field(default_factory=dict)
    channel_names: tuple[str, ...] = ()

    def for_layout(self, layout: Layout) -> ImageMeta:
        """This metadata restricted to the axes of ``layout`` (the axes of the data as used)."""
        keep = layout.axes
        names = self.channel_names if len(self.channel_names) == layout.channels else ()
        return ImageMeta(
            axes=layout.axes,
            scales={k: v for k, v in self.scales.items() if k in keep},
            units={k: v for k, v in self.units.items() if k in keep},
            translation={k: v for k, v in self.translation.items() if k in keep},
            channel_names=tuple(names),
        )
