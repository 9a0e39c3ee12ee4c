"""Out-of-core prediction with dask: a ``(Z, Y, X)`` volume larger than memory is predicted block by
block, in this process, on a local cluster of worker processes, or on an existing dask scheduler.

Why the blocks give exactly the whole-image prediction
------------------------------------------------------
:meth:`Predictor.predict` pads each plane by reflection (``margin`` pixels, plus up to ``step - 1``
to reach a multiple of the pooling step) and predicts tiles that start on the pooling grid of the
padded plane and carry a ``margin`` of context; :mod:`.prediction` shows that this equals one
untiled pass. Here every block is handed to the same :meth:`Predictor.predict_plane_outputs`, so
the block's result equals the untiled prediction *of the block*. That equals the prediction of the
whole image on the block's core (the part ``map_overlap`` keeps after trimming the halo) when:

* **halo >= margin** (>= the receptive radius) in Y and X: on every side that faces another block,
  a kept pixel sees real image pixels of the halo, never the block's own padding. In 2.5D the Z
  halo of 1 gives each kept slice its real neighbours Z-1 and Z+1.
* **boundary="none"**: at a true image edge dask adds nothing, so the block's edge *is* the image's
  edge and the predictor's own reflection there is the very padding a whole-image pass applies. The
  reflected pixels come from inside the block: it reaches ``margin`` pixels past its core into the
  image, and any pixel a reflection would fetch from further away is beyond the receptive radius of
  every kept pixel. (``boundary="reflect"`` would instead mirror the halo and then have the
  predictor mirror again: a different image.) Along Z, :func:`.data.triplet_indices` reflects at the
  block's ends, which are the stack's ends or halo slices that are trimmed.
* **step-aligned chunk starts**: a U-Net is translation-equivariant only for shifts by multiples of
  its pooling step. Every chunk starts on a multiple of the step and the halo is a multiple of it
  (``margin`` is rounded up to the step), so every block starts on the whole image's pooling grid,
  and so does its padded plane (``margin`` again). The last chunk along an axis may end anywhere:
  the predictor extends an odd-sized block exactly as it extends the whole image, because the
  block's size and the image's differ by a multiple of the step.

Chunks smaller than the halo would make dask re-chunk the array on its own (moving chunk starts off
the grid), so :func:`predict_chunked` folds a short last chunk into the one before it.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable

import dask
import dask.array as da
import numpy as np
import torch

from .data import check_depth_for_prediction, plane_input
from .errors import InputError
from .prediction import Predictor, check_finite_output
from .training import memory_format, resolve_precision

#: Default chunk sides ``(Z, Y, X)``: 16 slices of 512 x 512 pixels is 16 MB of float32 per block.
DEFAULT_CHUNKS = (16, 512, 512)

#: Seconds to wait for an existing dask scheduler to answer.
CONNECT_TIMEOUT_S = 10.0

#: Set once a dask worker process has limited torch to one thread.
_worker_threads_limited = False

#: Predictors rebuilt from pickles, by (token, thread): dask.distributed unpickles the block function
#: once per task, and a worker should not rebuild (or move to its GPU) the same model for every block.
#: One per thread, since a model's forward pass may keep state (DecoNoising's phantom).
_UNPICKLED: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
#: Predictors kept per process: enough for the threads of a worker running one or two predictions.
_UNPICKLED_MAX = 16
_UNPICKLED_LOCK = threading.Lock()


def _limit_torch_threads_in_worker() -> None:
    """In a dask worker, run torch on one thread: every worker thread runs a block of its own, and
    torch's default of one thread per core in each of them would oversubscribe the machine."""
    global _worker_threads_limited
    if _worker_threads_limited or "distributed" not in sys.modules:
        return  # not a worker: leave the caller's thread settings alone
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:  # "no worker found": a client process that imported distributed
        return
    torch.set_num_threads(1)
    _worker_threads_limited = True


