"""Tiled, batched prediction of 2D images and stacks, in memory or streamed to disk.

Exactness: a U-Net is translation-equivariant only for shifts by multiples of 2**depth, and a tile's
border pixels see zero padding. Tiles therefore start on the pooling grid of the padded image and
carry a margin of at least the measured receptive-field radius (rounded up to the pooling step) on
every side. Under those conditions a tiled prediction equals the untiled one up to float rounding,
with no more overlap than that. Flips and transposes of such a tile keep it on the grid, so
test-time augmentation keeps the same exactness.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .augment import dihedral_tensor, inverse_dihedral_tensor
from .axes import layout_for
from .data import Normalization, check_depth_for_prediction, normalize_channels, plane_input, triplet_indices
from .errors import InputError, PredictionStopped
from .events import PredictionEvent, ProgressCallback, StopRequest, emit
from .io import LazyStack, check_values, output_array, write_tiff_stream
from .memory import is_out_of_memory, release_cached_memory
from .registry import OUTPUTS
from .training import autocast_context, memory_format, resolve_device, resolve_precision
from .unet import DeconvUNet, UNet, prediction_radius
from .volume import margins_for, predict_volume

logger = logging.getLogger(__name__)


class NonFiniteOutputError(ValueError):
    """The network produced NaN or Inf values: its weights are damaged, or training diverged."""


def check_finite_output(array: np.ndarray, name: str = "denoised") -> None:
    if not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise NonFiniteOutputError(
            f"the {name} image has {bad} NaN or Inf values: the model's weights are damaged or its training "
            "diverged (try a lower learning rate); nothing was written"
        )


class Predictor:
    """Applies a trained model with its normalisation to new data."""

    def __init__(
        self,
        model: UNet,
        normalization: Normalization | Sequence[Normalization],
        mode: str,
        *,
        tile_size: int = 256,
        batch_size: int = 4,
        device: str = "auto",
        precision: str = "auto",
        output_normalization: Normalization | Sequence[Normalization] | None = None,
        output: str = "denoised",
        outputs: tuple[str, ...] | None = None,
        joint: bool = False,
        tile_size_z: int = 32,
        transforms: Sequence[int] = (0,),
    ):
        """``outputs`` (default ``(output,)``) are made together, from one forward pass per tile.

        ``transforms``: test-time augmentation, the dihedral elements (0-7, Y-X plane) each tile is
        run under, answers mapped back and averaged; ``(0,)`` runs the network once.

        ``normalization``: one, or one per image channel (the model was trained on that many
        channels); ``joint``: the network takes all channels at once and gives all of them back.
        """
        self.outputs = tuple(outputs) if outputs else (output,)
        for name in self.outputs:
            if name not in OUTPUTS:
                raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {name!r}")
            if name == "deconvolved" and not isinstance(model, DeconvUNet):
                raise ValueError("a deconvolved output needs a DecoNoising model (deconv.psf_sigma)")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dims = getattr(model, "dims", 2)
        self.format = memory_format(self.device, self.dims)
        self.model = model.to(device=self.device, memory_format=self.format).eval()
        self.normalizations = [normalization] if isinstance(normalization, Normalization) else list(normalization)
        self.normalization = self.normalizations[0]
        # Supervised models (CARE) predict in the target's intensity scale, not the input's.
        if output_normalization is None:
            self.output_normalizations = self.normalizations
        elif isinstance(output_normalization, Normalization):
            self.output_normalizations = [output_normalization]
        else:
            self.output_normalizations = list(output_normalization)
        self.output_normalization = self.output_normalizations[0]
        self.channels = len(self.normalizations)
        self.joint = joint and self.channels > 1
        self.out_channels = self.channels if self.joint else 1
        self.mode = mode
        step = model.step
        self.margin = -(-prediction_radius(model) // step) * step
        if self.dims == 3:
            # Per axis (Z, Y, X): without Z pooling the Z margin is much smaller than the lateral one.
            self.margins = margins_for(model)
            self.margin = self.margins[-1]
        self.tile_size_z = max(1, int(tile_size_z))
        self.tile_size = max(step, (int(tile_size) // step) * step)
        self.batch_size = max(1, int(batch_size))
        self.transforms = tuple(dict.fromkeys(int(choice) for choice in transforms)) or (0,)
        if any(not 0 <= choice < 8 for choice in self.transforms):
            raise ValueError(f"transforms are dihedral elements 0-7, got {self.transforms}")
        #: What running out of memory changed (smaller batches, then tiles), in words.
        self.memory_notes: list[str] = []

    # -- running out of memory -----------------------------------------------------------------
    def _retrying_smaller(self, predict: Callable[[], np.ndarray]) -> np.ndarray:
        """``predict()`` a plane or volume; out of memory, halve the batch (then the tile) and predict
        it again from the start, until it fits or nothing can shrink."""
        while True:
            try:
                return predict()
            except Exception as err:
                # A Python MemoryError is the host's arrays, which smaller tiles would not shrink.
                if isinstance(err, MemoryError) or not is_out_of_memory(err):
                    raise
                release_cached_memory()
                if not self._shrink():
                    raise MemoryError(
                        f"out of memory even with one tile of {self.tile_size} px per forward pass; "
                        "free memory (close other programs) or predict on the CPU"
                    ) from err

    def _shrink(self) -> bool:
        """Halve the batch, else the tile (never below one pooling step); False when neither can."""
        step = self.model.step
        if self.batch_size > 1:
            self.batch_size //= 2
            note = f"out of memory: {self.batch_size} tile(s) per forward pass now"
        elif self.tile_size > step:
            self.tile_size = max(step, (self.tile_size // 2) // step * step)
            if self.dims == 3:
                self.tile_size_z = max(1, self.tile_size_z // 2)
            note = f"out of memory: tiles of {self.tile_size} px now"
        elif self.dims == 3 and self.tile_size_z > 1:
            self.tile_size_z //= 2
            note = f"out of memory: tiles of {self.tile_size_z} slices now"
        else:
            return False
        self.memory_notes.append(note)
        logger.warning(note)
        return True

    # -- one plane ---------------------------------------------------------------------------
    def predict_normalized_plane(
        self,
        channels: np.ndarray,
        stop: StopRequest | None = None,
        on_tiles: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Predict one plane from normalised input channels ``(C, Y, X)``; returns normalised ``(Y, X)``
        (the first output; see :meth:`predict_plane_outputs` for all of them)."""
        return self.predict_plane_outputs(channels, stop, on_tiles)[0]

    def _forward(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.transforms == (0,):
            return self._network(tensor)
        total = None
        for choice in self.transforms:
            answer = self._network(dihedral_tensor(tensor, choice).contiguous(memory_format=self.format))
            answer = inverse_dihedral_tensor(answer.float(), choice)
            total = answer if total is None else total + answer
        return total / len(self.transforms)

    def _network(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.outputs == ("denoised",):
            return self.model(tensor)
        return self.model.outputs(tensor, self.outputs)

    def predict_plane_outputs(
        self,
        channels: np.ndarray,
        stop: StopRequest | None = None,
        on_tiles: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Every output of one plane, normalised, as ``(outputs, Y, X)`` (joint channels: ``(outputs x C, Y, X)``,
        output by output).

        ``on_tiles(done, total)`` is called after each batch of tiles of a plane made of several
        batches, so that a single large image reports progress too. Out of memory, the plane is
        predicted again with smaller batches or tiles (see :attr:`memory_notes`).
        """
        return self._retrying_smaller(lambda: self._plane_outputs(channels, stop, on_tiles))

    def _plane_outputs(
        self, channels: np.ndarray, stop: StopRequest | None, on_tiles: Callable[[int, int], None] | None
    ) -> np.ndarray:
        _, height, width = channels.shape
        step, m = self.model.step, self.margin
        extra_y, extra_x = (-height) % step, (-width) % step
        padded = np.pad(channels, ((0, 0), (m, m + extra_y), (m, m + extra_x)), mode="reflect")
        core_h, core_w = height + extra_y, width + extra_x
        output = np.empty((len(self.outputs) * self.out_channels, core_h, core_w), dtype=np.float32)
        tiles = [
            (y, x, min(self.tile_size, core_h - y), min(self.tile_size, core_w - x))
            for y in range(0, core_h, self.tile_size)
            for x in range(0, core_w, self.tile_size)
        ]
        # Tiles of equal shape go through the network together.
        by_shape: dict[tuple[int, int], list] = {}
        for tile in tiles:
            by_shape.setdefault(tile[2:], []).append(tile)
        batches = sum(-(-len(group) // self.batch_size) for group in by_shape.values())
        done = 0
        with torch.no_grad(), autocast_context(self.device, self.precision):
            for (th, tw), group in by_shape.items():
                for start in range(0, len(group), self.batch_size):
                    if stop is not None and stop.requested:
                        raise PredictionStopped("prediction stopped on request")
                    chunk = group[start : start + self.batch_size]
                    batch = np.stack([padded[:, y : y + th + 2 * m, x : x + tw + 2 * m] for y, x, _, _ in chunk])
                    tensor = torch.from_numpy(batch).to(self.device).contiguous(memory_format=self.format)
                    result = self._forward(tensor)[:, :, m : m + th, m : m + tw].float().cpu().numpy()
                    for (y, x, _, _), tile in zip(chunk, result, strict=True):
                        output[:, y : y + th, x : x + tw] = tile
                    done += 1
                    if on_tiles is not None and batches > 1 and done < batches:
                        on_tiles(done, batches)
        return output[:, :height, :width]

    def predict_volume_outputs(
        self,
        channels: np.ndarray,
        stop: StopRequest | None = None,
        on_tiles: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """3D mode: every output of one normalised ``(C, Z, Y, X)`` volume, ``(outputs x C_out, Z, Y, X)``,
        tiled in Z, Y and X with the exact per-axis margins (smaller ones out of memory)."""

        def forward(tensor: torch.Tensor) -> torch.Tensor:
            return self._forward(tensor.contiguous(memory_format=self.format)).float()

        def volume() -> np.ndarray:
            with autocast_context(self.device, self.precision):
                return predict_volume(
                    forward, channels, steps=self.model.steps, margins=self.margins,
                    tile=(self.tile_size_z, self.tile_size, self.tile_size), batch_size=self.batch_size, stop=stop,
                    on_tiles=on_tiles, device=self.device,
                )  # fmt: skip

        return self._retrying_smaller(volume)

    # -- images and stacks ---------------------------------------------------------------------
    def predict(
        self,
        image: np.ndarray,
        *,
        axes: str | None = None,
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
    ) -> np.ndarray:
        """Denoise an image of ``axes`` (None: a ``(Y, X)`` image or ``(Z, Y, X)`` stack); returns float32
        of the same shape (the first of the predictor's outputs)."""
        return self.predict_all(image, axes=axes, callback=callback, stop=stop)[self.outputs[0]]

    def check_channels(self, channels: int, name: str = "image") -> None:
        if channels != self.channels:
            raise InputError(
                f"{name}: has {channels} channel{'s' if channels != 1 else ''}, but the model was trained on "
                f"{self.channels}; give the image's axes if a channel axis was not recognised"
            )

    def predict_all(
        self,
        image: np.ndarray,
        *,
        axes: str | None = None,
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
    ) -> dict[str, np.ndarray]:
        """Every output of the predictor for an image of ``axes``, each of the input's shape."""
        image = np.asarray(image)
        layout = layout_for(image.shape, image.dtype, axes)
        self.check_channels(layout.channels)
        check_depth_for_prediction(layout.depth, self.mode)
        check_values(image, "image")
        canonical = layout.to_canonical(image)
        samples, channels, depth = canonical.shape[:3]
        out = np.empty((len(self.outputs), *canonical.shape), dtype=np.float32)
        # Progress counts planes: every (sample, channel, slice) independently, or (sample, slice) jointly.
        groups = [None] if self.joint else list(range(channels))
        total, done = samples * len(groups) * depth, 0
        start = time.perf_counter()
        for n in range(samples):
            for c in groups:
                if c is None:
                    source, norms, where = canonical[n], self.normalizations, slice(None)
                else:
                    source, norms, where = canonical[n, c : c + 1], self.normalizations[c : c + 1], slice(c, c + 1)
                normalized = normalize_channels(source, norms)
                out_norms = self.output_normalizations if c is None else self.output_normalizations[c : c + 1]
                if self.mode == "3d":
                    # Progress in volumes: a volume's tiles move the fraction through its own share.
                    report = _tile_reporter(callback, done // depth, total // depth, start)
                    volume = self.predict_volume_outputs(normalized, stop, report)
                    volume = volume.reshape(len(self.outputs), len(out_norms), *normalized.shape[1:])
                    for k, norm in enumerate(out_norms):
                        volume[:, k] = norm.denormalize(volume[:, k])
                    out[:, n, where] = volume
                    done += depth
                    emit(callback, _plane_event(done - 1, total, start))
                    continue
                for z in range(depth):
                    planes = self.predict_plane_outputs(
                        plane_input(normalized, z, self.mode), stop, _tile_reporter(callback, done, total, start)
                    ).reshape(len(self.outputs), len(out_norms), *normalized.shape[2:])
                    for k, norm in enumerate(out_norms):
                        planes[:, k] = norm.denormalize(planes[:, k])
                    out[:, n, where, z] = planes
                    done += 1
                    emit(callback, _plane_event(done - 1, total, start))
        return {name: layout.from_canonical(out[i]) for i, name in enumerate(self.outputs)}

    def predict_file(
        self,
        source: str | Path,
        target: str | Path,
        *,
        dtype: str = "float32",
        callback: ProgressCallback | None = None,
        stop: StopRequest | None = None,
    ) -> Path:
        """Denoise a single-channel TIFF stack slice by slice, streaming the result to ``target``
        (bounded memory), with the source's axes and pixel sizes; ``dtype`` "input" keeps its type."""
        if self.mode == "3d":
            raise ValueError("a 3D model predicts whole volumes, not plane by plane; use predict_all")
        stack = LazyStack(source)
        try:
            self.check_channels(1, str(source))
            check_depth_for_prediction(len(stack), self.mode, name=str(source))
            out_dtype = output_array(np.zeros(1, np.float32), dtype, stack.dtype).dtype
            planes = (
                output_array(plane, dtype, stack.dtype) for plane in self._stream(stack, callback, stop, str(target))
            )
            return write_tiff_stream(target, planes, stack.shape, out_dtype, axes=stack.meta.axes, meta=stack.meta)
        finally:
            stack.close()

    def _stream(self, stack: LazyStack, callback, stop, file: str) -> Iterator[np.ndarray]:
        start = time.perf_counter()
        depth = len(stack)
        cache: dict[int, np.ndarray] = {}
        for z in range(depth):
            wanted = triplet_indices(z, depth) if self.mode == "2.5d" else (z,)
            cache = {i: cache[i] if i in cache else self._read_plane(stack, i) for i in set(wanted)}
            channels = np.stack([cache[i] for i in wanted])
            plane = self.predict_normalized_plane(channels, stop, _tile_reporter(callback, z, depth, start, file))
            check_finite_output(plane, f"{self.outputs[0]} plane {z + 1}")
            yield self.output_normalization.denormalize(plane)
            emit(callback, _plane_event(z, depth, start, file))

    def _read_plane(self, stack: LazyStack, index: int) -> np.ndarray:
        return self.normalization.normalize(stack[index])


def _plane_event(z: int, depth: int, start: float, file: str = "") -> PredictionEvent:
    elapsed = time.perf_counter() - start
    done = (z + 1) / depth
    return PredictionEvent(z + 1, depth, file=file, elapsed=elapsed, time_left=elapsed / done * (1 - done))


def _tile_reporter(callback: ProgressCallback | None, z: int, depth: int, start: float, file: str = ""):
    """``on_tiles`` for plane ``z``: a tile event whose fraction is ``(z + done / total) / depth``."""
    if callback is None:
        return None

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        fraction = (z + done / total) / depth
        event = PredictionEvent(
            z + 1, depth, done, total, file=file, elapsed=elapsed, time_left=elapsed / fraction * (1 - fraction)
        )
        emit(callback, event)

    return report
