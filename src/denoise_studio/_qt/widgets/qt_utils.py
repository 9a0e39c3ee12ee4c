"""Small Qt helpers shared by the docks."""

from __future__ import annotations

import contextlib

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget


def discard_widget(widget: QWidget | None) -> None:
    """Take a widget off screen now and delete it later.

    ``deleteLater`` alone leaves the widget painted in its old place until the event loop runs
    deferred deletions, which a script pumping ``processEvents`` never does.
    """
    if widget is None:
        return
    widget.hide()
    widget.setParent(None)
    widget.deleteLater()


class Connections:
    """The connections a dock makes to objects that outlive it (the session, the viewer's layers, a
    run), released when the dock is destroyed.

    Qt drops a connection to a destroyed QObject's method by itself, but not one to a lambda, nor a
    connection to a napari or psygnal event: those would call into a deleted widget ("wrapped C/C++
    object has been deleted") once its window is closed.
    """

    def __init__(self, owner: QObject):
        self._pairs: list[tuple[object, object]] = []
        owner.destroyed.connect(self.release)

    def connect(self, signal, slot) -> None:
        signal.connect(slot)
        self._pairs.append((signal, slot))

    def release(self, *_args) -> None:
        pairs, self._pairs = self._pairs, []
        for signal, slot in pairs:
            with contextlib.suppress(TypeError, RuntimeError, ValueError):
                signal.disconnect(slot)


class _RemovalWatch(QObject):
    """Deletes a dock's widget once napari has taken it out of its dock (``remove_dock_widget`` only
    unparents it). Without this, closing a dock leaves the widget alive, connected and invisible: a
    training it shows would go on with nothing left to stop it."""

    def __init__(self, widget: QWidget):
        super().__init__(widget)
        self._docked = widget.parent() is not None
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange:
            if watched.parent() is not None:
                self._docked = True
            elif self._docked:
                watched.deleteLater()
        return False


def delete_when_undocked(widget: QWidget) -> None:
    _RemovalWatch(widget)
