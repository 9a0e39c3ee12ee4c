"""Errors whose message is written for the user: every face shows them as they are, never a traceback."""

from __future__ import annotations


class InputError(ValueError):
    """The input image cannot be used; the message says why and what to do."""


class PredictionStopped(RuntimeError):
    """Prediction was stopped on request; nothing was written."""


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range.

    ``issues`` holds ``(field path, message)`` pairs, so a widget can mark the field without parsing
    the text; ``str(error)`` is the readable sentence.
    """

    def __init__(self, message: str, issues: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.issues: list[tuple[str, str]] = list(issues) if issues else _issues_from_text(message)

    @property
    def fields(self) -> list[str]:
        return [path for path, _ in self.issues]

    def prefixed(self, prefix: str) -> ConfigError:
        """The same error with every field path under ``prefix`` (e.g. ``stage1``)."""
        issues = [(f"{prefix}.{path}" if path else prefix, message) for path, message in self.issues]
        parts: list[str] = []
        for path, message in issues:
            head = message.split(" ", 1)[0]
            part = f"{prefix}.{message}" if path.endswith(head) else f"{path}: {message}"
            if not any(message in existing for existing in parts):  # one message for several fields: once
                parts.append(part)
        return ConfigError("; ".join(parts), issues)


def _issues_from_text(message: str) -> list[tuple[str, str]]:
    """``"field.path: message"`` gives one issue with that path; any other text an issue with no path."""
    head, sep, rest = message.partition(": ")
    if sep and head and " " not in head:
        return [(head, rest)]
    return [("", message)]


class PipelineStateError(RuntimeError):
    """A step of a multi-stage run was asked for in a state where it makes no sense."""
