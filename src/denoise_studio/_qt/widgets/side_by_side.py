"""Synchronised side-by-side views: napari's grid mode (one camera, one dims slider) plus linked contrast.

Grid mode only places visible layers, so the comparison hides every other layer, reorders the shown
ones, and remembers both; :meth:`SideBySide.close` puts visibility and order back.

Each view has a caption: the layer's own name overlay (napari draws a layer's canvas overlays in that
layer's grid cell), turned on while the comparison is shown and put back as it was by ``close``.
:attr:`SideBySide.caption` spells the order out for a dock's label.

Contrast is linked only between layers in the same intensity scale: a CARE or Noise2Noise result is
in its target's scale, and the noisy input's display range would saturate it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.experimental import link_layers, unlink_layers

if TYPE_CHECKING:
    import napari

LINKED = ("contrast_limits", "gamma")
#: Caption style of each view: the layer's name at the top left, on a box so it reads on any image.
CAPTION_STYLE = {"visible": True, "box": True, "font_size": 8}
#: Up to this many views in one row; more go on two rows, so each view (and its caption) stays wide.
MAX_ONE_ROW = 3


class SideBySide:
    """One comparison shown in a viewer; keeps what it needs to undo itself."""

    def __init__(self, viewer: napari.Viewer):
        self.viewer = viewer
        self.layers: list[str] = []
        self._hidden: list[str] = []
        self._order: list[str] = []
        self._groups: list[list[str]] = []
        #: {layer name: its name overlay's settings before the comparison}, to put back on close.
        self._captions: dict[str, dict] = {}

    @property
    def open(self) -> bool:
        return bool(self.layers) and self.viewer.canvas.grid.enabled

    @property
    def caption(self) -> str:
        """The views' order in words ("" when nothing is shown)."""
        if not self.layers:
            return ""
        order = "left to right" if len(self.layers) <= MAX_ONE_ROW else "left to right, then the second row"
        return f"Side by side, {order}: {' | '.join(self.layers)}"

    def show(self, names: list[str]) -> list[str]:
        """Show ``names`` left to right, synchronised; returns the names actually shown."""
        self.close()
        layers = [self.viewer.layers[name] for name in names if name in self.viewer.layers]
        if len(layers) < 2:
            return []
        self._hidden = [layer.name for layer in self.viewer.layers if layer not in layers and layer.visible]
        self._order = [layer.name for layer in self.viewer.layers]
        for layer in self.viewer.layers:
            layer.visible = layer in layers
        # Grid cells are filled from the bottom of the layer list (index 0 is the top-left cell).
        for position, layer in enumerate(layers):
            self.viewer.layers.move(self.viewer.layers.index(layer), position)
        # In each group of layers that share a scale, the first (the noisy one) sets the display range.
        self._groups = []
        for group in scale_groups(layers):
            for other in group[1:]:
                other.contrast_limits = group[0].contrast_limits
                other.gamma = group[0].gamma
            if len(group) > 1:
                link_layers(group, LINKED)
            self._groups.append([layer.name for layer in group])
        for layer in layers:  # a caption per view: its layer's name, drawn in its grid cell
            overlay = layer.name_overlay
            self._captions[layer.name] = {key: getattr(overlay, key) for key in CAPTION_STYLE}
            overlay.update(CAPTION_STYLE)
        grid = self.viewer.canvas.grid
        grid.stride = 1
        rows = 1 if len(layers) <= MAX_ONE_ROW else 2
        grid.shape = (rows, -(-len(layers) // rows))
        grid.enabled = True
        self.layers = [layer.name for layer in layers]
        self.viewer.reset_view()
        return self.layers

    def close(self) -> None:
        if not self.layers:
            return
        for names in self._groups:
            group = [self.viewer.layers[name] for name in names if name in self.viewer.layers]
            if len(group) > 1:
                unlink_layers(group, LINKED)
        self.viewer.canvas.grid.enabled = False
        for name, settings in self._captions.items():
            if name in self.viewer.layers:
                self.viewer.layers[name].name_overlay.update(settings)
        for name in self._hidden:
            if name in self.viewer.layers:
                self.viewer.layers[name].visible = True
        # Put the user's layer order back (layers added since keep their place at the top).
        present = [name for name in self._order if name in self.viewer.layers]
        for position, name in enumerate(present):
            self.viewer.layers.move(self.viewer.layers.index(name), position)
        self.layers, self._hidden, self._order, self._groups, self._captions = [], [], [], [], {}


def scale_groups(layers: list) -> list[list]:
    """Split ``layers`` (in order) into groups whose data ranges overlap by at least half of the
    narrower one: the same intensity scale, so one display range fits them all."""
    groups: list[list] = []
    for layer in layers:
        low, high = layer.contrast_limits_range
        for group in groups:
            g_low, g_high = group[0].contrast_limits_range
            overlap = min(high, g_high) - max(low, g_low)
            if overlap >= 0.5 * max(min(high - low, g_high - g_low), 1e-12):
                group.append(layer)
                break
        else:
            groups.append([layer])
    return groups
