"""The GUI thread's longest stall while a user edits a config field with a large image layer chosen.

A QTimer ticks every 5 ms on the GUI thread; each edit of the patches-per-image field is posted to the
event loop, and the largest gap between two ticks is the longest time the GUI could not repaint.
Run under a display (``xvfb-run -a python benchmarks/gui_stall.py``); prints one line per size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def measure(side: int, edits: int = 10) -> tuple[float, float]:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from denoise_studio._qt.widgets.main_widget import DenoiseStudioWidget

    viewer = napari.Viewer(show=False)
    viewer.add_image(np.random.default_rng(0).random((side, side), dtype=np.float32), name="big")
    widget = DenoiseStudioWidget(viewer)
    widget.method.layer_combo.setCurrentText("big")
    assert widget.session.source_layer == "big", widget.session.source_layer
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    box = widget.configure.editor("patches_per_image").input
    changes: list[object] = []
    widget.session.config_changed.connect(changes.append)
    for index in range(edits):
        QTimer.singleShot(20 + 40 * index, lambda i=index: box.setValue(150 + i))
    end = time.perf_counter() + (60 + 40 * edits) / 1000
    while time.perf_counter() < end:
        app.processEvents()
    timer.stop()
    gaps = np.diff(ticks) * 1000
    viewer.close()
    assert len(changes) == edits, f"only {len(changes)} of {edits} edits changed the config"
    return float(gaps.max()), float(np.median(gaps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096])
    args = parser.parse_args()
    for side in args.sizes:
        worst, typical = measure(side)
        print(f"{side}x{side} float32: longest GUI stall {worst:.0f} ms (median tick gap {typical:.1f} ms)")


if __name__ == "__main__":
    main()
