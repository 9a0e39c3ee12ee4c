"""The bridge between the Qt-free engine and the GUI thread.

An :class:`EngineJob` runs one engine call (training, mask extraction, prediction) in napari's
``thread_worker``. The engine reports progress through a plain callback; the job turns each
:class:`~denoise_studio.engine.events.ProgressEvent` into a Qt signal. The job object lives on the
GUI thread, so Qt queues those signals and every slot runs on the GUI thread: widgets are never
touched from the engine's thread.

The engine call never raises into Qt: any exception is caught in the worker thread and delivered
as a failed :class:`Outcome`, which the docks show as status text and a napari notification.

Synchronous mode (stardist-napari style): with ``DENOISE_STUDIO_NOTHREADS=1`` in the environment, or
after :func:`set_synchronous(True) <set_synchronous>`, the same code runs on the calling thread and
the signals fire directly. Tests use it to avoid waiting on threads; the real thread stays the default.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import QObject, Signal

from ...engine.errors import ConfigError, PipelineStateError
from ...engine.events import ProgressCallback, ProgressEvent, StopRequest
from ...engine.io import InputError
from ...engine.persistence import ModelFileError, RunFolderError
from ...engine.prediction import NonFiniteOutputError, PredictionStopped

logger = logging.getLogger(__name__)

NOTHREADS_ENV = "DENOISE_STUDIO_NOTHREADS"

_synchronous: bool | None = None

#: Errors whose message is already written for the user; anything else gets its type name prepended.
USER_ERRORS = (
    InputError, ConfigError, ModelFileError, RunFolderError, PipelineStateError, PredictionStopped,
    NonFiniteOutputError,
)  # fmt: skip

EngineCall = Callable[[ProgressCallback, StopRequest], Any]


def set_synchronous(flag: bool | None) -> None:
    """Run jobs on the calling thread (True), in a worker thread (False), or as the env var says (None)."""
    global _synchronous
    _synchronous = flag


def synchronous() -> bool:
    if _synchronous is not None:
        return _synchronous
    return os.environ.get(NOTHREADS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def describe_error(error: BaseException) -> str:
    """One line for a status label or a notification."""
    if isinstance(error, USER_ERRORS):
        return str(error)
    if isinstance(error, MemoryError):
        return "out of memory; try a smaller batch size, patch size or image"
    return f"{type(error).__name__}: {error}"


@dataclass
class Outcome:
    """What an engine call gave back: a value, or the error it raised."""

    value: Any = None
    error: BaseException | None = None
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def message(self) -> str:
        return "" if self.error is None else describe_error(self.error)


def guarded(handler: Callable[[Any], None], on_error: Callable[[str], None]) -> Callable[[Any], None]:
    """Wrap a GUI-thread handler so that a bug in it ends in ``on_error(message)``, not a stuck state."""

    def run(value: Any) -> None:
        try:
            handler(value)
        except Exception as error:
            logger.exception("handler %s failed", getattr(handler, "__name__", handler))
            on_error(describe_error(error))

    return run


class EventRelay(QObject):
    """A callable the engine can call from any thread; it re-emits the event as a Qt signal."""

    event = Signal(object)

    def __call__(self, event: ProgressEvent) -> None:
        self.event.emit(event)


class EngineJob(QObject):
    """One engine call in the background: ``progress`` while it runs, then ``done`` with an :class:`Outcome`."""

    progress = Signal(object)
    done = Signal(object)

    def __init__(
        self,
        name: str,
        call: EngineCall,
        *,
        stop: StopRequest | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.name = name
        self.stop = stop or StopRequest()
        self._call = call
        self._relay = EventRelay(self)
        self._relay.event.connect(self.progress)
        self._worker = None
        self.running = False
        self.threaded = False

    @property
    def callback(self) -> EventRelay:
        """The progress callback handed to the engine (safe to call from the worker thread)."""
        return self._relay

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"job {self.name!r} is already running")
        self.running = True
        if synchronous():
            self._finish(self._guarded_call())
            return
        from napari.qt.threading import create_worker

        self.threaded = True
        # The call never raises (see _guarded_call), so napari's error relay never fires.
        self._worker = create_worker(self._guarded_call, _start_thread=False, _ignore_errors=True)
        self._worker.returned.connect(self._finish)
        self._worker.start()

    def request_stop(self) -> None:
        self.stop.set()

    def _guarded_call(self) -> Outcome:
        try:
            return Outcome(value=self._call(self._relay, self.stop))
        except Exception as error:  # every failure becomes a message, never a traceback in the GUI
            details = traceback.format_exc()
            if not isinstance(error, USER_ERRORS):
                logger.warning("%s failed:\n%s", self.name, details)
            return Outcome(error=error, details=details)

    def _finish(self, outcome: Outcome) -> None:
        self.running = False
        # Drop the call (it may close over images and models) so nothing outlives the job.
        self._call = None
        self._worker = None
        self.done.emit(outcome)
