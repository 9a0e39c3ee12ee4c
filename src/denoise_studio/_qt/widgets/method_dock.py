"""Method and Data dock: which method, 2D or 2.5D, and either the data to train on or a model to import.

Paired methods (Noise2Noise, CARE) also ask for their target; Noise2Void / N2V2 offer DecoNoising. Those
settings are config fields (supervised.*, deconv.*), edited through the same field editors as the
Configure dock, so the config stays their only home.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...engine.axes import ImageMeta, layout_for
from ...engine.config import DeconvConfig, DenoiseConfig, SimulationConfig, SupervisedConfig
from ...engine.data import input_channels
from ...engine.io import InputError, read_image_meta
from ...engine.persistence import ModelFileError
from ...engine.registry import DECONVOLUTION_METHODS, METHODS, MODES, TARGET_METHODS
from ...engine.unet import field_of_view
from ...samples import starter_model_path
from ..state.session import Session, unique_layer_name
from .binding import ConfigBinding
from .dock import StudioDock
from .fields import FieldEditor, FilterSpecEditor, hint_label

if TYPE_CHECKING:
    import napari

METHOD_CHOICES = tuple((info.name, info.label, info.hint) for info in METHODS.values())
MODE_CHOICES = tuple((info.name, info.label, info.hint) for info in MODES.values())
OK_STYLE = "color: #30a46c;"
ERROR_STYLE = "color: #e5484d;"
#: Methods with a Paired-data box: those that take a target, and the autoencoder (whose box explains it takes none).
PAIRED_METHODS = (*TARGET_METHODS, "autoencoder")
NOISE_FROM_IMAGE = "Fitted on the image layer"
NOISE_FROM_MODEL = "The current model's noise model"


class MethodDock(StudioDock):
    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__(napari_viewer, session)

        # -- method --
        self.method_buttons: dict[str, QRadioButton] = {}
        method_box = QGroupBox("Method")
        method_layout = QVBoxLayout(method_box)
        self._method_group = QButtonGroup(self)
        for key, title, hint in METHOD_CHOICES:
            button = QRadioButton(title)
            button.setToolTip(hint)
            button.toggled.connect(lambda checked, k=key: checked and self.session.set_method(k))
            self._method_group.addButton(button)
            self.method_buttons[key] = button
            method_layout.addWidget(button)
            explanation = hint_label(hint)
            explanation.setContentsMargins(20, 0, 0, 0)  # under its radio button
            method_layout.addWidget(explanation)

        # -- mode --
        self.mode_buttons: dict[str, QRadioButton] = {}
        mode_box = QGroupBox("Mode")
        mode_layout = QVBoxLayout(mode_box)
        mode_row = QHBoxLayout()
        self._mode_group = QButtonGroup(self)
        self.mode_hint = hint_label()
        for key, title, hint in MODE_CHOICES:
            button = QRadioButton(title)
            button.setToolTip(hint)
            button.toggled.connect(lambda checked, k=key: checked and self._choose_mode(k))
            self._mode_group.addButton(button)
            self.mode_buttons[key] = button
            mode_row.addWidget(button)
        mode_row.addStretch(1)
        mode_layout.addLayout(mode_row)
        mode_layout.addWidget(self.mode_hint)
        self.mode_notice = QLabel()
        self.mode_notice.setWordWrap(True)
        self.mode_notice.setStyleSheet("color: #d9822b;")
        self.mode_notice.hide()
        mode_layout.addWidget(self.mode_notice)

        # -- workflow --
        workflow_box = QGroupBox("Workflow")
        workflow_layout = QVBoxLayout(workflow_box)
        self.train_button = QRadioButton("Train from scratch")
        self.import_button = QRadioButton("Import a trained model")
        self._workflow_group = QButtonGroup(self)
        for button in (self.train_button, self.import_button):
            self._workflow_group.addButton(button)
            workflow_layout.addWidget(button)
        self.train_button.toggled.connect(lambda checked: checked and self._set_workflow("train"))
        self.import_button.toggled.connect(lambda checked: checked and self._set_workflow("import"))
        self.pages = QStackedWidget()
        self.pages.addWidget(self._train_page())
        self.pages.addWidget(self._import_page())
        workflow_layout.addWidget(self.pages)

        # -- method-specific fields (targets, DecoNoising), bound to the session's config --
        self.binding = ConfigBinding(self.session, self)
        self.editors: dict[str, FieldEditor] = {}
        self.field_error = QLabel()
        self.field_error.setWordWrap(True)
        self.field_error.setStyleSheet(ERROR_STYLE)
        self.field_error.hide()
        self.binding.error_changed.connect(self._show_field_error)
        self.target_box = self._target_box()
        self.deconv_box = self._deconv_box()
        self.simulation_box = self._simulation_box()

        layout = QVBoxLayout(self)
        layout.addWidget(method_box)
        layout.addWidget(mode_box)
        layout.addWidget(workflow_box)
        layout.addWidget(self.target_box)
        layout.addWidget(self.deconv_box)
        layout.addWidget(self.simulation_box)
        layout.addWidget(self.field_error)
        layout.addStretch(1)

        self._links.connect(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self._links.connect(self.viewer.layers.events.removed, self._refresh_layers)
        for layer in self.viewer.layers:
            self._links.connect(layer.events.name, self._refresh_layers)
        self._links.connect(self.session.method_changed, self._show_session)
        self._links.connect(self.session.mode_changed, self._show_session)
        self._links.connect(self.session.workflow_changed, self._show_session)
        self._links.connect(self.session.data_changed, self._show_data_status)
        self._links.connect(self.session.axes_changed, self._show_axes)
        self._links.connect(self.session.config_changed, lambda _source: self._show_method_fields())
        self._links.connect(self.session.busy_changed, self._on_busy)
        self._links.connect(self.session.notice, self._show_notice)
        self._refresh_layers()
        self._show_axes(self.session.axes)
        self._show_session()

    # -- pages -----------------------------------------------------------------------------------------
    def _train_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Image layer"))
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The noisy image or stack to train on (and denoise afterwards).")
        self.layer_combo.currentTextChanged.connect(self._on_layer_chosen)
        row.addWidget(self.layer_combo, 1)
        self.open_tiff_button = QPushButton("Open TIFF…")
        self.open_tiff_button.clicked.connect(self._choose_tiff)
        row.addWidget(self.open_tiff_button)
        layout.addLayout(row)
        axes_row = QHBoxLayout()
        axes_row.addWidget(QLabel("Axes"))
        self.axes_edit = QLineEdit()
        self.axes_edit.setPlaceholderText("guessed: YX or ZYX")
        self.axes_edit.setToolTip(
            "What each dimension of the layer is, one letter per dimension: S (samples), T (time), "
            "C (channels), Z (depth), Y, X, e.g. CZYX. Filled in from the layer (its file's axes, or the guess "
            "for its shape); empty: guessed as YX or ZYX."
        )
        self.axes_edit.textEdited.connect(self.session.set_axes)
        axes_row.addWidget(self.axes_edit, 1)
        layout.addLayout(axes_row)
        self.extra_list = QListWidget()
        self.extra_list.setToolTip(
            "More noisy images of the same kind to train one model on (each with its own axes). Only the "
            "image layer above is denoised afterwards; process the others in Results and Inference."
        )
        self.extra_list.setMaximumHeight(90)
        self.extra_list.itemChanged.connect(self._on_extra_changed)
        self.extra_section = QCollapsible("Also train on")
        self.extra_section.addWidget(self.extra_list)
        layout.addWidget(self.extra_section)
        self.data_status = QLabel()
        self.data_status.setWordWrap(True)
        layout.addWidget(self.data_status)
        layout.addStretch(1)
        return page

    def _target_box(self) -> QGroupBox:
        box = QGroupBox("Paired training")
        layout = QVBoxLayout(box)
        row = QHBoxLayout()
        self.target_label = QLabel("Target layer")
        row.addWidget(self.target_label)
        self.target_combo = QComboBox()
        self.target_combo.setToolTip(
            "The paired image of the same field, same shape as the input: a second noisy acquisition "
            "(Noise2Noise) or a clean one (CARE)."
        )
        self.target_combo.currentTextChanged.connect(self._on_target_chosen)
        row.addWidget(self.target_combo, 1)
        layout.addLayout(row)
        self.target_status = QLabel()
        self.target_status.setWordWrap(True)
        layout.addWidget(self.target_status)
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        self._add_editor(grid, FilterSpecEditor(SupervisedConfig, "target_from", ("supervised", "target_from")))
        for name in ("register_target", "max_shift", "loss"):
            self._add_editor(grid, FieldEditor(SupervisedConfig, name, ("supervised", name)))
        layout.addLayout(grid)
        return box

    def _deconv_box(self) -> QGroupBox:
        box = QGroupBox("DecoNoising (optional)")
        layout = QVBoxLayout(box)
        hint = hint_label(
            "Denoise and deconvolve at once: the network predicts a sharp image that, blurred by a Gaussian "
            "PSF of this sigma, explains the data. Gives a denoised and a deconvolved layer. Off: plain denoising."
        )
        layout.addWidget(hint)
        layout.addLayout(self._editor_grid(DeconvConfig, "deconv", ("psf_sigma", "positivity")))
        return box

    def _simulation_box(self) -> QGroupBox:
        box = QGroupBox("Simulation-based training (SBD)")
        layout = QVBoxLayout(box)
        hint = hint_label(
            "Trains on clean images of similar structures (averages, another sample, simulations) with noise drawn "
            "afresh for every batch: the noise of the image layer above, which is denoised afterwards."
        )
        layout.addWidget(hint)
        layout.addWidget(QLabel("Clean layers to train on"))
        self.clean_list = QListWidget()
        self.clean_list.setToolTip(
            "Clean (high-SNR) images; each one's 2nd-98th percentiles are mapped onto the image layer's signal range."
        )
        self.clean_list.setMaximumHeight(90)
        self.clean_list.itemChanged.connect(self._on_clean_changed)
        layout.addWidget(self.clean_list)
        row = QHBoxLayout()
        row.addWidget(QLabel("Noise"))
        self.noise_combo = QComboBox()
        self.noise_combo.addItems([NOISE_FROM_IMAGE, NOISE_FROM_MODEL])
        self.noise_combo.setToolTip(
            "Fitted on the image layer alone at Start, or the current model's noise model (measured against its "
            "result: the better estimate, and it holds scan-line noise). Values typed below win over either."
        )
        self.noise_combo.currentTextChanged.connect(
            lambda text: self.session.set_noise_from_model(text == NOISE_FROM_MODEL)
        )
        row.addWidget(self.noise_combo, 1)
        layout.addLayout(row)
        fields = ("gain", "offset", "read_variance", "row_sigma", "signal_low", "signal_high")
        layout.addLayout(self._editor_grid(SimulationConfig, "simulation", fields))
        self.field_of_view_label = hint_label()
        layout.addWidget(self.field_of_view_label)
        return box

    def _refresh_clean_layers(self) -> None:
        """Every image layer but the chosen one, checked when SBD trains on it."""
        self._fill_checklist(self.clean_list, self.session.clean_layers)

    def set_clean_layers(self, names: list[str]) -> None:
        """Check ``names`` as SBD's clean layers."""
        self.session.set_clean_layers(names)
        self._refresh_clean_layers()

    def _on_clean_changed(self, _item=None) -> None:
        self.session.set_clean_layers(_checked(self.clean_list))

    def _show_field_of_view(self) -> None:
        config = self.session.config
        if not isinstance(config, DenoiseConfig):
            return
        pixels = field_of_view(config.model, input_channels(config.mode))
        self.field_of_view_label.setText(
            f"The network sees {pixels} px across (model.depth {config.model.depth}). At low SNR a wider field of "
            "view helps: raise the depth in Configure."
        )

    def _editor_grid(self, model, section: str, names: tuple[str, ...]) -> QGridLayout:
        """A label | editor grid of the ``section`` fields ``names``, bound to the session's config."""
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        for name in names:
            self._add_editor(grid, FieldEditor(model, name, (section, name)))
        return grid

    def _add_editor(self, grid: QGridLayout, editor: FieldEditor) -> None:
        self.binding.bind(editor)
        self.editors[editor.dotted] = editor
        label = QLabel(editor.label)
        label.setToolTip(editor.input.toolTip())
        # The label hides with its field (target_from is offered for CARE only).
        editor.row_label = label
        row = grid.rowCount()
        grid.addWidget(label, row, 0)
        grid.addWidget(editor, row, 1)

    def editor(self, dotted: str) -> FieldEditor:
        """The editor of a method field, e.g. "supervised.register_target" or "deconv.psf_sigma"."""
        return self.editors[dotted]

    def _import_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        hint = hint_label(
            "A run folder written by denoise-studio (config.json and weights; for autoStructN2V also "
            "stage1.pth, stage2.pth and mask.npy), or a config.json with a weights file of your choice."
        )
        layout.addWidget(hint)
        row = QHBoxLayout()
        self.folder_button = QPushButton("Model folder…")
        self.folder_button.clicked.connect(self._choose_folder)
        self.json_button = QPushButton("config.json + weights…")
        self.json_button.clicked.connect(self._choose_json)
        self.starter_button = QPushButton("Starter model")
        self.starter_button.setToolTip(
            "The bundled N2V model trained on the noisy confocal sample: denoise confocal images at once, "
            "offline, or continue training it on your own data."
        )
        self.starter_button.clicked.connect(lambda: self.import_model(starter_model_path()))
        row.addWidget(self.folder_button)
        row.addWidget(self.json_button)
        row.addWidget(self.starter_button)
        layout.addLayout(row)
        self.import_status = QLabel("No model imported yet.")
        self.import_status.setWordWrap(True)
        layout.addWidget(self.import_status)
        return page

    # -- data --------------------------------------------------------------------------------------------
    def _on_layer_inserted(self, event) -> None:
        layer = event.value
        self._links.connect(layer.events.name, self._refresh_layers)
        self._refresh_layers()
        # A first image becomes the training data; a result of ours never does.
        ours = "denoise_studio" in (getattr(layer, "metadata", None) or {})
        if not self.session.source_layer and not ours and layer.name in self._layer_names():
            self.select_layer(layer.name)

    def _layer_names(self) -> list[str]:
        return [layer.name for layer in self.session.image_layers()]

    def _refresh_layers(self, _event=None) -> None:
        self._refresh_source_layers()
        self._refresh_target_layers()
        self._refresh_extra_layers()
        self._refresh_clean_layers()

    def _refresh_extra_layers(self) -> None:
        """Every image layer but the chosen one, checked when it is trained on too."""
        self._fill_checklist(self.extra_list, self.session.extra_layers)

    def _fill_checklist(self, checklist: QListWidget, chosen: list[str]) -> None:
        """Every image layer but the chosen image layer, checked when in ``chosen``."""
        checklist.blockSignals(True)
        checklist.clear()
        for name in self._layer_names():
            if name == self.session.source_layer:
                continue
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in chosen else Qt.CheckState.Unchecked)
            checklist.addItem(item)
        checklist.blockSignals(False)

    def set_extra_layers(self, names: list[str]) -> None:
        """Check ``names`` in 'Also train on' (and train on them)."""
        self.session.set_extra_layers(names)
        self._refresh_extra_layers()

    def _on_extra_changed(self, _item=None) -> None:
        self.session.set_extra_layers(_checked(self.extra_list))

    def _refresh_source_layers(self) -> None:
        names = self._layer_names()
        current = self.session.source_layer
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        if current not in names and self.session.lost_source is not None:
            # The chosen layer was deleted: say so, and never switch to another layer unasked.
            self.layer_combo.setCurrentIndex(-1)
        self.layer_combo.blockSignals(False)
        if current not in names and self.session.lost_source is None:
            self.session.set_source_layer(names[0] if names else None)
            if names:
                self.layer_combo.setCurrentIndex(0)

    def _refresh_target_layers(self) -> None:
        names = self._layer_names()
        current = self.session.target_layer
        if current not in names:
            # The first layer other than the input is the likeliest partner.
            others = [name for name in names if name != self.session.source_layer]
            current = others[0] if others else None
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self.target_combo.addItems(names)
        if current:
            self.target_combo.setCurrentText(current)
        self.target_combo.blockSignals(False)
        if current != self.session.target_layer:
            self.session.set_target_layer(current)

    def select_target(self, name: str) -> None:
        self.target_combo.setCurrentText(name)
        self.session.set_target_layer(name)

    def _on_target_chosen(self, name: str) -> None:
        if name and name != self.session.target_layer:
            self.session.set_target_layer(name)

    def select_layer(self, name: str) -> None:
        self.layer_combo.setCurrentText(name)
        self.session.set_source_layer(name)

    def _on_layer_chosen(self, name: str) -> None:
        if name and name != self.session.source_layer:
            self.session.set_source_layer(name)
            self._refresh_extra_layers()
            self._refresh_clean_layers()

    def _choose_tiff(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open noisy TIFFs", "", "TIFF images (*.tif *.tiff)")
        self.open_tiffs(paths)

    def open_tiffs(self, paths: list[str | Path]) -> list[str]:
        """Open each file as a layer: the first is trained on (and denoised), the others are trained on too."""
        names = [name for name in (self.open_tiff(path) for path in paths) if name]
        if len(names) > 1:
            self.select_layer(names[0])
            self.set_extra_layers(names[1:])
        return names

    def open_tiff(self, path: str | Path) -> str | None:
        """Read a TIFF into a new layer and train on it; returns the layer name (None on failure).

        The file's axes, pixel sizes and channel names go into the layer (metadata and scale), so the
        axes field fills in from them and the results carry them."""
        path = Path(path)
        try:
            image, meta = read_image_meta(path)
            layout = layout_for(image.shape, image.dtype, meta.axes, name=str(path))
        except InputError as err:
            self._set_status(self.data_status, False, str(err))
            show_error(f"Cannot open {path.name}: {err}")
            return None
        name = unique_layer_name(self.viewer, path.stem)
        if meta.axes is None:
            # No axes the file vouches for: its guessed stack, without the singleton dimensions.
            self.viewer.add_image(image.reshape(layout.squeezed), name=name)
        else:
            self.viewer.add_image(image, name=name, **self._placement(meta), metadata=self._file_metadata(meta))
        self.select_layer(name)
        return name

    @staticmethod
    def _placement(meta: ImageMeta) -> dict:
        """napari's scale and translate for a file's pixel sizes and origin, one entry per axis."""
        return {
            "scale": [meta.scales.get(axis, 1.0) for axis in meta.axes],
            "translate": [meta.translation.get(axis, 0.0) for axis in meta.axes],
        }

    @staticmethod
    def _file_metadata(meta: ImageMeta) -> dict:
        # Top-level keys, as a reader plugin would set them: the "denoise_studio" key marks our own results.
        metadata: dict = {"axes": meta.axes}
        if meta.units:
            metadata["units"] = dict(meta.units)
        if meta.channel_names:
            metadata["channel_names"] = list(meta.channel_names)
        return metadata

    def set_axes(self, axes: str) -> None:
        """Type ``axes`` into the axes field, as a user would."""
        self.axes_edit.setText(axes)
        self.session.set_axes(axes)

    def _show_axes(self, axes: str) -> None:
        # The user's own spelling (e.g. lower case) stays while it means the session's axes.
        if self.axes_edit.text().strip().upper() != axes:
            self.axes_edit.setText(axes)

    def _show_data_status(self) -> None:
        ready, message = self.session.data_status()
        self._set_status(self.data_status, ready, message)
        target = self.session.target_status()
        if target is not None:
            self._set_status(self.target_status, *target)

    # -- import ------------------------------------------------------------------------------------------
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a denoise-studio model folder")
        if folder:
            self.import_model(folder)

    def _choose_json(self) -> None:
        config, _ = QFileDialog.getOpenFileName(self, "Choose the model's config.json", "", "JSON (*.json)")
        if not config:
            return
        weights, _ = QFileDialog.getOpenFileName(
            self, "Choose the weights (cancel to use the ones named in config.json)", str(Path(config).parent),
            "PyTorch weights (*.pth *.pt)",
        )
        self.import_model(config, weights or None)

    def import_model(self, path: str | Path, weights: str | Path | None = None) -> bool:
        # Not while a run is open (also at its review gate): the run would replace the imported model.
        reason = self.session.busy_reason()
        if reason:
            self._set_status(self.import_status, False, f"Cannot import now: {reason}")
            return False
        self.import_button.setChecked(True)
        try:
            model = self.session.import_model(path, weights)
        except ModelFileError as err:
            self._set_status(self.import_status, False, str(err))
            show_error(f"Model not imported: {err}")
            return False
        stages = f" (stages: {', '.join(sorted(model.stage_networks))})" if model.stage_networks else ""
        self._set_status(
            self.import_status, True,
            f"Imported {model.title}{stages} from {model.run_dir}. Continue in Results and Inference: Process Data.",
        )
        show_info(f"Imported {model.title} model from {model.run_dir}")
        return True

    # -- state ---------------------------------------------------------------------------------------------
    def _set_workflow(self, workflow: str) -> None:
        self.session.set_workflow(workflow)

    def _show_session(self, _value=None) -> None:
        session = self.session
        for key, button in self.method_buttons.items():
            button.blockSignals(True)
            button.setChecked(key == session.method)
            button.blockSignals(False)
        for key, button in self.mode_buttons.items():
            button.blockSignals(True)
            button.setChecked(key == session.mode)
            button.blockSignals(False)
        self.mode_hint.setText(dict((k, h) for k, _t, h in MODE_CHOICES)[session.mode])
        importing = session.workflow == "import"
        for button, checked in ((self.train_button, not importing), (self.import_button, importing)):
            button.blockSignals(True)
            button.setChecked(checked)
            button.blockSignals(False)
        self.pages.setCurrentIndex(1 if importing else 0)
        self._enable_choices()
        self._show_method_fields()

    def _show_method_fields(self) -> None:
        """Show the fields the chosen method uses; the rest are hidden (and keep their defaults)."""
        method = self.session.method
        training = self.session.workflow != "import"
        paired = method in TARGET_METHODS
        self.target_box.setVisible(training and method in PAIRED_METHODS)
        self.deconv_box.setVisible(training and method in DECONVOLUTION_METHODS)
        simulated = METHODS[method].simulated
        self.simulation_box.setVisible(training and simulated)
        self.extra_section.setVisible(not simulated)
        if simulated:
            self._show_field_of_view()
        for dotted, shown in (
            ("supervised.target_from", method == "care"),
            ("supervised.register_target", paired),
            ("supervised.max_shift", paired),
        ):
            self.editors[dotted].setVisible(shown)
            self.editors[dotted].row_label.setVisible(shown)
        uses_layer = self.session.needs_target_layer
        for widget in (self.target_label, self.target_combo):
            widget.setVisible(paired)
            widget.setEnabled(uses_layer and not self.session.active)
        self.target_status.setVisible(paired)
        self._show_data_status()

    def _show_field_error(self, message: str) -> None:
        self.field_error.setText(f"Not a valid configuration: {message}" if message else "")
        self.field_error.setVisible(bool(message))

    def _choose_mode(self, mode: str) -> None:
        self.mode_notice.hide()
        self.session.set_mode(mode)

    def _show_notice(self, message: str) -> None:
        self.mode_notice.setText(message)
        self.mode_notice.show()
        show_info(message)

    def _enable_choices(self) -> None:
        # An imported model brings its own method and mode; a run in progress has fixed them too.
        importing = self.session.workflow == "import"
        hints = {("method", k): h for k, _t, h in METHOD_CHOICES} | {("mode", k): h for k, _t, h in MODE_CHOICES}
        buttons = [("method", k, b) for k, b in self.method_buttons.items()]
        buttons += [("mode", k, b) for k, b in self.mode_buttons.items()]
        for kind, key, button in buttons:
            button.setEnabled(not (self.session.active or importing))
            button.setToolTip(
                "Set by the imported model; choose 'Train from scratch' to change it." if importing
                else hints[(kind, key)]
            )

    def _on_busy(self, busy: bool) -> None:
        # Method, mode and data are part of the run that is going on; changing them mid-run would mislead.
        self._enable_choices()
        self.layer_combo.setEnabled(not busy)
        self.axes_edit.setEnabled(not busy)
        self.open_tiff_button.setEnabled(not busy)
        self.target_combo.setEnabled(not busy and self.session.needs_target_layer)
        for editor in self.editors.values():
            editor.input.setEnabled(not busy)

    @staticmethod
    def _set_status(label: QLabel, ok: bool, message: str) -> None:
        label.setText(("✓ " if ok else "✗ ") + message)
        label.setStyleSheet(OK_STYLE if ok else ERROR_STYLE)


def _checked(checklist: QListWidget) -> list[str]:
    items = [checklist.item(row) for row in range(checklist.count())]
    return [item.text() for item in items if item.checkState() == Qt.CheckState.Checked]
