"""Screenshots of the real plugin for docs/user-guide.md, made by running short real trainings.

Run it under an X server (Xvfb works; leave QT_QPA_PLATFORM unset, offscreen renders a black canvas):

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/make_screenshots.py

It writes PNGs into docs/images/ and uses a temporary workspace, so nothing lands in ~/denoise-studio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from denoise_studio._qt.launch import open_studio
from denoise_studio._qt.state import settings

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"

#: Short trainings: enough epochs for a loss curve, a few seconds each on a laptop CPU.
N2V_FIELDS = {"patch_size": 64, "depth": 2, "base_features": 16, "patches_per_image": 48, "batch_size": 16,
              "epochs": 12}
AUTOSTRUCT_FIELDS = {"patch_size": 64, "depth": 2, "base_features": 16, "patches_per_image": 64, "batch_size": 16,
                     "epochs": 8}


def wait_until(predicate, timeout: float = 300.0) -> None:
    """Keep the Qt event loop turning until ``predicate()`` holds (training runs in a worker thread)."""
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the plugin did not reach the expected state in time")
        app.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def fill(config_dock, values: dict, stages=("",)) -> None:
    for stage in stages:
        for name, value in values.items():
            box = (config_dock.editor(name, stage) if stage else config_dock.editor(name)).input
            if hasattr(box, "setChecked"):
                box.setChecked(bool(value))
            else:
                box.setValue(value)


def grab(widget, name: str) -> Path:
    settle(0.3)
    path = IMAGES / name
    widget.grab().save(str(path))
    print(f"wrote {path}")
    return path


def window_shot(viewer, name: str) -> Path:
    settle(0.8)
    path = IMAGES / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")
    return path


def compare_shots(viewer, studio, denoised: str | None) -> None:
    """The CARE choice in Method and Data, and the Compare dock on the confocal sample."""
    studio.show_tab("method")
    studio.method.method_buttons["care"].setChecked(True)
    studio.method.select_layer("confocal noisy")
    studio.method.select_target("confocal reference (avg 50)")
    grab(studio.method, "method_dock_care.png")
    studio.method.method_buttons["n2v"].setChecked(True)

    studio.show_tab("compare")
    compare = studio.compare
    compare.set_noisy("confocal noisy")
    compare.set_results([denoised] if denoised else [])
    compare.set_reference("confocal reference (avg 50)")
    compare.set_filter("gaussian", size=1.5)
    compare.set_filter("median", size=3)
    compare.set_filter("nlm", size=6)
    wait_until(lambda: "confocal noisy gaussian 1.5 (preview)" in viewer.layers)
    grab(compare, "compare_dock_preview.png")
    compare.compute()
    wait_until(lambda: compare.job is None)
    grab(compare, "compare_dock.png")
    window_shot(viewer, "compare_side_by_side.png")
    compare.side_by_side.close()


def quality_shots(viewer, studio) -> None:
    """The Results dock's quality panel after Assess, and the likelihood map over the result."""
    studio.show_tab("results")
    panel = studio.results.quality
    panel.assess()
    wait_until(lambda: panel.job is None)
    grab(panel, "quality_panel.png")
    residual, likelihood = panel.added_layers
    shown = {likelihood, studio.session.comparison[0]}
    for layer in viewer.layers:
        layer.visible = layer.name in shown
    viewer.layers.selection.active = viewer.layers[likelihood]
    viewer.layers[likelihood].opacity = 0.6
    window_shot(viewer, "likelihood_map.png")
    for layer in viewer.layers:
        layer.visible = layer.name not in (residual, likelihood)


def autostruct_config_shot(studio) -> None:
    """The Configure dock for autoStructN2V: two stage columns and the Mask extractor section."""
    studio.show_tab("method")
    studio.method.method_buttons["autostructn2v"].setChecked(True)
    studio.show_tab("configure")
    studio.configure.preset_buttons["fast"].click()
    grab(studio.configure, "config_dock_autostruct.png")
    studio.method.method_buttons["n2v"].setChecked(True)


