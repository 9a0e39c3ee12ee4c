"""Denoise Studio: the six docks as numbered tabs of one napari dock, in workflow order.

The same docks are also registered one by one (see napari.yaml); all of them share the viewer's session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ..state.session import Session, session_for
from .compare_dock import CompareDock
from .config_dock import ConfigDock
from .dock import StudioDock
from .mask_review_dock import MaskReviewDock
from .method_dock import MethodDock
from .results_dock import ResultsDock
from .training_dock import TrainingDock

if TYPE_CHECKING:
    import napari

TABS = (
    ("method", "1 Method", MethodDock),
    ("configure", "2 Configure", ConfigDock),
    ("training", "3 Train", TrainingDock),
    ("review", "4 Review", MaskReviewDock),
    ("results", "5 Results", ResultsDock),
    ("compare", "6 Compare", CompareDock),
)


def scrollable(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    return area


class DenoiseStudioWidget(StudioDock):
    #: Separate docks opened beside it go into tabs next to it (see qt_utils.tabify_with_studio).
    is_denoise_studio = True

    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__(napari_viewer, session or session_for(napari_viewer))
        self.tabs = QTabWidget()
        self.docks: dict[str, QWidget] = {}
        self._tab_index: dict[str, int] = {}
        for key, title, dock_class in TABS:
            dock = dock_class(napari_viewer, session=self.session)
            self.docks[key] = dock
            self._tab_index[key] = self.tabs.addTab(scrollable(dock), title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(420)
        self._links.connect(self.session.show_dock, self.show_tab)

    @property
    def method(self) -> MethodDock:
        return self.docks["method"]

    @property
    def configure(self) -> ConfigDock:
        return self.docks["configure"]

    @property
    def training(self) -> TrainingDock:
        return self.docks["training"]

    @property
    def review(self) -> MaskReviewDock:
        return self.docks["review"]

    @property
    def results(self) -> ResultsDock:
        return self.docks["results"]

    @property
    def compare(self) -> CompareDock:
        return self.docks["compare"]

    def show_tab(self, key: str) -> None:
        if key in self._tab_index:
            self.tabs.setCurrentIndex(self._tab_index[key])
