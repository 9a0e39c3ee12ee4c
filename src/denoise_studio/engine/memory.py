"""Running out of memory is a reason to go smaller, not to lose the work.

Prediction halves its batch, then its tile, and retries the plane; training halves its batch, says
so and goes on. Both recognise the errors here: CUDA's, and the CPU allocator's, which torch raises
as a plain ``RuntimeError``.
"""

from __future__ import annotations

import torch

_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")
#: torch.OutOfMemoryError since torch 2.5; torch.cuda.OutOfMemoryError before (the package allows torch>=2.1).
_TORCH_OOM = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", MemoryError)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that a device (GPU or CPU) ran out of memory."""
    if isinstance(error, (MemoryError, _TORCH_OOM)):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in _MESSAGES)


def release_cached_memory() -> None:
    """Hand the GPU memory torch keeps cached back, so that a smaller retry can get it."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
