"""Plain progress events and a cooperative stop request, shared by every long-running engine call.

The engine never calls into a user interface: it hands :class:`ProgressEvent` records to a plain
callback. The CLI prints them, the napari worker forwards them as Qt signals, tests collect them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum


class RunState(str, Enum):
    PENDING = "pending"
    TRAINING = "training"
    AWAITING_REVIEW = "awaiting_review"
    PREDICTING = "predicting"
    COMPLETE = "complete"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class ProgressEvent:
    """One progress record.

    ``kind`` is ``"started"``, ``"batch"``, ``"epoch"`` or ``"finished"`` for training, and
    ``"tile"`` or ``"plane"`` for prediction.
    """

    kind: str
    stage: str = "training"
    state: RunState = RunState.TRAINING
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    learning_rate: float | None = None
    elapsed: float = 0.0
    time_left: float | None = None
    message: str = ""
    #: Training: the time budget ends the run before the epochs would (so "epoch N/M" would mislead).
    limited_by_time: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def epoch_position(self) -> str:
        """``epoch N/M``, or ``epoch N (time budget)`` when the budget, not the epoch count, ends the run."""
        if self.limited_by_time:
            return f"epoch {self.epoch} (until the time budget)"
        return f"epoch {self.epoch}/{self.epochs}"

    @property
    def prediction_position(self) -> str:
        """Where a prediction is: ``plane i/n`` (``plane`` events), ``plane i/n, tiles j/m`` (``tile`` events)."""
        if self.kind == "tile":
            return f"plane {self.epoch}/{self.epochs}, tiles {self.batch}/{self.batches}"
        return f"plane {self.batch}/{self.batches}"

    @property
    def fraction(self) -> float:
        """Overall progress in [0, 1] (by epochs and batches, or by the time budget when it binds)."""
        if self.epochs <= 0:
            return 0.0
        done = (self.epoch - 1 + (self.batch / self.batches if self.batches else 1.0)) / self.epochs
        if self.time_left is not None and self.elapsed > 0:
            done = max(done, self.elapsed / (self.elapsed + self.time_left))
        return float(min(1.0, max(0.0, done)))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["state"] = self.state.value
        return data


ProgressCallback = Callable[[ProgressEvent], None]


class StopRequest:
    """A thread-safe flag: set it from any thread, the engine honours it within one batch or tile."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


def emit(callback: ProgressCallback | None, event: ProgressEvent) -> None:
    if callback is not None:
        callback(event)
