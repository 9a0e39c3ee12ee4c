"""Synchronised side-by-side views: napari's grid mode (one camera, one dims slider) plus linked contrast.

Grid mode only places visible layers, so the comparison hides every other layer and remembers what it
hid; :func:`close_side_by_side` puts everything back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.experimental import link_layers, unlink_layers

if TYPE_CHECKING:
    import napari

LINKED = ("contrast_limits", "gamma")


class SideBySide:
    """One comparison shown in a viewer; keeps what it needs to undo itself."""

    def __init__(self, viewer: napari.Viewer):
        self.viewer = viewer
        self.layers: list[str] = []
        self._hidden: list[str] = []

    @property
    def open(self) -> bool:
        return bool(self.layers) and self.viewer.canvas.grid.enabled

    def show(self, names: list[str]) -> list[str]:
        """Show ``names`` left to right, synchronised; returns the names actually shown."""
        self.close()
        layers = [self.viewer.layers[name] for name in names if name in self.viewer.layers]
        if len(layers) < 2:
            return []
        self._hidden = [layer.name for layer in self.viewer.layers if layer not in layers and layer.visible]
        for layer in self.viewer.layers:
            layer.visible = layer in layers
        # Grid cells are filled from the bottom of the layer list (index 0 is the top-left cell).
        for position, layer in enumerate(layers):
            self.viewer.layers.move(self.viewer.layers.index(layer), position)
        # The first (noisy) layer sets the shared display range.
        for other in layers[1:]:
            other.contrast_limits = layers[0].contrast_limits
            other.gamma = layers[0].gamma
        link_layers(layers, LINKED)
        grid = self.viewer.canvas.grid
        grid.stride = 1
        grid.shape = (1, len(layers))
        grid.enabled = True
        self.layers = [layer.name for layer in layers]
        self.viewer.reset_view()
        return self.layers

    def close(self) -> None:
        if not self.layers:
            return
        layers = [self.viewer.layers[name] for name in self.layers if name in self.viewer.layers]
        if layers:
            unlink_layers(layers, LINKED)
        self.viewer.canvas.grid.enabled = False
        for name in self._hidden:
            if name in self.viewer.layers:
                self.viewer.layers[name].visible = True
        self.layers, self._hidden = [], []
