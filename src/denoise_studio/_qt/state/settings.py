"""Where the plugin writes models and results: the workspace folder.

Layout::

    <workspace>/models/<session-id>/<training-id>/   config.json, weights, mask.npy
    <workspace>/results/<training-id>/               denoised TIFFs

The default is ``~/denoise-studio``. The environment variable ``DENOISE_STUDIO_WORKSPACE`` or
:func:`set_default_workspace` (tests) override it; each session can also change it in the Results dock.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_ENV = "DENOISE_STUDIO_WORKSPACE"

_override: Path | None = None


def default_workspace() -> Path:
    """The workspace a new session starts with."""
    if _override is not None:
        return _override
    from_env = os.environ.get(WORKSPACE_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / "denoise-studio"


def set_default_workspace(path: str | os.PathLike | None) -> None:
    """Change the default workspace for sessions created from now on (``None`` restores the default)."""
    global _override
    _override = None if path is None else Path(path).expanduser()


def models_dir(workspace: Path, session_id: str, training_id: str) -> Path:
    return workspace / "models" / session_id / training_id


def results_dir(workspace: Path, training_id: str) -> Path:
    return workspace / "results" / training_id
