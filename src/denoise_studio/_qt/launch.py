"""Start napari with Denoise Studio docked and a bundled sample loaded (for a ``gui`` CLI subcommand)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

    from .widgets.main_widget import DenoiseStudioWidget

PLUGIN = "napari-denoise-studio"
WIDGET = "Denoise Studio"
SAMPLES = ("confocal", "stem", "timelapse")


def open_studio(viewer: napari.Viewer, sample: str | None = "confocal") -> DenoiseStudioWidget:
    """Dock Denoise Studio into ``viewer`` and open a bundled sample (None for none)."""
    if sample:
        viewer.open_sample(PLUGIN, sample)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget


def main(sample: str | None = "confocal", files: Sequence[str] = ()) -> int:
    """Open napari with the plugin and ``sample`` (or the given image files); returns when napari closes."""
    import napari

    viewer = napari.Viewer(title="Denoise Studio")
    for path in files:
        viewer.open(path)
    open_studio(viewer, None if files else sample)
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
