"""What every dock of the studio is: a view of the viewer's shared session with a tidy lifetime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QWidget

from ..state.session import Session, session_for
from .qt_utils import Connections, delete_when_undocked, tabify_with_studio

if TYPE_CHECKING:
    import napari


class StudioDock(QWidget):
    """A dock over the session of its viewer.

    Its connections to the session, the layers and runs go through ``self._links`` and are released
    when it is destroyed. napari's close deletes it, so nothing it showed goes on unseen. Opened on
    its own (no ``session`` given), it takes a tab beside the all-in-one Denoise Studio dock.
    """

    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__()
        self._links = Connections(self)
        delete_when_undocked(self)
        if session is None:  # opened on its own, not as a tab of the all-in-one widget
            tabify_with_studio(self)
        self.session = session or session_for(napari_viewer)
        self.viewer = self.session.viewer
