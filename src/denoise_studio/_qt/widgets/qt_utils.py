"""Small Qt helpers shared by the docks."""

from __future__ import annotations

import contextlib

from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget


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


def _dock_of(widget: QWidget) -> QDockWidget | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def tabify_with_studio(widget: QWidget) -> None:
    """Once ``widget`` is docked, put its dock in a tab beside the all-in-one Denoise Studio dock
    (when that is open) instead of splitting the column: a second dock in the same area would
    otherwise squash the first to half its height."""

    def tabify() -> None:
        try:
            own = _dock_of(widget)
        except RuntimeError:  # deleted meanwhile
            return
        window = own.parentWidget() if own is not None else None
        if not isinstance(window, QMainWindow):
            return
        for other in window.findChildren(QDockWidget):
            if other is not own and getattr(other.widget(), "is_denoise_studio", False) and other.isVisible():
                window.tabifyDockWidget(other, own)
                own.raise_()
                return

    QTimer.singleShot(0, tabify)
