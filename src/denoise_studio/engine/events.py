"""Plain progress events and a cooperative stop request, shared by every long-running engine call.

The engine never calls into a user interface: it hands typed records to a plain callback:
:class:`TrainingEvent` (losses, epochs, time left), :class:`PredictionEvent` (plane, planes, tile,
tiles, file) and :class:`StateEvent` (a run's or pipeline's state and what it does now). The CLI
prints them, the napari worker forwards them as Qt signals, tests collect them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
class TrainingEvent:
    """Training progress. ``kind`` is ``"started"``, ``"batch"``, ``"epoch"`` or ``"finished"``."""

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
    #: The time budget ends the run before the epochs would (so "epoch N/M" would mislead).
    limited_by_time: bool = False

    @property
    def epoch_position(self) -> str:
        """``epoch N/M``, or ``epoch N (until the time budget)`` when the budget, not the epoch count, ends the run."""
        if self.limited_by_time:
            return f"epoch {self.epoch} (until the time budget)"
        return f"epoch {self.epoch}/{self.epochs}"

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


@dataclass
class PredictionEvent:
    """Prediction progress: plane ``plane`` of ``planes`` is done (``"plane"``), or ``tile`` of ``tiles``
    batches of tiles of it (``"tile"``, for a plane too large to report only at its end)."""

    plane: int
    planes: int
    tile: int = 0
    tiles: int = 0
    #: The file being written, when prediction streams to one.
    file: str = ""
    elapsed: float = 0.0
    time_left: float | None = None
    stage: str = "prediction"
    state: RunState = RunState.PREDICTING

    @property
    def kind(self) -> str:
        return "tile" if self.tiles else "plane"

    @property
    def finished(self) -> bool:
        return self.kind == "plane" and self.plane == self.planes

    @property
    def prediction_position(self) -> str:
        """``plane i/n``, or ``plane i/n, tiles j/m`` within a large plane."""
        if self.tiles:
            return f"plane {self.plane}/{self.planes}, tiles {self.tile}/{self.tiles}"
        return f"plane {self.plane}/{self.planes}"

    @property
    def fraction(self) -> float:
        if self.planes <= 0:
            return 0.0
        done = (self.plane - 1 + self.tile / self.tiles) if self.tiles else self.plane
        return float(min(1.0, max(0.0, done / self.planes)))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["state"] = self.state.value
        data["kind"] = self.kind
        return data


@dataclass
class StateEvent:
    """A run or pipeline changed state: ``stage`` names the step (autoStructN2V: stage1, extracting,
    awaiting_review, stage2, done, ...), ``state`` is the run-level state, ``message`` says what happens."""

    stage: str
    state: RunState
    message: str = ""
    #: "state"; "notice" for something the user should know that changes no state (e.g. a batch
    #: halved after running out of memory).
    kind: str = "state"
    #: Where a sequence of steps stands (many files: file ``step`` of ``steps`` starts or ended); 0: none.
    step: int = 0
    steps: int = 0

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "stage": self.stage, "state": self.state.value, "message": self.message}
        if self.steps:
            data |= {"step": self.step, "steps": self.steps}
        return data


#: Everything a long engine call reports through its callback.
ProgressEvent = TrainingEvent | PredictionEvent | StateEvent

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
