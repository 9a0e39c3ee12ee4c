"""Targets for paired training: given images (checked and aligned) or built from the input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .alignment import align_target
from .config import DenoiseConfig
from .filters import apply_filter_spec
from .io import InputError, check_image


def prepare_targets(
    config: DenoiseConfig,
    stacks: Sequence[np.ndarray],
    targets: np.ndarray | Sequence[np.ndarray] | None,
) -> list[np.ndarray] | None:
    """The (Z, Y, X) target of every input stack for ``config.method``, or None when it needs none."""
    method = config.method
    if config.is_blind_spot or method == "autoencoder":
        if targets is not None:
            raise InputError(f"method {method} learns from the noisy images alone; it takes no target image")
        return None
    if config.supervised.target_from:
        if targets is not None:
            raise InputError("give either a target image or supervised.target_from, not both")
        return [apply_filter_spec(stack, config.supervised.target_from) for stack in stacks]
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
        target = check_image(target, name=name)
        if target.shape != stack.shape:
            raise InputError(f"{name}: shape {target.shape} differs from its input {stack.shape}")
        supervised = config.supervised
        checked.append(align_target(stack, target, supervised.max_shift, supervised.register_target, name))
    return checked
