"""Qt editors made from the pydantic fields of the engine's configs.

The config classes are the single source of truth: an editor takes its kind (spin box, check box,
drop-down), its range and its tooltip from the field's annotation, constraints and description.
Only the label shown next to it is chosen here.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from pydantic import BaseModel
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...engine.errors import ConfigError

#: Labels shown in the docks; the field name is used for anything not listed.
LABELS = {
    "patch_size": "Patch size",
    "patches_per_image": "Patches per image",
    "val_fraction": "Validation fraction",
    "augment": "Augmentation",
    "augment_rotate": "Rotate / transpose",
    "normalization": "Normalisation",
    "mask_percent": "Mask %",
    "strategy": "Masking strategy",
    "neighbourhood_radius": "Neighbourhood radius",
    "depth": "Layers (depth)",
    "base_features": "Features",
    "upsampling": "Upsampling mode",
    "resize_conv": "Resize convolution",
    "blur_pool": "Blur pooling",
    "top_skip": "Top skip connection",
    "batch_norm": "Batch norm",
    "residual": "Residual output",
    "epochs": "Epochs",
    "batch_size": "Batch size",
    "learning_rate": "Learning rate",
    "lr_schedule": "LR schedule",
    "early_stopping": "Early stopping",
    "patience": "Patience (epochs)",
    "max_time": "Max time",
    "seed": "Seed",
    "device": "Device",
    "precision": "Precision",
    "adaptive": "Adaptive thresholding",
    "base_percentile": "Base percentile",
    "percentile_decay": "Percentile decay",
    "max_pixels": "Max masked pixels",
    "max_radius": "Max radius",
    "abs_floor": "Absolute floor",
    "z_sigma": "Noise floor (sigmas)",
    "two_sided": "Two-sided",
    "dilate": "Dilate lines",
    "auto_approve": "Auto-approve mask",
    "stage2_init": "Stage 2 starts from",
    "stage2_max_coverage": "Stage 2 kernel coverage (%)",
    "loss": "Loss",
    "target_from": "Target from a filter",
    "register_target": "Register target",
    "max_shift": "Max shift",
    "psf_sigma": "PSF sigma",
    "positivity": "Positivity weight",
}

#: Fields shown in scientific notation (their useful values span decades).
SCIENTIFIC = {"learning_rate"}
#: Suffixes shown in spin boxes.
SUFFIXES = {"max_time": " s", "mask_percent": " %", "val_fraction": "", "max_shift": " px", "psf_sigma": " px"}
#: What the bottom of an optional number's range (standing for None) reads as.
NONE_TEXT = {
    "seed": "random",
    "psf_sigma": "off",
    # SBD: empty simulation values are fitted at Start (from the image or the chosen noise model).
    **dict.fromkeys(("gain", "read_variance", "signal_low", "signal_high"), "fitted at Start"),
}
#: Largest value offered for unbounded numbers.
UNBOUNDED_INT = 1_000_000
UNBOUNDED_FLOAT = 7 * 24 * 3600.0

ERROR_STYLE = "border: 1px solid #e5484d; border-radius: 2px;"
#: Explanations and status lines: quieter than the controls they explain.
HINT_STYLE = "color: gray;"


def hint_label(text: str = "", wrap: bool = True) -> QLabel:
    """A grey, word-wrapped label for an explanation or a status line."""
    label = QLabel(text)
    label.setWordWrap(wrap)
    label.setStyleSheet(HINT_STYLE)
    return label


def field_info(model: type[BaseModel], name: str):
    return model.model_fields[name]


def field_bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None, bool, bool]:
    """(low, high, low_exclusive, high_exclusive) from the field's ge/gt/le/lt constraints."""
    low = high = None
    low_open = high_open = False
    for item in field_info(model, name).metadata:
        if getattr(item, "ge", None) is not None:
            low = item.ge
        if getattr(item, "gt", None) is not None:
            low, low_open = item.gt, True
        if getattr(item, "le", None) is not None:
            high = item.le
        if getattr(item, "lt", None) is not None:
            high, high_open = item.lt, True
    return low, high, low_open, high_open


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``| None``, and whether None is allowed."""
    args = typing.get_args(annotation)
    if args and type(None) in args and typing.get_origin(annotation) is not typing.Literal:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def range_text(model: type[BaseModel], name: str) -> str:
    low, high, low_open, high_open = field_bounds(model, name)
    if low is None and high is None:
        return ""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    low_text = "-∞" if low is None else f"{low:g}"
    high_text = "∞" if high is None else f"{high:g}"
    return f"range {left}{low_text}, {high_text}{right}"


def tooltip(model: type[BaseModel], name: str) -> str:
    description = field_info(model, name).description or ""
    extra = range_text(model, name)
    return f"{description}\n({extra})" if extra else description


class OptionalSpinBox(QDoubleSpinBox):
    """A number box whose bottom value stands for None; a step up from it lands on ``first``, the
    lowest valid value (or 0 where the range has no bottom), not a step above the sentinel."""

    def __init__(self, first: float, parent: QWidget | None = None):
        super().__init__(parent)
        self.first = first

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt override)
        if steps > 0 and self.value() == self.minimum():
            self.setValue(self.first)
            steps -= 1
        if steps:
            super().stepBy(steps)


class ScientificSpinBox(QDoubleSpinBox):
    """A double spin box that shows and reads values like ``1e-4`` and steps by decades."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(12)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt override)
        return f"{value:g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 (Qt override)
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        from qtpy.QtGui import QValidator

        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            # Partial input such as "1e-" is fine while typing.
            if stripped in ("", "-", ".") or stripped.endswith(("e", "e-", "E", "E-")):
                return QValidator.State.Intermediate, text, pos
            return QValidator.State.Invalid, text, pos
        if self.minimum() <= value <= self.maximum():
            return QValidator.State.Acceptable, text, pos
        return QValidator.State.Intermediate, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 (Qt override)
        value = self.value()
        if value > 0:
            self.setValue(min(self.maximum(), max(self.minimum(), value * 10.0 ** (steps / 2))))
        else:
            super().stepBy(steps)