class BlockPredictor:
    """``(Z, Y, X)`` raw-intensity block (any dtype) -> the predictor's first output, float32, same shape.

    ``channel`` picks the normalisation of a predictor fitted per channel (each channel is then its
    own ``(Z, Y, X)`` volume); a joint model, which needs every channel at once, is refused.

    A class rather than a closure so that dask.distributed can pickle it. The model travels on the
    CPU and is moved to the predictor's device when first used (the CPU where a worker has no GPU).
    """

    def __init__(self, predictor: Predictor, channel: int = 0):
        if predictor.mode not in ("2d", "2.5d", "3d"):
            raise ValueError(f"block prediction supports 2D, 2.5D and 3D models, not mode {predictor.mode!r}")
        if getattr(predictor, "joint", False):
            raise ValueError("a joint model predicts every channel at once; it cannot take one-channel blocks")
        normalizations = getattr(predictor, "normalizations", [predictor.normalization])
        if channel < 0 or (len(normalizations) > 1 and channel >= len(normalizations)):
            raise ValueError(f"channel {channel} out of range: the model has {len(normalizations)} channel(s)")
        self.predictor: Predictor | None = predictor
        self.channel = int(channel)
        #: Names this predictor across pickles, so that a worker builds it once per thread.
        self.token = secrets.token_hex(8)
        self._state: dict | None = None

    def __call__(self, block: np.ndarray) -> np.ndarray:
        _limit_torch_threads_in_worker()
        block = np.asarray(block)
        if block.ndim != 3:
            raise ValueError(f"a block must be (Z, Y, X), got shape {block.shape}")
        if block.size == 0:
            return np.zeros(block.shape, dtype=np.float32)
        predictor = self.resolve()
        normalization, output_normalization = _channel_normalizations(predictor, self.channel)
        # No value checks here: empty background blocks of a large volume are constant, and valid.
        normalized = normalization.normalize(block)
        if predictor.mode == "3d":
            out = output_normalization.denormalize(predictor.predict_volume_outputs(normalized[np.newaxis])[0])
            check_finite_output(out, predictor.outputs[0])
            return out
        out = np.empty(block.shape, dtype=np.float32)
        for z in range(block.shape[0]):
            planes = predictor.predict_plane_outputs(plane_input(normalized, z, predictor.mode))
            out[z] = output_normalization.denormalize(planes[0])
        check_finite_output(out, predictor.outputs[0])
        return out

    def resolve(self) -> Predictor:
        """The predictor for the calling thread: the original one, or one rebuilt from a pickle."""
        if self._state is None:
            assert self.predictor is not None
            return self.predictor
        # Workers unpickle tasks on their event loop, not on the thread that runs them: the
        # predictor is looked up where it runs.
        key = (self.token, threading.get_ident())
        with _UNPICKLED_LOCK:
            cached = _UNPICKLED.get(key)
            if cached is not None:
                _UNPICKLED.move_to_end(key)
                return cached
        cached = _rebuild(self._state)
        with _UNPICKLED_LOCK:
            _UNPICKLED[key] = cached
            while len(_UNPICKLED) > _UNPICKLED_MAX:
                _UNPICKLED.popitem(last=False)
        return cached

    def __getstate__(self) -> dict:
        if self._state is not None:
            return self._state
        predictor = self.resolve()
        if predictor.device.type != "cpu":
            # A GPU tensor can only be unpickled where there is a GPU: the copy that travels is on the CPU.
            predictor = copy.copy(predictor)
            predictor.model = copy.deepcopy(predictor.model).cpu()
        return {"token": self.token, "channel": self.channel, "predictor": predictor}

    def __setstate__(self, state: dict) -> None:
        self.token = state["token"]
        self.channel = state["channel"]
        self._state = state
        self.predictor = None


def _channel_normalizations(predictor: Predictor, channel: int):
    inputs = getattr(predictor, "normalizations", [predictor.normalization])
    outputs = getattr(predictor, "output_normalizations", [predictor.output_normalization])
    return inputs[min(channel, len(inputs) - 1)], outputs[min(channel, len(outputs) - 1)]


def _rebuild(state: dict) -> Predictor:
    """A private copy of a pickled predictor, its model on the predictor's device (or the CPU
    where this process has no GPU)."""
    predictor = copy.copy(state["predictor"])
    if predictor.device.type == "cuda" and not torch.cuda.is_available():
        predictor.device = torch.device("cpu")
        predictor.precision = resolve_precision("auto", predictor.device)
    predictor.format = memory_format(predictor.device, getattr(predictor, "dims", 2))
    # Every thread gets a model of its own, even where threads share one unpickled state.
    predictor.model = copy.deepcopy(predictor.model).to(device=predictor.device, memory_format=predictor.format)
    return predictor


def block_predictor(predictor: Predictor, channel: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """The block function for :func:`predict_chunked`: see :class:`BlockPredictor`."""
    return BlockPredictor(predictor, channel)


def halo_for(predictor: Predictor) -> tuple[int, int, int]:
    """``(Z, Y, X)`` context each block needs: the neighbouring slices in 2.5D, the margin in Y and X;
    in 3D the per-axis margins of the 3D U-Net."""
    if predictor.mode == "3d":
        return tuple(predictor.margins)
    return (1 if predictor.mode == "2.5d" else 0, predictor.margin, predictor.margin)


def steps_for(predictor: Predictor) -> tuple[int, int, int]:
    """``(Z, Y, X)`` multiples chunk starts must fall on: the pooling step in Y and X, any slice in Z
    (in 3D with Z pooling, its Z step too)."""
    if predictor.mode == "3d":
        return tuple(predictor.model.steps)
    step = predictor.model.step
    return (1, step, step)


def _three(value, name: str) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, int | np.integer) else tuple(value)
    if len(values) != 3:
        raise ValueError(f"{name} must give (Z, Y, X), got {value!r}")
    return tuple(int(v) for v in values)


def _axis_chunks(length: int, size: int, halo: int) -> tuple[int, ...]:
    """Chunks of ``size`` along an axis of ``length``; a last chunk shorter than the halo joins the one
    before it (dask would otherwise re-chunk, moving chunk starts off the pooling grid)."""
    full, rest = divmod(length, size)
    chunks = [size] * full
    if rest:
        if chunks and rest < halo:
            chunks[-1] += rest
        else:
            chunks.append(rest)
    return tuple(chunks)


