"""Training data: normalisation, the train/validation split, patch sampling, augmentation, 2.5D triplets.

Images arrive as ``(C, Z, Y, X)`` arrays (one sample of the engine's ``(N, C, Z, Y, X)``; a
single-channel ``(Z, Y, X)`` stack is C=1, a 2D image Z=1). In 2D mode every slice is an
independent training image; in 2.5D mode each image channel gives three network channels, slices
Z-1, Z and Z+1 (reflected at the stack ends), and the network predicts the centre slice.

Channels are *independent* (each channel its own normalisation and its own patches, one network
with one input group shared by all channels) or *joint* (all channels of a patch in together, all
channels out); a network's input is laid out as one group of 1 (2D) or 3 (2.5D) channels per image
channel.

The validation set is a set of patch-sized blocks held out in *every* slice; training patches are
drawn only where they do not touch a held-out block, so no validation pixel is ever trained on
(and in 2.5D, no validation pixel is seen as a neighbouring slice either).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .augment import augment, augment_3d, dihedral, kernel_symmetries  # noqa: F401 - dihedral: it lived here
from .config import MIN_SLICES_2P5D, DataConfig
from .io import InputError, check_image, check_values, image_layout
from .lazy import check_lazy_values, is_lazy, sample_planes
from .registry import MIN_SLICES_3D

#: Validation patches are capped so that a validation pass stays cheap next to an epoch.
MAX_VALIDATION_PATCHES = 64


@dataclass(frozen=True)
class Normalization:
    """A linear intensity mapping ``(x - offset) / scale``, stored with the model."""

    offset: float
    scale: float
    kind: str = "meanstd"

    @classmethod
    def fit(cls, stacks: Sequence[np.ndarray], config: DataConfig) -> Normalization:
        # Subsample very large data: the statistics converge long before every pixel is read.
        values = np.concatenate([np.asarray(s, dtype=np.float64).ravel()[:: _stride(s.size)] for s in stacks])
        if config.normalization == "percentile":
            low, high = np.percentile(values, [config.percentile_low, config.percentile_high])
            offset, scale = float(low), float(high - low)
        else:
            offset, scale = float(values.mean()), float(values.std())
        if not np.isfinite(scale):
            raise InputError(
                f"the training data's values are too large: their intensity spread overflows (scale {scale}); "
                "rescale the images to a smaller range first"
            )
        if scale <= 0:
            raise InputError(
                "the training data has no intensity spread in the chosen normalisation range; "
                "it is constant or nearly so"
            )
        return cls(offset=offset, scale=scale, kind=config.normalization)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        return ((np.asarray(image, dtype=np.float32) - np.float32(self.offset)) / np.float32(self.scale)).astype(
            np.float32, copy=False
        )

    def denormalize(self, image: np.ndarray) -> np.ndarray:
        return (np.asarray(image, dtype=np.float32) * np.float32(self.scale) + np.float32(self.offset)).astype(
            np.float32, copy=False
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        """Read stored statistics; a damaged file (zero, negative or non-finite scale) raises ValueError
        here rather than silently producing NaN images at prediction."""
        offset, scale = float(data["offset"]), float(data["scale"])
        if not (np.isfinite(offset) and np.isfinite(scale) and scale > 0):
            raise ValueError(f"normalisation needs a finite offset and a positive scale, got {offset!r}, {scale!r}")
        return cls(offset=offset, scale=scale, kind=str(data.get("kind", "meanstd")))


def _stride(size: int, target: int = 4_000_000) -> int:
    return max(1, size // target)


def fit_channel_normalizations(images: Sequence[np.ndarray], config: DataConfig) -> list[Normalization]:
    """One normalisation per channel of ``(C, Z, Y, X)`` images, each fitted on that channel of every image."""
    channels = images[0].shape[0]
    # An image on disk is fitted on evenly spaced sample planes; one in memory on all of its pixels.
    return [
        Normalization.fit([sample_planes(image[c]) if is_lazy(image) else image[c] for image in images], config)
        for c in range(channels)
    ]


def normalize_channels(image: np.ndarray, normalizations: Sequence[Normalization]) -> np.ndarray:
    """``(C, ...)`` normalised channel by channel (float32); an image on disk is normalised as it is read."""
    if is_lazy(image):
        return image.normalized(normalizations)
    return np.stack([norm.normalize(image[c]) for c, norm in enumerate(normalizations)])


def input_channels(mode: str) -> int:
    """Network input channels per image channel: 3 (slices Z-1, Z, Z+1) in 2.5D, else 1."""
    return 3 if mode == "2.5d" else 1


def network_channels(mode: str, channels: int = 1, joint: bool = False) -> tuple[int, int]:
    """(in, out) channels of the network for ``channels`` image channels."""
    groups = channels if joint else 1
    return input_channels(mode) * groups, groups


def as_channel_stack(image: np.ndarray) -> np.ndarray:
    """A ``(Z, Y, X)`` stack as ``(1, Z, Y, X)``; ``(C, Z, Y, X)`` as it is."""
    image = np.asarray(image)
    return image[np.newaxis] if image.ndim == 3 else image


def check_stack_for_mode(stack: np.ndarray, mode: str, name: str = "image") -> np.ndarray:
    """Validate an image for a mode; 2.5D needs a real stack of enough slices."""
    check_layout_for_mode(np.shape(stack), np.asarray(stack).dtype, mode, name)
    return check_image(stack, name=name)


def check_layout_for_mode(shape: tuple[int, ...], dtype, mode: str, name: str = "image") -> tuple[int, int, int]:
    """The cheap part of :func:`check_stack_for_mode`: shape and type only, no pixel is read."""
    zyx = image_layout(shape, dtype, name)
    if mode == "2.5d" and zyx[0] < MIN_SLICES_2P5D:
        raise InputError(
            f"{name}: insufficient stack depth for 2.5D: {zyx[0]} slice"
            f"{'s' if zyx[0] != 1 else ''}, need {MIN_SLICES_2P5D}; use 2D mode"
        )
    if mode == "3d" and zyx[0] < MIN_SLICES_3D:
        raise InputError(
            f"{name}: insufficient stack depth for 3D: {zyx[0]} slice{'s' if zyx[0] != 1 else ''}, need at least "
            f"{MIN_SLICES_3D} (and data.patch_size_z for training); use 2D mode"
        )
    return zyx


def check_training_images(images: np.ndarray | Sequence[np.ndarray], config) -> list[np.ndarray]:
    """Training images as checked ``(C, Z, Y, X)`` arrays: a 4D array is taken as ``(C, Z, Y, X)``
    (the engine's layout of one sample), anything else as an image or stack without axes."""
    if isinstance(images, np.ndarray):
        images = [images]
    checked = []
    for index, image in enumerate(images):
        name = f"image {index + 1}"
        if is_lazy(image):
            check_layout_for_mode(image.shape[1:], image.dtype, config.mode, name)
            check_lazy_values(image, name)
            checked.append(image)
            continue
        image = np.asarray(image)
        if image.ndim == 4:
            check_layout_for_mode((image.shape[1], *image.shape[2:]), image.dtype, config.mode, name)
            check_values(image, name)
            checked.append(image)
        else:
            checked.append(check_stack_for_mode(image, config.mode, name=name)[np.newaxis])
    counts = sorted({image.shape[0] for image in checked})
    if len(counts) > 1:
        raise InputError(f"the training images have different numbers of channels ({', '.join(map(str, counts))})")
    if counts[0] > 1 and config.psf_sigma is not None and config.data.channels != "joint":
        raise InputError(
            f"DecoNoising with {counts[0]} independent channels is not supported: each channel has its own zero "
            "level; train the channels jointly (data.channels joint) or one channel at a time"
        )
    return checked


#: A 2.5D model needs real neighbouring slices; with fewer it would see copies of the centre slice.
MIN_SLICES_2P5D_PREDICTION = 3


def check_depth_for_prediction(depth: int, mode: str, name: str = "image") -> None:
    if mode == "2.5d" and depth < MIN_SLICES_2P5D_PREDICTION:
        raise InputError(
            f"{name}: a 2.5D model needs a stack of at least {MIN_SLICES_2P5D_PREDICTION} slices, got {depth}; "
            "use a 2D model for single images"
        )


def triplet_indices(z: int, depth: int) -> tuple[int, int, int]:
    """Slices Z-1, Z, Z+1 with reflection at the ends (slice -1 is slice 1)."""
    if depth == 1:
        return (0, 0, 0)
    below = z - 1 if z > 0 else 1
    above = z + 1 if z < depth - 1 else depth - 2
    return (below, z, above)


def plane_input(stack: np.ndarray, z: int, mode: str) -> np.ndarray:
    """Network input for slice ``z`` of a ``(Z, Y, X)`` stack: (1, Y, X) in 2D, (3, Y, X) in 2.5D;
    of a ``(C, Z, Y, X)`` image: the groups of every channel, (C, Y, X) or (3C, Y, X)."""
    if stack.ndim == 4:
        return np.concatenate([plane_input(channel, z, mode) for channel in stack])
    if mode == "2.5d":
        return np.stack([stack[i] for i in triplet_indices(z, stack.shape[0])])
    return stack[z][np.newaxis]


class PatchSampler:
    """Draws training patches outside held-out validation blocks, for every slice of every stack.

    ``stacks`` are ``(Z, Y, X)`` or ``(C, Z, Y, X)`` (normalised). With ``joint`` a patch holds every
    channel; otherwise each channel is a training image of its own (same validation blocks as the
    other channels of its image, so no validated place is trained on in another channel).
    """

    def __init__(
        self,
        stacks: Sequence[np.ndarray],
        mode: str,
        config: DataConfig,
        rng: np.random.Generator,
        struct_kernel: np.ndarray | None = None,
        targets: Sequence[np.ndarray] | None = None,
        joint: bool = False,
    ):
        images = [s if is_lazy(s) else as_channel_stack(np.asarray(s, dtype=np.float32)) for s in stacks]
        target_images = (
            None if targets is None else [as_channel_stack(np.asarray(t, dtype=np.float32)) for t in targets]
        )
        if joint:
            self.stacks, self.targets, owners = images, target_images, list(range(len(images)))
        else:
            self.stacks = [image[c : c + 1] for image in images for c in range(image.shape[0])]
            self.targets = (
                None if target_images is None
                else [target[c : c + 1] for target in target_images for c in range(target.shape[0])]
            )  # fmt: skip
            owners = [index for index, image in enumerate(images) for _ in range(image.shape[0])]
        # Paired training: the target patch at the same place rides along as extra last channels,
        # so that it gets exactly the same augmentation as the input.
        if self.targets is not None:
            if len(self.targets) != len(self.stacks):
                raise InputError(f"{len(self.stacks)} input image(s) but {len(self.targets)} target(s)")
            for index, (stack, target) in enumerate(zip(self.stacks, self.targets, strict=True)):
                if stack.shape != target.shape:
                    raise InputError(
                        f"image {owners[index] + 1}: input {stack.shape} and target {target.shape} differ in shape"
                    )
        self.mode = mode
        self.config = config
        self.patch = config.patch_size
        #: Slices per patch: data.patch_size_z in 3D, one plane otherwise.
        self.patch_z = config.patch_size_z if mode == "3d" else 1
        for index, image in enumerate(images):
            if image.shape[1] < self.patch_z:
                raise InputError(
                    f"image {index + 1}: {image.shape[1]} slices, fewer than the 3D patch depth "
                    f"(data.patch_size_z {self.patch_z}); lower data.patch_size_z or use 2D or 2.5D"
                )
        # With a struct mask, only augmentations that leave the kernel unchanged keep the noise
        # structure the kernel describes.
        self.transforms = kernel_symmetries(struct_kernel, config.augment_rotate) if struct_kernel is not None else None
        splits = [self._split(image.shape[2:], rng) for image in images]
        self._regions = [splits[owner] for owner in owners]

    # -- split -------------------------------------------------------------------------------
    def _split(self, shape: tuple[int, int], rng: np.random.Generator) -> tuple[list[tuple[int, int]], np.ndarray]:
        p = self.patch
        height, width = shape
        if height < p or width < p:
            raise InputError(
                f"image of {height}x{width} pixels is smaller than the patch size {p}; "
                f"set data.patch_size to at most {_largest_patch(min(height, width))}"
            )
        rows, cols = height // p, width // p
        blocks = [(r * p, c * p) for r in range(rows) for c in range(cols)]
        n_val = max(1, int(round(self.config.val_fraction * len(blocks))))
        if len(blocks) - n_val < 1 and (height - p < p // 2 and width - p < p // 2):
            raise InputError(
                f"image of {height}x{width} pixels is too small to hold out validation data with patch size {p}; "
                f"use data.patch_size {_largest_patch(min(height, width) // 2)} or a larger image"
            )
        order = rng.permutation(len(blocks))
        val_blocks = [blocks[i] for i in order[:n_val]]
        held_out = np.zeros(shape, dtype=bool)
        for y, x in val_blocks:
            held_out[y : y + p, x : x + p] = True
        allowed = _allowed_origins(held_out, p)
        if not allowed.size:
            raise InputError(
                f"no room for training patches of {p} pixels outside the validation region in a "
                f"{height}x{width} image; lower data.patch_size or data.val_fraction"
            )
        return val_blocks, allowed

    @property
    def validation_blocks(self) -> list[list[tuple[int, int]]]:
        return [blocks for blocks, _ in self._regions]

    # -- patches ----------------------------------------------------------------------------
    def _extract(self, stack_index: int, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        if is_lazy(self.stacks[stack_index]):
            return self._extract_lazy(stack_index, zs, ys, xs)
        if self.mode == "3d":
            return self._extract_3d(stack_index, zs, ys, xs)
        image = self.stacks[stack_index]
        offsets = np.arange(self.patch)
        rows = ys[:, None, None] + offsets[None, :, None]
        cols = xs[:, None, None] + offsets[None, None, :]
        channels = []
        for stack in image:
            if self.mode == "2.5d":
                planes = np.array([triplet_indices(int(z), stack.shape[0]) for z in zs])
                channels += [stack[planes[:, c, None, None], rows, cols] for c in range(3)]
            else:
                channels.append(stack[zs[:, None, None], rows, cols])
        if self.targets is not None:
            channels += [target[zs[:, None, None], rows, cols] for target in self.targets[stack_index]]
        return np.stack(channels, axis=1)

    def _extract_3d(self, stack_index: int, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """``(B, C, patch_size_z, P, P)`` blocks starting at (z, y, x): every channel, then the targets."""
        offsets, depth = np.arange(self.patch), np.arange(self.patch_z)
        planes = zs[:, None, None, None] + depth[None, :, None, None]
        rows = ys[:, None, None, None] + offsets[None, None, :, None]
        cols = xs[:, None, None, None] + offsets[None, None, None, :]
        volumes = list(self.stacks[stack_index])
        if self.targets is not None:
            volumes += list(self.targets[stack_index])
        return np.stack([volume[planes, rows, cols] for volume in volumes], axis=1)

    def _extract_lazy(self, stack_index: int, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """The patches of an image on disk, each read on its own (only the chunks it touches)."""
        image, p = self.stacks[stack_index], self.patch
        patches = []
        for z, y, x in zip(zs.tolist(), ys.tolist(), xs.tolist(), strict=True):
            rows, cols = slice(y, y + p), slice(x, x + p)
            channels = []
            for channel in image:
                if self.mode == "3d":
                    channels.append(channel.block(slice(z, z + self.patch_z), rows, cols))
                    continue
                depth = channel.shape[0]
                planes = triplet_indices(z, depth) if self.mode == "2.5d" else (z,)
                channels += [channel.block(slice(i, i + 1), rows, cols)[0] for i in planes]
            patches.append(np.stack(channels))
        return np.stack(patches).astype(np.float32, copy=False)

    def _origins_z(self, depth: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """Random first slices of ``count`` patches: every slice in 2D/2.5D, any block start in 3D."""
        if self.mode == "3d":
            return rng.integers(0, depth - self.patch_z + 1, size=count)
        return np.repeat(np.arange(depth), self.config.patches_per_image)

    def _patches_of(self, depth: int) -> int:
        """Patches per epoch of a stack of ``depth`` slices: per slice, or per patch-deep slab in 3D."""
        units = max(1, depth // self.patch_z) if self.mode == "3d" else depth
        return self.config.patches_per_image * units

    def epoch(self, rng: np.random.Generator, batch_size: int) -> Iterator[np.ndarray]:
        """Yield shuffled, augmented batches ``(B, C, P, P)`` covering one epoch (C includes a
        paired target as the last channel)."""
        picks = []
        for index, stack in enumerate(self.stacks):
            _, allowed = self._regions[index]
            depth = stack.shape[1]
            n = self._patches_of(depth)
            zs = self._origins_z(depth, n, rng)
            flat = allowed[rng.integers(0, allowed.size, size=n)]
            width = stack.shape[3]
            picks.append((np.full(n, index), zs, flat // width, flat % width))
        stack_ids, zs, ys, xs = (np.concatenate(parts) for parts in zip(*picks, strict=True))
        order = rng.permutation(stack_ids.size)
        for start in range(0, order.size, batch_size):
            chosen = order[start : start + batch_size]
            batch = np.concatenate(
                [
                    self._extract(
                        int(s),
                        zs[chosen][stack_ids[chosen] == s],
                        ys[chosen][stack_ids[chosen] == s],
                        xs[chosen][stack_ids[chosen] == s],
                    )
                    for s in np.unique(stack_ids[chosen])
                ]
            )
            if self.config.augment and self.mode == "3d":
                batch = augment_3d(batch, rng, rotate=self.config.augment_rotate)
            elif self.config.augment:
                batch = augment(batch, rng, rotate=self.config.augment_rotate, allowed=self.transforms)
            yield np.ascontiguousarray(batch)

    def steps_per_epoch(self, batch_size: int) -> int:
        total = sum(self._patches_of(s.shape[1]) for s in self.stacks)
        return -(-total // batch_size)

    def validation_patches(self, rng: np.random.Generator) -> np.ndarray:
        """The held-out blocks of every slice (``(N, C, P, P)``, at most MAX_VALIDATION_PATCHES, spread evenly)."""
        items = [
            (index, z, y, x)
            for index, stack in enumerate(self.stacks)
            # 3D: the held-out columns in patch-deep slabs (they cover every slice, so no slab leaks).
            for z in range(0, stack.shape[1] - self.patch_z + 1, self.patch_z)
            for (y, x) in self._regions[index][0]
        ]
        if len(items) > MAX_VALIDATION_PATCHES:
            keep = np.linspace(0, len(items) - 1, MAX_VALIDATION_PATCHES).round().astype(int)
            items = [items[i] for i in keep]
        patches = [self._extract(index, np.array([z]), np.array([y]), np.array([x]))[0] for index, z, y, x in items]
        return np.ascontiguousarray(np.stack(patches))


def _largest_patch(side: int) -> int:
    """Largest multiple of 16 (at least 16) that fits in ``side``."""
    return max(16, (side // 16) * 16)


def _allowed_origins(held_out: np.ndarray, patch: int) -> np.ndarray:
    """Flat indices of top-left corners whose patch does not touch the held-out region."""
    height, width = held_out.shape
    integral = np.zeros((height + 1, width + 1), dtype=np.int64)
    integral[1:, 1:] = held_out.cumsum(0).cumsum(1)
    h, w = height - patch + 1, width - patch + 1
    counts = (
        integral[patch : patch + h, patch : patch + w]
        - integral[:h, patch : patch + w]
        - integral[patch : patch + h, :w]
        + integral[:h, :w]
    )
    ys, xs = np.nonzero(counts == 0)
    return ys * width + xs
