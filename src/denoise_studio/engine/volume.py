"""True 3D mode building blocks: tiled prediction of volumes, 3D patch extraction and augmentation.

Exactness (as for the 2D predictor in :mod:`.prediction`, axis by axis): a 3D U-Net is
translation-equivariant only for shifts by its pooling step on each axis (``UNet.steps``: 2**depth
on Y and X, on Z too with Z pooling, else 1), and a tile's border voxels see zero padding. The
volume is therefore padded at the end of each axis up to a multiple of that axis' step, then
reflected by that axis' margin (its receptive radius rounded up to the step, :func:`margins_for`);
tiles start on the pooling grid of that padded volume and carry the margin on every side. A tiled
prediction then equals the untiled one (a single tile holding the whole volume) up to float
rounding. The padding is computed once for the whole volume, so any padding mode keeps that
equality; numpy's reflection also serves a single slice or a margin longer than the axis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .errors import PredictionStopped
from .events import StopRequest
from .unet import UNet, prediction_radii


def margins_for(model: UNet) -> tuple[int, ...]:
    """The tile margin per spatial axis: the prediction radius rounded up to that axis' step."""
    return tuple(-(-radius // step) * step for radius, step in zip(prediction_radii(model), model.steps, strict=True))


def predict_volume(
    forward: Callable[[torch.Tensor], torch.Tensor],
    channels: np.ndarray,
    *,
    steps: Sequence[int],
    margins: Sequence[int],
    tile: Sequence[int],
    batch_size: int = 1,
    stop: StopRequest | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Predict one normalised volume ``channels`` ``(C, Z, Y, X)`` tile by tile; returns ``(K, Z, Y, X)``
    float32, ``K`` being the channels ``forward`` returns.

    ``forward`` maps ``(B, C, z, y, x)`` to ``(B, K, z, y, x)``; ``steps`` and ``margins`` are per axis
    ``(Z, Y, X)`` (the model's ``steps`` and :func:`margins_for`); ``tile`` is the core size of a tile
    per axis, rounded down to the step (at least one step). Tiles of the same shape go through
    ``forward`` ``batch_size`` at a time, moved to ``device``; the caller sets up autocast if any.
    ``stop.requested`` (any object with that flag) is checked before each batch, raising
    :class:`PredictionStopped`; ``on_tiles(done, total)`` is called after each batch but the last
    of a volume of several batches.
    """
    volume = np.asarray(channels, dtype=np.float32)
    if volume.ndim != 4:
        raise ValueError(f"a volume to predict is (C, Z, Y, X), got shape {volume.shape}")
    if 0 in volume.shape:
        raise ValueError(f"a volume to predict needs at least one voxel and channel, got shape {volume.shape}")
    steps, margins = _per_axis(steps, "steps"), _per_axis(margins, "margins")
    tile = _per_axis(tile, "tile")
    if any(s < 1 for s in steps) or any(m < 0 for m in margins):
        raise ValueError(f"steps must be positive and margins non-negative, got {steps} and {margins}")
    sizes = volume.shape[1:]
    extra = tuple((-size) % step for size, step in zip(sizes, steps, strict=True))
    core = tuple(size + e for size, e in zip(sizes, extra, strict=True))
    tile = tuple(max(step, (int(t) // step) * step) for t, step in zip(tile, steps, strict=True))
    padding = ((0, 0), *((m, m + e) for m, e in zip(margins, extra, strict=True)))
    padded = np.pad(volume, padding, mode="reflect")

    tiles = [
        (z, y, x, min(tile[0], core[0] - z), min(tile[1], core[1] - y), min(tile[2], core[2] - x))
        for z in range(0, core[0], tile[0])
        for y in range(0, core[1], tile[1])
        for x in range(0, core[2], tile[2])
    ]
    # Tiles of equal shape go through the network together.
    by_shape: dict[tuple[int, int, int], list] = {}
    for item in tiles:
        by_shape.setdefault(item[3:], []).append(item)
    batch_size = max(1, int(batch_size))
    batches = sum(-(-len(group) // batch_size) for group in by_shape.values())
    mz, my, mx = margins
    output: np.ndarray | None = None
    done = 0
    with torch.no_grad():
        for (tz, ty, tx), group in by_shape.items():
            for start in range(0, len(group), batch_size):
                if stop is not None and stop.requested:
                    raise PredictionStopped("prediction stopped on request")
                chunk = group[start : start + batch_size]
                batch = np.stack(
                    [padded[:, z : z + tz + 2 * mz, y : y + ty + 2 * my, x : x + tx + 2 * mx] for z, y, x, *_ in chunk]
                )
                result = forward(torch.from_numpy(batch).to(device))
                result = result[:, :, mz : mz + tz, my : my + ty, mx : mx + tx].float().cpu().numpy()
                if output is None:
                    output = np.empty((result.shape[1], *core), dtype=np.float32)
                for (z, y, x, *_), block in zip(chunk, result, strict=True):
                    output[:, z : z + tz, y : y + ty, x : x + tx] = block
                done += 1
                if on_tiles is not None and batches > 1 and done < batches:
                    on_tiles(done, batches)
    assert output is not None  # at least one voxel, hence at least one tile
    return np.ascontiguousarray(output[:, : sizes[0], : sizes[1], : sizes[2]])


def _per_axis(values: Sequence[int], name: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{name} must give one value per axis (Z, Y, X), got {values}")
    return values  # type: ignore[return-value]


def patches_3d(volume: np.ndarray, origins: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The patches of ``volume`` ``(C, Z, Y, X)`` of ``size`` ``(pz, py, px)`` whose first voxels are
    ``origins`` ``(N, 3)``, as ``(N, C, pz, py, px)`` (one gather, no Python loop over patches)."""
    volume = np.asarray(volume)
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 3)
    size = _per_axis(size, "size")
    limits = np.asarray(volume.shape[1:]) - np.asarray(size)
    if (limits < 0).any():
        raise ValueError(f"patches of {size} do not fit in a volume of {volume.shape[1:]}")
    if ((origins < 0) | (origins > limits)).any():
        raise ValueError(f"patch origins must lie within (0, 0, 0) and {tuple(int(v) for v in limits)}")
    windows = np.lib.stride_tricks.sliding_window_view(volume, size, axis=(1, 2, 3))
    return np.moveaxis(windows[:, origins[:, 0], origins[:, 1], origins[:, 2]], 0, 1)