def adapt_and_sbd_shots(viewer, studio) -> None:
    """GainTuning of the trained model to another field (the Results dock), and the Method dock's SBD box
    with the denoised result ticked as a clean layer."""
    source = studio.session.source_layer
    image = viewer.layers[source].data
    viewer.add_image(image[::-1] * 1.6 + 25, name="another field")
    studio.show_tab("results")
    results = studio.results
    results.from_layer.setChecked(True)
    results.layer_combo.setCurrentText("another field")
    results.adapt_time.setValue(30)
    results.adapt()
    wait_until(lambda: results.job is None)
    settle(1.0)
    grab(results, "results_adapt.png")
    # The sample's 50-frame average stands for the clean images of similar structures.
    clean = [layer.name for layer in viewer.layers if "reference" in layer.name]
    studio.show_tab("method")
    studio.method.method_buttons["sbd"].setChecked(True)
    studio.method.select_layer(source)
    studio.method.set_clean_layers(clean)
    settle(0.5)
    grab(studio.method, "method_dock_sbd.png")
    studio.method.method_buttons["n2v"].setChecked(True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-autostruct", action="store_true", help="only the Noise2Void screenshots")
    parser.add_argument(
        "--only-new", action="store_true", help="only the CARE method dock and the Compare dock (no N2V training)"
    )
    parser.add_argument("--only-quality", action="store_true", help="a short N2V training, then the quality panel")
    parser.add_argument(
        "--only-adapt-sbd", action="store_true", help="a short N2V training, then GainTuning and the SBD box"
    )
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    settings.set_default_workspace(Path(tempfile.mkdtemp(prefix="denoise-studio-shots-")))

    viewer = napari.Viewer(title="Denoise Studio", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    studio = open_studio(viewer, "confocal")
    settle(1.0)

    if args.only_new:
        autostruct_config_shot(studio)
        compare_shots(viewer, studio, None)
        viewer.close()
        return 0

    # 1. Method and data, then the Configure dock after choosing the Fast preset.
    studio.method.method_buttons["n2v"].setChecked(True)
    grab(studio.method, "method_dock.png")
    studio.show_tab("configure")
    studio.configure.preset_buttons["fast"].click()
    fill(studio.configure, N2V_FIELDS)
    studio.configure.advanced.expand(animate=False)
    grab(studio.configure, "config_dock.png")
    studio.configure.advanced.collapse(animate=False)

    # 2. A real Noise2Void training on the confocal sample.
    studio.show_tab("training")
    studio.training.start()
    wait_until(lambda: studio.training.state in ("complete", "stopped", "failed"))
    if args.only_quality:
        quality_shots(viewer, studio)
        viewer.close()
        return 0
    if args.only_adapt_sbd:
        adapt_and_sbd_shots(viewer, studio)
        viewer.close()
        return 0
    grab(studio.training, "training_dock.png")
    window_shot(viewer, "viewer_with_docks.png")

    # 3. Results: noisy and denoised side by side, synchronised.
    studio.show_tab("results")
    studio.results.open_in_viewer()
    window_shot(viewer, "side_by_side.png")
    grab(studio.results, "results_dock.png")
    studio.results.close_side_by_side()
    quality_shots(viewer, studio)
    denoised = studio.session.comparison[1][0] if studio.session.comparison else None
    compare_shots(viewer, studio, denoised)
    adapt_and_sbd_shots(viewer, studio)

    if not args.skip_autostruct:
        autostruct_config_shot(studio)
        # 4. autoStructN2V on the STEM sample with scan-line noise, up to the mask review.
        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
        viewer.open_sample("napari-denoise-studio", "stem")
        studio.show_tab("method")
        studio.method.method_buttons["autostructn2v"].setChecked(True)
        studio.method.select_layer("STEM scan-line noise")
        studio.show_tab("configure")
        studio.configure.preset_buttons["fast"].click()
        fill(studio.configure, AUTOSTRUCT_FIELDS, stages=("stage1", "stage2"))
        studio.show_tab("training")
        studio.training.start()
        wait_until(lambda: studio.training.state in ("awaiting_review", "stopped", "failed"))
        grab(studio.review, "mask_review_dock.png")
        studio.review.approve()
        wait_until(lambda: studio.training.state in ("complete", "stopped", "failed"))
        grab(studio.training, "autostruct_training_dock.png")
        studio.show_tab("results")
        studio.results.open_in_viewer()
        window_shot(viewer, "autostruct_side_by_side.png")
        studio.results.close_side_by_side()

        # 5. autoStructN2V in 2.5D on the time-lapse: the review shows three planes (Z-1, Z, Z+1).
        viewer.open_sample("napari-denoise-studio", "timelapse")
        studio.method.select_layer("nuclei time-lapse")
        studio.method.mode_buttons["2.5d"].setChecked(True)
        fill(studio.configure, {**AUTOSTRUCT_FIELDS, "epochs": 3, "patches_per_image": 8}, stages=("stage1", "stage2"))
        studio.training.start()
        wait_until(lambda: studio.training.state in ("awaiting_review", "stopped", "failed"))
        studio.review.tabs.setCurrentIndex(0)
        grab(studio.review, "mask_review_2p5d.png")
        studio.training.stop()  # keeps the stage-1 model
        wait_until(lambda: studio.training.state in ("stopped", "failed"))

    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
