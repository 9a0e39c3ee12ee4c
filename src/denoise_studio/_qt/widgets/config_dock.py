"""Configure dock: presets, the main training fields, an Advanced section and (autoStructN2V) the extractor.

For autoStructN2V every training field has two columns, Stage 1 and Stage 2. All editors are built
from the engine's pydantic fields (ranges, choices, tooltips) and bound to the session's config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...engine.config import (
    AUTOSTRUCT_TOP_FIELDS,
    SECTIONS,
    SUPERVISED_METHODS,
    AutoStructConfig,
    MaskExtractorConfig,
    field_names,
)
from ..state.session import PRESET_NAMES, Session
from .binding import ConfigBinding
from .dock import StudioDock
from .fields import FieldEditor, hint_label
from .qt_utils import discard_widget

if TYPE_CHECKING:
    import napari

MAIN_FIELDS = (
    "patch_size",
    "patches_per_image",
    "batch_size",
    "mask_percent",
    "augment",
    "base_features",
    "depth",
    "learning_rate",
    "epochs",
    "early_stopping",
    "max_time",
)
ADVANCED_FIELDS = (
    "resize_conv",
    "upsampling",
    "strategy",
    "seed",
    "val_fraction",
    "device",
    "patience",
    "lr_schedule",
    "augment_rotate",
    "neighbourhood_radius",
    "blur_pool",
    "top_skip",
    "precision",
    "tta",
)
EXTRACTOR_MAIN = ("adaptive", "base_percentile", "percentile_decay", "max_pixels")
EXTRACTOR_MORE = ("max_radius", "abs_floor", "z_sigma", "two_sided", "dilate")
PRESET_HINTS = {
    "fast": "Small network, about two minutes on a laptop CPU.",
    "balanced": "The published defaults: a deeper, wider network and early stopping.",
    "quality": "The Fast recipe with a deeper network over about five minutes, predicting with test-time "
    "augmentation (8 flips/rotations averaged).",
}


def section_model(name: str):
    """The config section class that defines training field ``name`` (e.g. DataConfig for patch_size)."""
    section = field_names()[name].split(".")[0]
    return SECTIONS[section], section


def extractor_editor(name: str) -> FieldEditor:
    return FieldEditor(MaskExtractorConfig, name, ("extractor", name))


class ConfigDock(StudioDock):
    """Edit the session's config: preset buttons fill every field; fields are checked as you type."""

    def __init__(self, napari_viewer: napari.Viewer, session: Session | None = None):
        super().__init__(napari_viewer, session)
        self.binding = ConfigBinding(self.session, self)
        self.binding.error_changed.connect(self._show_error)
        self.editors: dict[str, FieldEditor] = {}

        self.preset_buttons: dict[str, QPushButton] = {}
        presets = QHBoxLayout()
        # Not exclusive: after a hand edit no preset button is checked.
        self._preset_group = QButtonGroup(self)
        self._preset_group.setExclusive(False)
        for key, title in PRESET_NAMES.items():
            button = QPushButton(title)
            button.setToolTip(PRESET_HINTS[key])
            button.setCheckable(True)
            button.clicked.connect(lambda _checked=False, k=key: self.apply_preset(k))
            self._preset_group.addButton(button)
            self.preset_buttons[key] = button
            presets.addWidget(button)
        self.preset_label = QLabel()
        self.preset_label.setWordWrap(True)
        self.error_banner = QLabel()
        self.error_banner.setWordWrap(True)
        self.error_banner.setStyleSheet("color: #e5484d;")
        self.error_banner.hide()
        self.import_note = QLabel("An imported model is in use; its settings are fixed. Switch the workflow "
                                  "to 'Train from scratch' in Method and Data to train a new one.")
        self.import_note.setWordWrap(True)
        self.import_note.hide()
        self.running_note = hint_label("A training is running with the settings it started with; "
                                   "changes here apply to the next training.")
        self.running_note.hide()

        self._form_host = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Preset</b>"))
        layout.addLayout(presets)
        layout.addWidget(self.preset_label)
        layout.addWidget(self.import_note)
        layout.addWidget(self.running_note)
        layout.addWidget(self.error_banner)
        layout.addLayout(self._form_host)
        layout.addStretch(1)

        self._form: QWidget | None = None
        self._build_form()
        self._links.connect(self.session.method_changed, lambda _m: self._build_form())
        self._links.connect(self.session.config_changed, lambda _s: self._update_preset_label())
        self._links.connect(self.session.workflow_changed, self._on_workflow)
        self._links.connect(self.session.busy_changed, lambda busy: self.running_note.setVisible(busy))
        self._on_workflow(self.session.workflow)

    # -- actions -----------------------------------------------------------------------------------
    def apply_preset(self, preset: str) -> None:
        self.session.apply_preset(preset)

    def editor(self, name: str, stage: str = "stage1") -> FieldEditor:
        """The editor of a field ("patch_size"; for autoStructN2V per stage; "extractor.max_pixels")."""
        key = name if name in self.editors else f"{stage}.{name}"
        return self.editors[key]

    # -- building ------------------------------------------------------------------------------------
    def _build_form(self) -> None:
        if self._form is not None:
            self._form_host.removeWidget(self._form)
            discard_widget(self._form)
        self.binding.clear()
        self.editors = {}
        self._form = QWidget()
        layout = QVBoxLayout(self._form)
        layout.setContentsMargins(0, 0, 0, 0)
        stages = ("stage1", "stage2") if self.session.method == "autostructn2v" else (None,)

        main = QGroupBox("Training")
        main.setLayout(self._field_grid(MAIN_FIELDS, stages))
        layout.addWidget(main)

        self.advanced = QCollapsible("Advanced")
        advanced_body = QWidget()
        advanced_body.setLayout(self._field_grid(ADVANCED_FIELDS, stages))
        self.advanced.addWidget(advanced_body)
        layout.addWidget(self.advanced)

        if self.session.method == "autostructn2v":
            layout.addWidget(self._extractor_box())
        self._form_host.addWidget(self._form)
        self._update_preset_label()

    def _field_grid(self, names: tuple[str, ...], stages: tuple[str | None, ...]) -> QGridLayout:
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        if stages != (None,):
            grid.addWidget(QLabel("<b>Stage 1</b> (N2V)"), 0, 1)
            grid.addWidget(QLabel("<b>Stage 2</b> (structN2V)"), 0, 2)
            grid.setColumnStretch(2, 1)
        for name in names:
            model, section = section_model(name)
            if section == "masking" and self.session.method in SUPERVISED_METHODS:
                continue  # paired methods and the autoencoder train without blind spots
            row = grid.rowCount()
            label = None
            for column, stage in enumerate(stages, start=1):
                path = (section, name) if stage is None else (stage, section, name)
                editor = self.binding.bind(FieldEditor(model, name, path))
                self.editors[name if stage is None else f"{stage}.{name}"] = editor
                grid.addWidget(editor, row, column)
                label = label or QLabel(editor.label)
                label.setToolTip(editor.input.toolTip())
            grid.addWidget(label, row, 0)
        return grid

    def _extractor_box(self) -> QWidget:
        box = QGroupBox("Mask extractor")
        grid = QGridLayout(box)
        grid.setColumnStretch(1, 1)
        for name in EXTRACTOR_MAIN:
            self._add_single(grid, extractor_editor(name), f"extractor.{name}")
        more = QCollapsible("More extractor settings")
        more_body = QWidget()
        more_grid = QGridLayout(more_body)
        for name in EXTRACTOR_MORE:
            self._add_single(more_grid, extractor_editor(name), f"extractor.{name}")
        for name in AUTOSTRUCT_TOP_FIELDS:
            self._add_single(more_grid, FieldEditor(AutoStructConfig, name, (name,)), name)
        more.addWidget(more_body)
        grid.addWidget(more, grid.rowCount(), 0, 1, 2)
        return box

    def _add_single(self, grid: QGridLayout, editor: FieldEditor, key: str) -> None:
        self.binding.bind(editor)
        self.editors[key] = editor
        row = grid.rowCount()
        label = QLabel(editor.label)
        label.setToolTip(editor.input.toolTip())
        grid.addWidget(label, row, 0)
        grid.addWidget(editor, row, 1)

    # -- display ----------------------------------------------------------------------------------------
    def _update_preset_label(self) -> None:
        preset = self.session.config.preset
        for key, button in self.preset_buttons.items():
            button.setChecked(key == preset)
        if preset:
            self.preset_label.setText(f"Preset: {PRESET_NAMES[preset]}. {PRESET_HINTS[preset]}")
        else:
            base = PRESET_NAMES.get(self.session.preset, self.session.preset)
            self.preset_label.setText(f"Preset: custom (started from {base}).")

    def _show_error(self, message: str) -> None:
        if message:
            self.error_banner.setText(f"Not a valid configuration, fix the flagged fields: {message}")
            self.error_banner.show()
        else:
            self.error_banner.hide()

    def _on_workflow(self, workflow: str) -> None:
        importing = workflow == "import"
        self.import_note.setVisible(importing)
        if self._form is not None:
            self._form.setEnabled(not importing)
        for button in self.preset_buttons.values():
            button.setEnabled(not importing)
