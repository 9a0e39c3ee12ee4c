"""The BioImage Model Zoo export dialog: what the package says about itself, and where it goes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QWidget,
)

from ...engine.bmz import package_name
from ...engine.model import TrainedModel

LICENSES = ("CC-BY-4.0", "MIT", "BSD-3-Clause", "Apache-2.0", "CC0-1.0", "GPL-3.0-or-later")


@dataclass
class BmzExportRequest:
    target: Path
    layer: str
    name: str
    description: str
    authors: list[str]
    license: str
    citations: list[tuple[str, str]]


class BmzExportDialog(QDialog):
    """Name, description, authors, licence and an optional citation; the layer whose centre becomes
    the test image and cover; the zip to write."""

    def __init__(self, model: TrainedModel, layers: list[str], folder: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export to the BioImage Model Zoo")
        self.name = QLineEdit(package_name(f"{model.title} denoiser"))
        self.description = QPlainTextEdit()
        self.description.setPlaceholderText("What it denoises: sample, microscope, noise level…")
        self.description.setFixedHeight(60)
        self.authors = QLineEdit()
        self.authors.setPlaceholderText("Ada Lovelace, Alan Turing")
        self.license = QComboBox()
        self.license.setEditable(True)
        self.license.addItems(LICENSES)
        self.citation = QLineEdit()
        self.citation.setPlaceholderText("optional: Me et al. 2026|10.1234/abcd (the method's paper is always cited)")
        self.layer = QComboBox()
        self.layer.addItems(layers)
        self.layer.setToolTip("An image of the kind the model denoises: its centre becomes the test image and cover.")
        self.target = QLineEdit(str(folder / f"{model.name}.zip"))
        browse = QPushButton("…")
        browse.clicked.connect(self._choose_target)
        target_row = QHBoxLayout()
        target_row.addWidget(self.target, 1)
        target_row.addWidget(browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        for label, widget in (
            ("Name", self.name), ("Description", self.description), ("Authors", self.authors),
            ("Licence", self.license), ("Citation", self.citation), ("Test image", self.layer),
        ):  # fmt: skip
            form.addRow(label, widget)
        form.addRow("Package", target_row)
        form.addRow(buttons)

    def _choose_target(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the package", self.target.text(), "BMZ package (*.zip)")
        if path:
            self.target.setText(path if path.endswith(".zip") else f"{path}.zip")

    def request(self) -> BmzExportRequest:
        """The dialog's values; a citation without ``TEXT|DOI`` raises ValueError naming the field."""
        citations = []
        text = self.citation.text().strip()
        if text:
            title, sep, doi = text.rpartition("|")
            if not sep or not title.strip() or not doi.strip():
                raise ValueError("Citation: write it as TEXT|DOI, e.g. Me et al. 2026|10.1234/abcd")
            citations.append((title.strip(), doi.strip()))
        return BmzExportRequest(
            target=Path(self.target.text().strip()).expanduser(),
            layer=self.layer.currentText(),
            name=self.name.text(),
            description=self.description.toPlainText(),
            authors=[name.strip() for name in self.authors.text().split(",") if name.strip()],
            license=self.license.currentText().strip(),
            citations=citations,
        )
