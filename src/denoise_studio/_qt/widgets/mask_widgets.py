"""The two views of a struct mask plane: a clickable kernel grid and the correlation heat map."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QSize, Signal
from qtpy.QtWidgets import QGridLayout, QSizePolicy, QToolButton, QWidget

ACTIVE_COLOUR = "#f5a623"
INACTIVE_COLOUR = "#2b2f36"
CENTRE_BORDER = "#ffffff"
CELL = 19


class KernelGrid(QWidget):
    """K x K cells; active pixels are coloured, clicking toggles one. The centre is marked and fixed."""

    #: (row, column) of a cell the user toggled.
    toggled = Signal(int, int)

    def __init__(self, size: int, has_centre: bool, parent: QWidget | None = None):
        super().__init__(parent)
        self.size = size
        self.has_centre = has_centre
        self.centre = size // 2
        self._buttons: dict[tuple[int, int], QToolButton] = {}
        grid = QGridLayout(self)
        grid.setSpacing(1)
        grid.setContentsMargins(0, 0, 0, 0)
        for row in range(size):
            for col in range(size):
                button = QToolButton()
                button.setFixedSize(QSize(CELL, CELL))
                button.setAutoRaise(False)
                if self.is_centre(row, col):
                    button.setText("●")
                    button.setToolTip("centre pixel (the blind spot itself): always masked")
                else:
                    button.clicked.connect(lambda _checked=False, r=row, c=col: self.toggled.emit(r, c))
                grid.addWidget(button, row, col)
                self._buttons[(row, col)] = button
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def is_centre(self, row: int, col: int) -> bool:
        return self.has_centre and row == self.centre and col == self.centre

    def button(self, row: int, col: int) -> QToolButton:
        return self._buttons[(row, col)]

    def show_plane(self, mask: np.ndarray, correlation: np.ndarray | None) -> None:
        for (row, col), button in self._buttons.items():
            active = bool(mask[row, col])
            border = CENTRE_BORDER if self.is_centre(row, col) else "#444"
            colour = ACTIVE_COLOUR if active else INACTIVE_COLOUR
            button.setStyleSheet(
                f"QToolButton {{ background: {colour}; border: 1px solid {border}; color: black; }}"
            )
            button.setProperty("active", active)
            if not self.is_centre(row, col):
                dy, dx = row - self.centre, col - self.centre
                rho = "" if correlation is None else f", correlation {correlation[row, col]:+.3f}"
                state = "masked" if active else "not masked"
                button.setToolTip(f"offset (dy {dy:+d}, dx {dx:+d}){rho}: {state}; click to toggle")


def colour_limit(correlation: np.ndarray) -> float:
    """Largest |correlation| over all planes, leaving out the centre (always 1)."""
    values = np.abs(np.array(correlation, dtype=np.float64))
    values[values.shape[0] // 2, values.shape[1] // 2, values.shape[2] // 2] = 0.0
    return float(values.max())


class CorrelationMap(pg.GraphicsLayoutWidget):
    """The residual autocorrelation of one plane as a heat map with a symmetric colour bar."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(180, 250)
        self.plot = self.addPlot()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMouseEnabled(False, False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.colour_map = pg.colormap.get("CET-D1")
        # A horizontal bar under the map leaves the width to the (square) map itself.
        self.bar = pg.ColorBarItem(
            values=(-1, 1), colorMap=self.colour_map, interactive=False, orientation="horizontal", label="correlation"
        )
        self.bar.setImageItem(self.image, insert_in=self.plot)
        self.bar.axis.enableAutoSIPrefix(False)

    def show_plane(self, correlation: np.ndarray, hide_centre: bool, limit: float) -> None:
        """Show one plane on the colour scale ``[-limit, limit]`` (shared by all planes, so they compare)."""
        shown = np.array(correlation, dtype=np.float32)
        if hide_centre:
            # Lag 0 correlates perfectly with itself; it would swamp the colour scale.
            centre = shown.shape[0] // 2
            shown[centre, centre] = 0.0
        limit = limit or 1.0
        self.image.setImage(shown, levels=(-limit, limit))
        self.bar.setLevels((-limit, limit))
        self.plot.setRange(xRange=(0, shown.shape[1]), yRange=(0, shown.shape[0]), padding=0.02)