class FieldEditor(QWidget):
    """One config field: the input widget, and a message line shown when the value is refused."""

    changed = Signal()

    def __init__(self, model: type[BaseModel], name: str, path: tuple[str, ...], parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.name = name
        #: Where the field sits in the config's dict, e.g. ("stage1", "data", "patch_size").
        self.path = path
        annotation, self.optional = _base_type(field_info(model, name).annotation)
        self.input = self._make_input(annotation)
        self.input.setToolTip(tooltip(model, name))
        self.input.setObjectName(f"field_{'_'.join(path)}")
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #e5484d;")
        self.error_label.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(self.input)
        layout.addWidget(self.error_label)

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name.replace("_", " ").capitalize())

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    # -- construction ---------------------------------------------------------------------------
    def _make_input(self, annotation: Any) -> QWidget:
        low, high, low_open, high_open = field_bounds(self.model, self.name)
        if typing.get_origin(annotation) is typing.Literal:
            box = QComboBox()
            self._choices = list(typing.get_args(annotation))
            box.addItems([str(choice) for choice in self._choices])
            box.currentIndexChanged.connect(self.changed)
            return box
        if annotation is bool:
            box = QCheckBox()
            box.toggled.connect(self.changed)
            return box
        if annotation is int:
            box = QSpinBox()
            minimum = int(low if low is not None else -UNBOUNDED_INT) + (1 if low_open else 0)
            maximum = int(high if high is not None else UNBOUNDED_INT) - (1 if high_open else 0)
            if self.optional:
                # One step below the range stands for None ("random" seed).
                minimum -= 1
                box.setSpecialValueText(NONE_TEXT.get(self.name, "none"))
            box.setRange(minimum, maximum)
            box.setKeyboardTracking(False)  # validate the number typed, not each keystroke ("6" on the way to "64")
            box.valueChanged.connect(self.changed)
            return box
        if annotation is float:
            below_bottom = self.optional and not low_open  # None sits just below the valid range
            if self.name in SCIENTIFIC:
                box = ScientificSpinBox()
            else:
                box = OptionalSpinBox(float(low or 0.0)) if below_bottom else QDoubleSpinBox()
            maximum = float(high if high is not None else UNBOUNDED_FLOAT)
            # No lower bound: negative values are valid too (a dark level, a signal range).
            minimum = float(low if low is not None else -maximum)
            if self.name not in SCIENTIFIC:
                box.setDecimals(3 if maximum <= 5 else 2)
                box.setSingleStep(_step_for(max(minimum, 0.0), maximum))
            if low_open and not self.optional:
                minimum = minimum + (1e-12 if self.name in SCIENTIFIC else 10 ** -box.decimals())
            if high_open:
                maximum = maximum - 10 ** -box.decimals()
            if self.optional:
                # An open bottom (gt) is itself invalid and stands for None ("no limit"); below a closed
                # or absent one, the next shown value down does, so that the bound itself (a gain of 0)
                # stays settable.
                if below_bottom:
                    minimum -= 10 ** -box.decimals()
                box.setSpecialValueText(NONE_TEXT.get(self.name, "no limit"))
            box.setRange(minimum, maximum)
            box.setSuffix(SUFFIXES.get(self.name, ""))
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self.changed)
            return box
        raise TypeError(f"no editor for field {self.name} of type {annotation!r}")

    # -- value ------------------------------------------------------------------------------------
    def value(self) -> Any:
        box = self.input
        if isinstance(box, QComboBox):
            return self._choices[box.currentIndex()]
        if isinstance(box, QCheckBox):
            return box.isChecked()
        if self.optional and box.value() == box.minimum():
            return None
        return box.value()

    def set_value(self, value: Any) -> None:
        """Show ``value`` without emitting ``changed`` (the config is the source, not the user)."""
        box = self.input
        box.blockSignals(True)
        try:
            if isinstance(box, QComboBox):
                box.setCurrentIndex(self._choices.index(value) if value in self._choices else 0)
            elif isinstance(box, QCheckBox):
                box.setChecked(bool(value))
            elif value is None:
                box.setValue(box.minimum())
            else:
                box.setValue(value)
        finally:
            box.blockSignals(False)

    # -- error display ------------------------------------------------------------------------------
    def set_error(self, message: str | None) -> None:
        if message:
            self.input.setStyleSheet(ERROR_STYLE)
            self.error_label.setText(message)
            self.error_label.show()
            self.input.setProperty("invalid", True)
        else:
            self.input.setStyleSheet("")
            self.error_label.clear()
            self.error_label.hide()
            self.input.setProperty("invalid", False)

    @property
    def has_error(self) -> bool:
        return bool(self.input.property("invalid"))