def aligned_chunks(
    shape: tuple[int, int, int], *, halo: tuple[int, int, int], steps: tuple[int, int, int], chunks=None
) -> tuple[tuple[int, ...], ...]:
    """The chunking :func:`predict_chunked` uses: every chunk starts on a multiple of the step, every
    chunk but the last is a multiple of it, and none is shorter than the halo."""
    sizes = _three(DEFAULT_CHUNKS if chunks is None else chunks, "chunks")
    result = []
    for length, size, pad, step in zip(shape, sizes, halo, steps, strict=True):
        size = max(size, pad, 1)
        size = -(-size // step) * step
        result.append(_axis_chunks(int(length), size, pad))
    return tuple(result)


def predict_chunked(
    source,
    block_fn: Callable[[np.ndarray], np.ndarray],
    *,
    halo: tuple[int, int, int],
    steps: tuple[int, int, int],
    chunks=None,
) -> da.Array:
    """A lazy float32 ``(Z, Y, X)`` dask array: ``block_fn`` applied to overlapping blocks of ``source``.

    ``source`` is a ``(Z, Y, X)`` dask or numpy array of raw intensities; ``halo`` the context per
    axis (see :func:`halo_for`); ``steps`` the multiples chunk starts must fall on (see
    :func:`steps_for`); ``chunks`` the chunk sides ``(Z, Y, X)`` (an int for all three; default
    16 x 512 x 512), rounded up to the step and to at least the halo. The module docstring explains
    why the result equals predicting the whole image at once. Nothing is computed here.
    """
    array = source if isinstance(source, da.Array) else da.from_array(np.asarray(source))
    if array.ndim != 3:
        raise ValueError(f"source must be (Z, Y, X), got {array.ndim} dimensions (shape {array.shape})")
    halo = _three(halo, "halo")
    steps = _three(steps, "steps")
    if min(halo) < 0 or min(steps) < 1:
        raise ValueError(f"halo must be >= 0 and steps >= 1, got halo {halo} and steps {steps}")
    layout = aligned_chunks(array.shape, halo=halo, steps=steps, chunks=chunks)
    array = array.rechunk(layout)
    # An axis of one chunk needs no overlap (boundary "none" adds nothing at the image's edges), and
    # dask refuses a depth larger than such an axis.
    depth = {axis: (pad if len(layout[axis]) > 1 else 0) for axis, pad in enumerate(halo)}
    result = da.map_overlap(
        block_fn,
        array,
        depth=depth,
        boundary="none",
        trim=True,
        dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
    )
    if result.chunks != layout:  # dask re-chunked behind our back: the exactness argument no longer holds
        raise RuntimeError(f"dask changed the chunks {layout} to {result.chunks}")
    return result


def predict_lazy(predictor: Predictor, source, *, chunks=None, channel: int = 0) -> da.Array:
    """:func:`predict_chunked` with the predictor's own block function, halo and steps (a lazy
    float32 ``(Z, Y, X)`` array of its first output; ``channel`` as for :class:`BlockPredictor`)."""
    shape = tuple(np.shape(source)) if not isinstance(source, da.Array) else source.shape
    if len(shape) == 3:
        check_depth_for_prediction(shape[0], predictor.mode)
    return predict_chunked(
        source,
        block_predictor(predictor, channel),
        halo=halo_for(predictor),
        steps=steps_for(predictor),
        chunks=chunks,
    )


@contextlib.contextmanager
def compute_context(
    workers: int | None = None, scheduler: str | None = None, *, connect_timeout: float = CONNECT_TIMEOUT_S
):
    """Where dask computes inside the ``with`` block; yields the ``distributed.Client`` or ``None``.

    * neither: in this process, on dask's **synchronous** scheduler. Torch already spreads each
      block's convolutions over every core (or runs them on the GPU, which cannot run two blocks
      faster than one), so dask threads would only oversubscribe the cores and multiply the memory
      held by blocks in flight.
    * ``workers=N``: a ``distributed.LocalCluster`` of N single-threaded worker processes (torch in
      each limited to one thread), closed on exit.
    * ``scheduler="tcp://host:port"``: a client of that existing cluster (an :class:`InputError`
      naming the address when it cannot be reached). Its workers must be able to read the input and
      write the output paths (a shared file system).
    """
    if workers is not None and scheduler is not None:
        raise InputError(f"give either a number of workers ({workers}) or a scheduler address ({scheduler}), not both")
    if scheduler is not None:
        from distributed import Client

        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            raise InputError(
                f"cannot connect to the dask scheduler at {scheduler}: {err}; check the address and that "
                "the scheduler is running"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers is not None:
        if int(workers) < 1:
            raise InputError(f"workers must be at least 1, got {workers}")
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None)
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
        return
    with dask.config.set(scheduler="synchronous"):
        yield None
