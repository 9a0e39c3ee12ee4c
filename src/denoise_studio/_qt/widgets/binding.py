"""Keeps field editors and the session's one config object in step.

An edit builds a new config from the current one plus every bound editor's value and validates it
with the engine's own ``from_dict``. A valid result replaces the session's config; a refused one is
shown at the fields it names (red frame and message) and the session remembers the message so that
training waits for a fix. When the config changes elsewhere (a preset, the other dock), the editors
are refreshed from it. No parameter is stored anywhere but in the config.
"""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal

from ...engine.errors import ConfigError
from ..state.session import Session
from .fields import FieldEditor, errors_by_editor, get_path, set_path
from .qt_utils import Connections


class ConfigBinding(QObject):
    #: The message of a refused edit, or "" once the fields are valid again.
    error_changed = Signal(str)

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        self._links = Connections(self)
        self.session = session
        self.editors: list[FieldEditor] = []
        self._links.connect(session.config_changed, self._on_config_changed)

    def bind(self, editor: FieldEditor) -> FieldEditor:
        self.editors.append(editor)
        editor.changed.connect(lambda e=editor: self.edited(e))
        self._show(editor)
        return editor

    def clear(self) -> None:
        self.editors = []

    def refresh(self) -> None:
        for editor in self.editors:
            self._show(editor)
            editor.set_error(None)

    def _show(self, editor: FieldEditor) -> None:
        try:
            editor.set_value(get_path(self.session.config.to_dict(), editor.path))
            editor.setEnabled(True)
        except (KeyError, TypeError):
            # The field does not exist in this kind of config (e.g. extractor fields for N2V).
            editor.setEnabled(False)

    def _on_config_changed(self, source: object) -> None:
        if source is not self:
            self.refresh()
            self.error_changed.emit("")

    def edited(self, editor: FieldEditor) -> None:
        config = self.session.config
        data = config.to_dict()
        for bound in self.editors:
            if bound.isEnabled():
                set_path(data, bound.path, bound.value())
        data["preset"] = None  # hand-edited: no longer a preset
        try:
            new_config = type(config).from_dict(data)
        except ConfigError as err:
            message = str(err)
            flagged = errors_by_editor(err, self.editors) or {editor: message}
            for bound in self.editors:
                bound.set_error(flagged.get(bound))
            self.session.set_config_error(message)
            self.error_changed.emit(message)
            return
        for bound in self.editors:
            bound.set_error(None)
        self.session.set_config(new_config, source=self)
        self.error_changed.emit("")
