"""Quality without a reference: the Results dock's panel over :func:`denoise_studio.api.assess`.

It shows the model's measured noise model (variance against signal: the measured bins and the
fitted Poisson-Gaussian curve) and, for a result of the current comparison, the estimated PSNR,
the residual's verdict and the fit to the noise model, with the residual and the likelihood map
added as layers. The assessment runs as an engine job: the GUI thread never reads the images.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
)

from ... import api
from ...engine.assessment import Assessment
from ...engine.filters import FILTERS, filter_function
from ...engine.model import TrainedModel
from ...engine.noise_model import NoiseModel
from ..state.session import Session, read_pixels, unique_layer_name
from ..workers.worker import EngineJob, Outcome, guarded

if TYPE_CHECKING:
    import napari

MEASURED_COLOUR = "#4c9be8"
NO_LAYER = "(none)"
FITTED_COLOUR = "#f2a541"


def denoiser_of(layer, model: TrainedModel | None) -> tuple[TrainedModel | None, Callable | None]:
    """What made a result layer, for the Stein term of the estimate: (the model, or None; a filter, or None).

    The session's model made it when the layer says so (its training id and the ``denoised`` output);
    a Compare dock filter layer names its filter. Anything else is assessed without a denoiser, and
    the assessment says its estimate then assumes a blind-spot result.
    """
    ours = layer.metadata.get("denoise_studio", {}) if isinstance(layer.metadata, dict) else {}
    if model is not None and ours.get("training_id") == model.name and ours.get("output") == "denoised":
        return model, None
    name, _, size = str(ours.get("filter", "")).partition(" ")  # the Compare dock's label: "gaussian 1.5"
    if name in FILTERS:
        return None, filter_function(name, float(size) if size else None)
    return None, None


class QualityPanel(QGroupBox):
    """Noise model plot, the Assess button and its numbers; lives in the Results dock."""

    def __init__(self, session: Session, viewer: napari.Viewer, busy_changed: Callable[[], None]):
        super().__init__("Quality without a reference")
        self.session = session
        self.viewer = viewer
        self._busy_changed = busy_changed
        self.job: EngineJob | None = None
        self.assessment: Assessment | None = None
        #: The layers the last assessment added (residual, likelihood).
        self.added_layers: list[str] = []

        self.noise_label = QLabel()
        self.noise_label.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(150)
        self.plot.setMaximumHeight(230)
        self.plot.setLabel("bottom", "signal")
        self.plot.setLabel("left", "noise variance")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(10, 10))
        self.measured_curve = self.plot.plot(
            [], [], pen=None, symbol="o", symbolSize=6, symbolBrush=MEASURED_COLOUR, name="measured"
        )
        self.fitted_curve = self.plot.plot([], [], pen=pg.mkPen(FITTED_COLOUR, width=2), name="Poisson-Gaussian fit")

        # -- calibration: repeated frames of a static field and/or dark frames, the instrument's own noise --
        self.frames_combo = QComboBox()
        self.frames_combo.setToolTip("Repeated frames (T, Y, X) of a static, lit field: their temporal mean and "
                                     "variance give the noise model exactly.")
        self.dark_combo = QComboBox()
        self.dark_combo.setToolTip("Dark frames (T, Y, X), shutter closed: the offset and the read noise.")
        for combo in (self.frames_combo, self.dark_combo):
            combo.currentTextChanged.connect(lambda _text: self.update_buttons())
        self.calibrate_button = QPushButton("Fit from calibration")
        self.calibrate_button.clicked.connect(self.calibrate)
        self.forget_button = QPushButton("Forget")
        self.forget_button.setToolTip("Back to the noise model the model measured on its training images.")
        self.forget_button.clicked.connect(lambda: self.session.set_calibrated_noise(None))
        calibration = QFormLayout()
        calibration.addRow("Frames:", self.frames_combo)
        calibration.addRow("Dark frames:", self.dark_combo)
        calibration_buttons = QHBoxLayout()
        calibration_buttons.addWidget(self.calibrate_button)
        calibration_buttons.addWidget(self.forget_button)

        self.result_combo = QComboBox()
        self.result_combo.setToolTip("A result of the current comparison (noisy and denoised side by side).")
        self.assess_button = QPushButton("Assess")
        self.assess_button.setToolTip(
            "Estimate the PSNR without a clean reference (Stein's risk estimate under the noise model), check the "
            "residual, and add the residual and likelihood maps as layers."
        )
        self.assess_button.clicked.connect(self.assess)
        row = QHBoxLayout()
        row.addWidget(self.result_combo, 1)
        row.addWidget(self.assess_button)
        self.status = QLabel()
        self.status.setWordWrap(True)
        # One rich-text label: wrapped rows of a form layout get clipped when the dock is narrow.
        self.numbers = QLabel()
        self.numbers.setWordWrap(True)
        self.numbers.setTextFormat(Qt.TextFormat.RichText)

        # Never squeezed below what its wrapped text needs: the dock scrolls instead.
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        layout = QVBoxLayout(self)
        layout.addWidget(self.noise_label)
        layout.addWidget(self.plot)
        layout.addLayout(calibration)
        layout.addLayout(calibration_buttons)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.numbers)
        self.refresh_layers([layer.name for layer in session.image_layers()])
        self.show_noise_model(session.model)
        self.show_comparison()

    # -- display -------------------------------------------------------------------------------------------------
    def show_noise_model(self, _changed: object = None) -> None:
        """Show the noise model assessments use (the calibration's, else the session model's)."""
        model = self.session.model
        noise = self.session.noise_model
        self.plot.setVisible(noise is not None)
        self.forget_button.setVisible(self.session.calibrated_noise is not None)
        if noise is None:
            self.noise_label.setText(
                "No noise model: train a model on noisy images alone (N2V, N2V2, autoStructN2V, autoencoder)."
                if model is not None else "No model yet."
            )
            self.measured_curve.setData([], [])
            self.fitted_curve.setData([], [])
            return
        self.noise_label.setText(f"Noise model: {noise.describe()}")
        self._plot(noise)
        self.update_buttons()

    def _plot(self, noise: NoiseModel) -> None:
        if noise.bins is not None and noise.bins.signal:
            signal = np.asarray(noise.bins.signal)
            self.measured_curve.setData(signal, np.asarray(noise.bins.variance))
            low, high = float(signal.min()), float(signal.max())
        else:
            self.measured_curve.setData([], [])
            low, high = noise.offset, noise.offset + 10 * max(noise.read_variance, 1.0) / max(noise.gain, 1e-6)
        line = np.linspace(low, high, 100)
        self.fitted_curve.setData(line, noise.fitted_variance(line))

    def show_comparison(self) -> None:
        current = self.result_combo.currentText()
        comparison = self.session.comparison
        names = list(comparison[1]) if comparison is not None else []
        self.result_combo.clear()
        self.result_combo.addItems(names)
        if current in names:
            self.result_combo.setCurrentText(current)
        self.update_buttons()

    def refresh_layers(self, names: list[str]) -> None:
        for combo in (self.frames_combo, self.dark_combo):
            current = combo.currentText()
            combo.clear()
            combo.addItems([NO_LAYER, *names])
            combo.setCurrentText(current if current in names else NO_LAYER)
        self.update_buttons()

    def update_buttons(self) -> None:
        self.assess_button.setEnabled(self.job is None and self.result_combo.count() > 0)
        chosen = self.frames_combo.currentText() != NO_LAYER or self.dark_combo.currentText() != NO_LAYER
        self.calibrate_button.setEnabled(self.job is None and chosen)

    def _show_numbers(self, assessment: Assessment) -> None:
        rows = [*assessment.summary_lines(), *(("Note", note) for note in assessment.notes)]
        cells = "".join(
            f"<tr><td valign='top'><b>{html.escape(label)}:</b></td><td>{html.escape(value)}</td></tr>"
            for label, value in rows
        )
        self.numbers.setText(f"<table cellspacing='3'>{cells}</table>")

    def _set_status(self, text: str, ok: bool | None = None) -> None:
        self.status.setText(text)
        colour = {True: "color: #30a46c;", False: "color: #e5484d;", None: ""}[ok]
        self.status.setStyleSheet(colour)

    # -- the job -----------------------------------------------------------------------------------------------
    def assess(self) -> bool:
        """Assess the chosen result against its noisy layer in an engine job; False (and why) if it cannot start."""
        comparison = self.session.comparison
        result_name = self.result_combo.currentText()
        if comparison is None or not result_name:
            self._set_status("Nothing to assess: denoise a layer first (Process, or a training).", ok=False)
            return False
        noisy_name = comparison[0]
        missing = [name for name in (noisy_name, result_name) if name not in self.viewer.layers]
        if missing:
            self._set_status(f"{missing[0]!r} is no longer in the viewer.", ok=False)
            return False
        noisy = self.session.layer_array(noisy_name)  # read in the job: a lazy layer may be large
        result = self.session.layer_array(result_name)
        shape = tuple(self.viewer.layers[result_name].data.shape)  # the layer's shape, not its pixels
        model = self.session.model
        by_model, denoiser = denoiser_of(self.viewer.layers[result_name], model)
        noise_model = self.session.noise_model

        def call(_callback, _stop) -> tuple[Assessment, float]:
            found = api.assess(
                np.asarray(noisy), np.asarray(result), model=by_model, noise_model=noise_model, denoiser=denoiser
            )
            # The maps go back in the layer's own shape (a (1, Y, X) layer is assessed as (Y, X)).
            found.residual = found.residual.reshape(shape)
            found.likelihood_map = found.likelihood_map.reshape(shape)
            spread = float(np.percentile(np.abs(found.residual), 99.5)) or 1.0
            return found, spread

        return self._start(
            EngineJob(f"assessing {result_name}", call), f"assessing {result_name}",
            lambda outcome: self._on_done(outcome, noisy_name, result_name), f"Assessing {result_name}…",
        )  # fmt: skip

    def calibrate(self) -> bool:
        """Fit the noise model from the chosen calibration layers in an engine job (dark frames alone need
        the current comparison's noisy image and result for the gain)."""
        frames_name, dark_name = self.frames_combo.currentText(), self.dark_combo.currentText()
        frames = None if frames_name == NO_LAYER else self.session.layer_array(frames_name)
        dark = None if dark_name == NO_LAYER else self.session.layer_array(dark_name)
        noisy = result = None
        if frames is None:
            comparison = self.session.comparison
            if dark is None or comparison is None or not self.result_combo.currentText():
                self._set_status("Choose calibration frames (or dark frames and a result to compare).", ok=False)
                return False
            noisy = self.session.layer_array(comparison[0])
            result = self.session.layer_array(self.result_combo.currentText())

        def call(_callback, _stop) -> NoiseModel:
            def pixels(array):
                return None if array is None else read_pixels(array)

            return api.fit_noise_model(pixels(frames), pixels(dark), noisy=pixels(noisy), denoised=pixels(result))

        return self._start(EngineJob("fitting the noise model", call), "fitting the noise model",
                           self._on_calibrated, "Fitting the noise model…")

    def _on_calibrated(self, outcome: Outcome) -> None:
        self._job_ended()
        if not outcome.ok:
            self._set_status(f"Calibration failed: {outcome.message}", ok=False)
            return
        self.session.set_calibrated_noise(outcome.value)
        self._set_status(f"Noise model from calibration: {outcome.value.describe()}", ok=True)

    def _start(self, job: EngineJob, kind: str, handler: Callable[[Outcome], None], status: str) -> bool:
        # Set before the start: a synchronous job (tests) is done before run_job returns.
        self.job = job
        self._set_status(status)
        self.update_buttons()
        self._busy_changed()
        on_done = guarded(handler, lambda message: self._set_status(f"Failed: {message}", ok=False))
        reason = self.session.run_job(job, kind, on_done)
        if reason:
            self._job_ended()
            self._set_status(f"Not started: {reason}", ok=False)
            return False
        return True

    def _job_ended(self) -> None:
        self.job = None
        self.update_buttons()
        self._busy_changed()

    def _on_done(self, outcome: Outcome, noisy_name: str, result_name: str) -> None:
        self._job_ended()
        if not outcome.ok:
            self._set_status(f"Failed: {outcome.message}", ok=False)
            return
        assessment, spread = outcome.value
        self.assessment = assessment
        self._show_numbers(assessment)
        self.added_layers = self._add_maps(assessment, spread, noisy_name, result_name)
        verdict = assessment.whiteness.verdict
        self._set_status(f"{result_name}: estimated PSNR {assessment.psnr_text()}; verdict: {verdict}.", ok=True)

    def _add_maps(self, assessment: Assessment, spread: float, noisy_name: str, result_name: str) -> list[str]:
        """The residual and the likelihood map as new layers over the result (never replacing a layer)."""
        style = {}
        if result_name in self.viewer.layers:
            layer = self.viewer.layers[result_name]
            style = {"scale": layer.scale, "translate": layer.translate}
        ours = {"source": noisy_name, "result": result_name}
        names = []
        for kind, data, display in (
            ("residual", assessment.residual, {"colormap": "gray", "contrast_limits": (-spread, spread)}),
            ("likelihood", assessment.likelihood_map, {"colormap": "PiYG", "contrast_limits": (-2.0, 2.0)}),
        ):
            name = unique_layer_name(self.viewer, f"{result_name} {kind}")
            self.viewer.add_image(
                data, name=name, metadata={"denoise_studio": {**ours, "assessment": kind}}, visible=False,
                **style, **display,
            )  # fmt: skip
            names.append(name)
        return names
