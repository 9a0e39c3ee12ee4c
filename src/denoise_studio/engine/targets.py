"""Targets for paired training: given images (checked and aligned) or built from the input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .alignment import align_target
from .config import DenoiseConfig
from .filters import apply_filter_spec
from .io import InputError, check_image, check_values
from .lazy import is_lazy
from .registry import METHODS


def prepare_targets(
    config: DenoiseConfig,
    stacks: Sequence[np.ndarray],
    targets: np.ndarray | Sequence[np.ndarray] | None,
) -> list[np.ndarray] | None:
    """The ``(C, Z, Y, X)`` target of every ``(C, Z, Y, X)`` input for ``config.method``, or None when it
    needs none (filters and alignment act channel by channel)."""
    method = config.method
    if METHODS[method].target == "none":
        if targets is not None:
            source = "clean images and a noise model" if METHODS[method].simulated else "the noisy images alone"
            raise InputError(f"method {method} learns from {source}; it takes no target image")
        return None
    if any(is_lazy(stack) for stack in stacks):
        raise InputError(
            f"method {method}: paired training reads its images into memory, and an image here is too large for it "
            "(it is read from disk); crop it, or use a blind-spot method (n2v, n2v2)"
        )
    if config.supervised.target_from:
        if targets is not None:
            raise InputError("give either a target image or supervised.target_from, not both")
        return [np.stack([apply_filter_spec(channel, config.supervised.target_from) for channel in stack])
                for stack in stacks]
    if targets is None:
        wanted = "a second noisy acquisition" if method == "n2n" else "a clean (high-SNR) acquisition"
        raise InputError(f"method {method} needs a target image: {wanted} of the same field, or --target-from")
    if isinstance(targets, np.ndarray):
        targets = [targets]
    if len(targets) != len(stacks):
        raise InputError(f"{len(stacks)} input image(s) but {len(targets)} target(s)")
    checked = []
    for index, (stack, target) in enumerate(zip(stacks, targets, strict=True)):
        name = f"target {index + 1}"
        target = np.asarray(target)
        if target.ndim == 4:
            check_values(target, name)
        else:
            target = check_image(target, name=name)[np.newaxis]
        if target.shape != stack.shape:
            raise InputError(f"{name}: shape {_shape(target)} differs from its input {_shape(stack)}")
        supervised = config.supervised
        channels = [
            align_target(s, t, supervised.max_shift, supervised.register_target, name if len(stack) == 1 else
                         f"{name} channel {c + 1}")
            for c, (s, t) in enumerate(zip(stack, target, strict=True))
        ]
        checked.append(np.stack(channels))
    return checked


def _shape(image: np.ndarray) -> tuple[int, ...]:
    """The shape a user gave: without the channel axis of a single-channel image."""
    return tuple(image.shape[1:]) if image.shape[0] == 1 else tuple(image.shape)
