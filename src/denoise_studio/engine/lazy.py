"""Training images that stay on disk: a TIFF or OME-Zarr too large for memory is read patch by patch.

A lazy training image is read through zarr (tifffile's zarr view of a TIFF, or an OME-Zarr's level 0):
only the chunks a patch touches are decoded, and nothing is memory-mapped, so the process's resident
memory stays at the size of the chunks in flight whatever the size of the file. The statistics of the
normalisation and the value checks are computed on evenly spaced sample planes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .axes import ImageMeta, Layout, layout_for, parse_axes
from .errors import InputError
from .io import TIFF_SUFFIXES, _tiff_axes, _tiff_meta, check_values

#: Planes read (evenly spaced) to fit the normalisation and to check the values of a lazy image.
SAMPLE_PLANES = 24


class LazyChannel:
    """One ``(Z, Y, X)`` volume (one sample, one channel) of an on-disk image, read block by block;
    with a normalisation, blocks come back normalised (float32)."""

    def __init__(self, array, layout: Layout, sample: int, channel: int, name: str, normalization=None):
        self.array = array
        self.layout = layout
        self.name = name
        self.normalization = normalization
        self._sample, self._channel = sample, channel
        sizes = layout.sizes
        self.shape = (sizes.get("Z", 1), sizes["Y"], sizes["X"])
        self.dtype = np.dtype(array.dtype)
        self.ndim = 3
        samples = (sizes.get("S", 1), sizes.get("T", 1))
        self._fixed = {"C": channel}
        self._fixed["S"], self._fixed["T"] = divmod(sample, samples[1])

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def normalized(self, normalization) -> LazyChannel:
        return LazyChannel(self.array, self.layout, self._sample, self._channel, self.name, normalization)

    def block(self, z: slice, y: slice, x: slice) -> np.ndarray:
        """Values of ``[z, y, x]`` (slices), as ``(z, y, x)``: raw, or normalised float32."""
        wanted = {"Z": z, "Y": y, "X": x}
        key = tuple(wanted.get(axis, self._fixed.get(axis, 0)) for axis in self.layout.axes)
        block = np.asarray(self.array[key])
        kept = [axis for axis in self.layout.axes if axis in wanted]  # the block's axes, in the array's order
        block = block.transpose([kept.index(axis) for axis in "ZYX" if axis in kept])
        block = block.reshape(z.stop - z.start, y.stop - y.start, x.stop - x.start)
        return block if self.normalization is None else self.normalization.normalize(block)

    def planes(self, count: int = SAMPLE_PLANES) -> list[np.ndarray]:
        """Up to ``count`` whole planes, evenly spaced through the volume."""
        depth, height, width = self.shape
        picks = np.unique(np.linspace(0, depth - 1, min(count, depth)).round().astype(int))
        return [self.block(slice(z, z + 1), slice(0, height), slice(0, width))[0] for z in picks]


def open_for_training(path: str | Path, axes: str | None = None) -> tuple[object, ImageMeta]:
    """A zarr array over an image file (TIFF or OME-Zarr level 0) that reads only what is indexed."""
    import zarr

    path = Path(path)
    if path.suffix.lower() == ".zarr" or path.is_dir():
        from .zarr_io import read_ome_zarr

        image = read_ome_zarr(path)
        meta = ImageMeta(image.axes, dict(image.scales), dict(image.units), dict(image.translation),
                         tuple(image.channel_names))  # fmt: skip
        array = image.data  # level 0, lazily (dask): a block read touches only its chunks
    else:
        import tifffile

        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise InputError(f"{path}: only TIFF and OME-Zarr images are read from disk for training")
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            meta = _tiff_meta(tif, _tiff_axes(path, series))
            file_axes = str(series.axes).upper()
        store = tifffile.imread(path, aszarr=True)
        array = zarr.open(store, mode="r")
        drop = [i for i, axis in enumerate(file_axes) if axis not in "TCZYXSIQ" and array.shape[i] == 1]
        if drop:
            raise InputError(f"{path}: axes {file_axes} with unused singleton axes cannot be read lazily yet")
    if axes is not None:
        meta = ImageMeta(parse_axes(axes, len(array.shape), name=f"{path}: axes"), meta.scales, meta.units,
                         meta.translation, meta.channel_names)  # fmt: skip
    return array, meta


class LazyImage:
    """One sample of an on-disk image as ``(C, Z, Y, X)`` channels read block by block (the engine's
    stand-in for a training array that is never loaded)."""

    ndim = 4

    def __init__(self, channels: list[LazyChannel]):
        self.channels = list(channels)
        self.shape = (len(self.channels), *self.channels[0].shape)
        self.dtype = self.channels[0].dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return len(self.channels)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LazyImage(self.channels[index])
        return self.channels[index]

    def __iter__(self):
        return iter(self.channels)

    def normalized(self, normalizations) -> LazyImage:
        pairs = zip(self.channels, normalizations, strict=True)
        return LazyImage([channel.normalized(norm) for channel, norm in pairs])

    def __array__(self, *_args, **_kwargs):
        raise TypeError("a lazy training image is read patch by patch, never as a whole array")


def lazy_samples(array, axes: str | None, name: str) -> list[LazyImage]:
    """The samples of an on-disk image of ``axes``, each ``(C, Z, Y, X)``."""
    layout = layout_for(tuple(array.shape), array.dtype, axes, name)
    if not layout.declared and len(array.shape) != len(layout.squeezed):
        # Guessed axes: the array's own dimensions, without singletons, must be (Z,) Y, X.
        raise InputError(f"{name}: give its axes to train on it from disk")
    if not layout.declared:
        layout = Layout(layout.axes, tuple(array.shape))
    return [
        LazyImage([LazyChannel(array, layout, n, c, name) for c in range(layout.channels)])
        for n in range(layout.samples)
    ]


def is_lazy(image) -> bool:
    return isinstance(image, LazyImage)


def is_on_disk(array) -> bool:
    """An array the engine must not load: a zarr or dask array (an OME-Zarr, a TIFF's zarr view)."""
    return not isinstance(array, np.ndarray) and hasattr(array, "shape") and hasattr(array, "dtype")


def sample_planes(channel: LazyChannel) -> np.ndarray:
    """Evenly spaced planes of a channel, stacked: what its normalisation is fitted on."""
    return np.stack(channel.planes())


def check_lazy_values(image: LazyImage, name: str) -> None:
    """NaN/Inf and constant images are refused, from the sample planes (the whole file is never read)."""
    planes = [plane for channel in image.channels for plane in channel.planes()]
    try:
        check_values(np.stack(planes), name)
    except InputError as err:
        raise InputError(f"{err} (checked on {len(planes)} sample planes)") from None
