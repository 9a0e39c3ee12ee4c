"""Running out of memory is a reason to go smaller, not to lose the work.

Prediction halves its batch, then its tile, and retries the plane; training halves its batch, says
so and goes on. Both recognise the errors here: CUDA's, and the CPU allocator's, which torch raises
as a plain ``RuntimeError``.
"""

from __future__ import annotations

import torch

_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that a device (GPU or CPU) ran out of memory."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in _MESSAGES)


def release_cached_memory() -> None:
    """Hand the GPU memory torch keeps cached back, so that a smaller retry can get it."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
