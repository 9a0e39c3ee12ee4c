"""Blind-spot masking for the Noise2Void family (N2V, N2V2, structN2V).

For a batch of patches this chooses blind-spot centres on a stratified grid (one random pixel in
every box, so the masked fraction is exact and centres spread evenly), replaces each centre by a
value computed from its neighbourhood, and, with a struct mask, overwrites the other kernel pixels
around each centre with random values. The loss is computed at the centres only.

Volumes (3D mode, patches ``(B, C, D, H, W)``) work the same way with a 3D grid of boxes and a
cubic neighbourhood; struct masks are 2D/2.5D only.

Leak-proofing: a replacement value never comes from the centre itself, from another centre, or
from any pixel covered by a struct kernel, so no network input carries the noise of a blind spot.
This holds in 3D as well: the neighbourhood cube excludes the centre and every other centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

STRATEGIES = ("uniform", "median", "mean")


@dataclass
class MaskedBatch:
    """Network input, target and loss mask for one batch."""

    inputs: torch.Tensor  # (B, C, H, W), or (B, C, D, H, W) for volumes
    targets: torch.Tensor  # (B, 1, H, W) or (B, 1, D, H, W): the original centre channel
    loss_mask: torch.Tensor  # (B, 1, H, W) or (B, 1, D, H, W) bool: blind-spot centres


def struct_kernel_array(struct_mask: list | np.ndarray | None, channels: int) -> np.ndarray | None:
    """The struct kernel as ``bool[channels, K, K]`` aligned with the input channels (or None)."""
    if struct_mask is None:
        return None
    kernel = np.asarray(struct_mask, dtype=bool)
    if kernel.ndim == 2:
        kernel = kernel[np.newaxis]
    if kernel.shape[0] == 1 and channels == 3:
        # A 2D kernel in 2.5D mode masks the centre slice only.
        full = np.zeros((3, *kernel.shape[1:]), dtype=bool)
        full[1] = kernel[0]
        kernel = full
    if kernel.shape[0] != channels:
        raise ValueError(f"struct mask has {kernel.shape[0]} planes, the input has {channels} channels")
    return kernel


def stratified_centres(batch: int, height: int, width: int, percent: float, generator: torch.Generator) -> torch.Tensor:
    """One random centre in each box of a grid whose density gives ``percent`` masked pixels.

    Returns a bool tensor ``(B, H, W)``.
    """
    box = math.sqrt(100.0 / percent)
    rows = max(1, round(height / box))
    cols = max(1, round(width / box))
    row_edges = torch.arange(rows, dtype=torch.float64) * (height / rows)
    col_edges = torch.arange(cols, dtype=torch.float64) * (width / cols)
    uy = torch.rand((batch, rows, cols), generator=generator, dtype=torch.float64)
    ux = torch.rand((batch, rows, cols), generator=generator, dtype=torch.float64)
    ys = (row_edges[None, :, None] + uy * (height / rows)).floor().long().clamp_(0, height - 1)
    xs = (col_edges[None, None, :] + ux * (width / cols)).floor().long().clamp_(0, width - 1)
    centres = torch.zeros((batch, height, width), dtype=torch.bool)
    b = torch.arange(batch)[:, None, None].expand_as(ys)
    centres[b, ys, xs] = True
    return centres


def stratified_centres_3d(
    batch: int, depth: int, height: int, width: int, percent: float, generator: torch.Generator
) -> torch.Tensor:
    """One random centre in each box of a 3D grid whose density gives ``percent`` masked voxels.

    Patches are often thin in Z (a few slices of 64x64 pixels), where cubic boxes would round the
    slab count far off: the counts are chosen one axis after the other, each making up for the
    rounding of the previous ones. Box edges are whole voxels, so no two boxes share a voxel and
    every box holds exactly one centre. Returns bool ``(B, D, H, W)``.
    """
    wanted = depth * height * width * percent / 100.0
    slabs = min(depth, max(1, round(depth / (100.0 / percent) ** (1 / 3))))
    rows = min(height, max(1, round(height / math.sqrt(height * width * slabs / wanted))))
    cols = min(width, max(1, round(wanted / (slabs * rows))))
    counts = (slabs, rows, cols)
    coordinates = []
    for axis, (count, size) in enumerate(zip(counts, (depth, height, width), strict=True)):
        edges = torch.div(torch.arange(count + 1) * size, count, rounding_mode="floor")
        shape = [1, 1, 1, 1]
        shape[axis + 1] = count
        low, extent = edges[:-1].view(shape), (edges[1:] - edges[:-1]).view(shape)
        u = torch.rand((batch, *counts), generator=generator, dtype=torch.float64)
        coordinates.append(low + (u * extent).floor().long().clamp_(max=extent - 1))
    zs, ys, xs = coordinates
    centres = torch.zeros((batch, depth, height, width), dtype=torch.bool)
    b = torch.arange(batch)[:, None, None, None].expand_as(zs)
    centres[b, zs, ys, xs] = True
    return centres


def _neighbour_offsets(radius: int, strategy: str, excluded: np.ndarray | None) -> np.ndarray:
    """Offsets (dy, dx) a replacement value may come from: not the centre, not in the struct kernel."""
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if (dy, dx) != (0, 0)]
    if excluded is not None:
        k = excluded.shape[-1] // 2
        offsets = [o for o in offsets if not (abs(o[0]) <= k and abs(o[1]) <= k and excluded[o[0] + k, o[1] + k])]
    if not offsets:
        raise ValueError("the struct mask covers the whole replacement neighbourhood; raise neighbourhood_radius")
    return np.asarray(offsets, dtype=np.int64)


def _neighbour_offsets_3d(radius: int) -> torch.Tensor:
    """Offsets (dz, dy, dx) of the neighbourhood cube a replacement value may come from, centre excluded."""
    if radius < 1:
        raise ValueError(f"the replacement neighbourhood radius must be at least 1, got {radius}")
    span = torch.arange(-radius, radius + 1)
    offsets = torch.cartesian_prod(span, span, span)
    return offsets[(offsets != 0).any(dim=1)]


#: Centres x neighbours handled at once in 3D, where a cube of radius 5 has 1330 voxels: bounds the
#: index tensors to some tens of megabytes whatever the batch.
_GATHER_ELEMENTS = 1 << 21


def _footprint(centres: torch.Tensor, kernel: np.ndarray | None) -> torch.Tensor:
    """Pixels covered by any blind spot (centres dilated by the centre plane of the kernel)."""
    if kernel is None:
        return centres
    plane = torch.from_numpy(kernel[kernel.shape[0] // 2].astype(np.float32))[None, None]
    k = plane.shape[-1] // 2
    covered = F.conv2d(centres[:, None].float(), plane.flip(-1, -2), padding=k)
    return covered[:, 0] > 0.5


def mask_batch(
    patches: torch.Tensor,
    percent: float,
    strategy: str,
    radius: int,
    generator: torch.Generator,
    struct_kernel: np.ndarray | None = None,
) -> MaskedBatch:
    """Apply blind-spot masking to ``patches`` (B, C, H, W) or volumes (B, C, D, H, W); the centre
    channel is C // 2."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown masking strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if patches.dim() == 5:
        if struct_kernel is not None:
            raise ValueError("struct masks are 2D/2.5D only: 3D patches cannot use a struct kernel")
        return _mask_volumes(patches, percent, strategy, radius, generator)
    if patches.dim() != 4:
        raise ValueError(f"patches must be (B, C, H, W) or (B, C, D, H, W), got shape {tuple(patches.shape)}")
    patches = patches.float()
    batch, channels, height, width = patches.shape
    centre_channel = channels // 2
    original = patches[:, centre_channel]
    centres = stratified_centres(batch, height, width, percent, generator)
    excluded = None if struct_kernel is None else struct_kernel[struct_kernel.shape[0] // 2]
    footprint = _footprint(centres, struct_kernel)

    b, ys, xs = torch.nonzero(centres, as_tuple=True)
    offsets = torch.from_numpy(_neighbour_offsets(radius, strategy, excluded))
    ny = ys[:, None] + offsets[None, :, 0]
    nx = xs[:, None] + offsets[None, :, 1]
    inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
    nyc, nxc = ny.clamp(0, height - 1), nx.clamp(0, width - 1)
    bb = b[:, None].expand_as(nyc)
    values = original[bb, nyc, nxc]
    valid = inside & ~footprint[bb, nyc, nxc]

    replacement = _replacement_values(values, valid, strategy, generator)
    lo = original.amin(dim=(1, 2))
    hi = original.amax(dim=(1, 2))
    no_valid = ~valid.any(dim=1)
    if no_valid.any():
        # Rare with dense struct masks: no clean neighbour left, fall back to a random value.
        u = torch.rand(int(no_valid.sum()), generator=generator)
        replacement[no_valid] = lo[b[no_valid]] + u * (hi - lo)[b[no_valid]]

    inputs = patches.clone()
    inputs[b, centre_channel, ys, xs] = replacement
    if struct_kernel is not None:
        _randomise_struct_pixels(inputs, b, ys, xs, struct_kernel, lo, hi, generator)
    return MaskedBatch(inputs=inputs, targets=original[:, None].clone(), loss_mask=centres[:, None])


def _mask_volumes(
    patches: torch.Tensor, percent: float, strategy: str, radius: int, generator: torch.Generator
) -> MaskedBatch:
    """:func:`mask_batch` for ``(B, C, D, H, W)``: a 3D grid of centres, replacements from the cube."""
    patches = patches.float()
    batch, channels, depth, height, width = patches.shape
    centre_channel = channels // 2
    original = patches[:, centre_channel]
    centres = stratified_centres_3d(batch, depth, height, width, percent, generator)
    b, zs, ys, xs = torch.nonzero(centres, as_tuple=True)
    offsets = _neighbour_offsets_3d(radius)
    replacement = torch.empty(b.shape, dtype=original.dtype)
    no_valid = torch.zeros(b.shape, dtype=torch.bool)
    chunk = max(1, _GATHER_ELEMENTS // len(offsets))
    for start in range(0, len(b), chunk):
        part = slice(start, start + chunk)
        nz = zs[part, None] + offsets[None, :, 0]
        ny = ys[part, None] + offsets[None, :, 1]
        nx = xs[part, None] + offsets[None, :, 2]
        inside = (nz >= 0) & (nz < depth) & (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        nz, ny, nx = nz.clamp(0, depth - 1), ny.clamp(0, height - 1), nx.clamp(0, width - 1)
        bb = b[part, None].expand_as(nz)
        valid = inside & ~centres[bb, nz, ny, nx]
        replacement[part] = _replacement_values(original[bb, nz, ny, nx], valid, strategy, generator)
        no_valid[part] = ~valid.any(dim=1)
    if no_valid.any():
        # Only in volumes too small for any clean neighbour: fall back to a random value.
        lo = original.amin(dim=(1, 2, 3))
        hi = original.amax(dim=(1, 2, 3))
        u = torch.rand(int(no_valid.sum()), generator=generator)
        replacement[no_valid] = lo[b[no_valid]] + u * (hi - lo)[b[no_valid]]

    inputs = patches.clone()
    inputs[b, centre_channel, zs, ys, xs] = replacement
    return MaskedBatch(inputs=inputs, targets=original[:, None].clone(), loss_mask=centres[:, None])


def _replacement_values(
    values: torch.Tensor, valid: torch.Tensor, strategy: str, generator: torch.Generator
) -> torch.Tensor:
    if strategy == "uniform":
        scores = torch.rand(values.shape, generator=generator)
        scores = torch.where(valid, scores, torch.full_like(scores, -1.0))
        choice = scores.argmax(dim=1)
        return values.gather(1, choice[:, None])[:, 0]
    masked = torch.where(valid, values, torch.full_like(values, float("nan")))
    if strategy == "median":
        # torch.nanmedian returns the lower middle value for an even count; the median (as in
        # numpy and the N2V2 reference) is the mean of the two middle values. NaNs sort last.
        ordered = masked.sort(dim=1).values
        count = valid.sum(dim=1, keepdim=True)
        low = ordered.gather(1, ((count - 1) // 2).clamp(min=0))
        high = ordered.gather(1, (count // 2).clamp(max=ordered.shape[1] - 1))
        return ((low + high) / 2)[:, 0]
    return torch.nanmean(masked, dim=1)


def _randomise_struct_pixels(
    inputs: torch.Tensor,
    b: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    kernel: np.ndarray,
    lo: torch.Tensor,
    hi: torch.Tensor,
    generator: torch.Generator,
) -> None:
    """Fill every non-centre struct-kernel pixel around each centre with uniform values in [min, max]."""
    _, _, height, width = inputs.shape
    planes, size, _ = kernel.shape
    k = size // 2
    centre_plane = planes // 2
    for plane, dy, dx in zip(*np.nonzero(kernel), strict=True):
        if plane == centre_plane and dy == k and dx == k:
            continue
        py, px = ys + int(dy) - k, xs + int(dx) - k
        keep = (py >= 0) & (py < height) & (px >= 0) & (px < width)
        bk = b[keep]
        u = torch.rand(bk.shape, generator=generator)
        channel = int(plane) if planes == inputs.shape[1] else inputs.shape[1] // 2
        inputs[bk, channel, py[keep], px[keep]] = lo[bk] + u * (hi - lo)[bk]