class FilterSpecEditor(FieldEditor):
    """A filter spec field such as ``supervised.target_from`` ("gaussian:1.5", "median:5", "nlm" or None).

    The field is a string in the config, so the editor offers what the engine's validator accepts:
    a switch (off means None), the filter, and its size.
    """

    #: (filter, label of its size, default, step); nlm has no size in a target spec.
    FILTERS = (("gaussian", "sigma", 1.5, 0.25), ("median", "size", 5.0, 2.0), ("nlm", "", 0.0, 0.0))

    def _make_input(self, annotation: Any) -> QWidget:
        from qtpy.QtWidgets import QHBoxLayout

        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.switch = QCheckBox("use")
        self.filter_box = QComboBox()
        self.filter_box.addItems([name for name, *_ in self.FILTERS])
        self.size_box = QDoubleSpinBox()
        self.size_box.setDecimals(2)
        self.size_box.setRange(0.25, 25.0)  # the validator's (0, 25]
        self.size_box.setKeyboardTracking(False)
        for widget in (self.switch, self.filter_box, self.size_box):
            row.addWidget(widget)
        row.addStretch(1)
        self.switch.toggled.connect(self._update_enabled)
        self.filter_box.currentIndexChanged.connect(self._on_filter)
        for signal in (self.switch.toggled, self.filter_box.currentIndexChanged, self.size_box.valueChanged):
            signal.connect(self.changed)
        self._on_filter()
        return box

    def _on_filter(self, _index: int = 0) -> None:
        _name, size_label, default, step = self.FILTERS[self.filter_box.currentIndex()]
        self.size_box.blockSignals(True)
        self.size_box.setSingleStep(step or 1.0)
        self.size_box.setPrefix(f"{size_label} " if size_label else "")
        if size_label:
            self.size_box.setValue(default)
        self.size_box.blockSignals(False)
        self._update_enabled()

    def _update_enabled(self, _checked: bool = False) -> None:
        on = self.switch.isChecked()
        self.filter_box.setEnabled(on)
        self.size_box.setEnabled(on and bool(self.FILTERS[self.filter_box.currentIndex()][1]))

    def value(self) -> str | None:
        if not self.switch.isChecked():
            return None
        name = self.filter_box.currentText()
        return name if name == "nlm" else f"{name}:{self.size_box.value():g}"

    def set_value(self, value: Any) -> None:
        widgets = (self.switch, self.filter_box, self.size_box)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            self.switch.setChecked(value is not None)
            if value:
                name, _, size = str(value).partition(":")
                names = [n for n, *_ in self.FILTERS]
                self.filter_box.setCurrentIndex(names.index(name) if name in names else 0)
                self._on_filter()
                if size:
                    self.size_box.setValue(float(size))
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self._update_enabled()


def _step_for(low: float, high: float) -> float:
    span = high - low
    if span <= 1:
        return 0.01
    if span <= 10:
        return 0.05
    return 10.0 ** max(0, math.floor(math.log10(span)) - 2)


def set_path(data: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def get_path(data: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def errors_by_editor(error: ConfigError, editors: list[FieldEditor]) -> dict[FieldEditor, str]:
    """The editors of the fields a ConfigError names, from its (field path, message) pairs: the engine
    gives one pair per field concerned, so no message text is read here."""
    by_path = {editor.dotted: editor for editor in editors}
    found: dict[FieldEditor, str] = {}
    for path, message in error.issues:
        editor = by_path.get(path)
        if editor is not None and editor not in found:
            found[editor] = message
    return found
