"""Small Qt helpers shared by the docks."""

from __future__ import annotations

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
