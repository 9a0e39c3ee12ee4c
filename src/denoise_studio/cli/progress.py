"""Progress on a terminal, and signals that stop a run cleanly."""

from __future__ import annotations

import contextlib
import signal
import sys
import time

from ..engine.events import PredictionEvent, ProgressEvent, StopRequest


class ProgressPrinter:
    """A one-line progress bar on a terminal; one line per epoch when stderr is not a terminal."""

    def __init__(self, stream=None, width: int = 30, interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.width = width
        self.interval = interval
        self._last = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind in ("state", "notice"):
            # A pipeline's state change (autoStructN2V): its message says what happens now.
            if event.message:
                self._line(f"[{event.stage}] {event.message}")
            return
        if event.kind in ("started", "finished"):
            label = "start" if event.kind == "started" else "done"
            self._line(f"[{event.stage}] {label}: {event.message}")
            return
        now = time.monotonic()
        final_plane = isinstance(event, PredictionEvent) and event.finished
        if event.kind in ("batch", "plane", "tile") and not self.tty:
            if final_plane:
                where = f" -> {event.file}" if event.file else ""
                self.stream.write(f"[{event.stage}] {event.planes} planes in {event.elapsed:.1f} s{where}\n")
            return
        if event.kind in ("batch", "plane", "tile") and now - self._last < self.interval and not final_plane:
            return
        self._last = now
        line = self._format(event)
        if self.tty:
            self.stream.write("\r" + line.ljust(100)[:120])
            if event.kind == "epoch" and event.epoch == event.epochs:
                self._newline()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self._newline()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _format(self, event: ProgressEvent) -> str:
        filled = int(round(event.fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        left = f" ~{duration(event.time_left)} left" if event.time_left is not None else ""
        if isinstance(event, PredictionEvent):
            return f"[{event.stage}] |{bar}| {event.prediction_position}{left}"
        parts = [f"[{event.stage}] |{bar}| {event.epoch_position}"]
        if event.train_loss is not None:
            parts.append(f"loss {event.train_loss:.4f}")
        if event.val_loss is not None:
            parts.append(f"val {event.val_loss:.4f}")
        if event.best_val_loss is not None:
            parts.append(f"best {event.best_val_loss:.4f}")
        return " ".join(parts) + left

    def _newline(self) -> None:
        if self.tty:
            self.stream.write("\n")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class StopOnSignals:
    """Ctrl-C (SIGINT) or SIGTERM asks the engine to stop, keeping the best model; a second Ctrl-C aborts."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))

    def __init__(self, stop: StopRequest, stream=None):
        self.stop = stop
        self.stream = stream or sys.stderr
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignals:
        for number in self.SIGNALS:
            with contextlib.suppress(ValueError):  # not in the main thread: the caller stops the run
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.stream.write(f"\n{name}: stopping after this batch (Ctrl-C again to abort)...\n")
        self.stop.set()

    def __exit__(self, *exc) -> bool:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()
        return False
