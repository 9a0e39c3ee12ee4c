"""The command line: flags -> the public API -> files, with progress on the terminal.

Bad input ends with exit status 2 and one clear line on stderr, never a traceback. Ctrl-C or SIGTERM
during training stops it cleanly and keeps the best model so far (a second Ctrl-C aborts).
"""

from __future__ import annotations

import sys

from ..engine.bmz import BmzError
from ..engine.errors import ConfigError, PipelineStateError
from ..engine.io import InputError
from ..engine.persistence import ModelFileError, RunFolderError
from ..engine.prediction import NonFiniteOutputError, PredictionStopped
from .commands import EXIT_STOPPED, UsageError
from .parser import build_parser

EXIT_BAD_INPUT = 2
#: Errors whose message is written for the user: one line, exit status 2.
USER_ERRORS = (
    InputError, ConfigError, ModelFileError, RunFolderError, UsageError, PipelineStateError, NonFiniteOutputError,
    FileExistsError, BmzError,
)  # fmt: skip

__all__ = ["EXIT_BAD_INPUT", "EXIT_STOPPED", "UsageError", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        sys.stderr.write(f"error: {err}\n")
        return EXIT_BAD_INPUT
    except PredictionStopped as err:
        sys.stderr.write(f"stopped: {err}; no output was written\n")
        return EXIT_STOPPED
    except OSError as err:  # disk full, permission denied...
        where = getattr(err, "filename", "") or ""
        sys.stderr.write(f"error: {err.strerror or err}{f' ({where})' if where else ''}\n")
        return 1
    except (KeyboardInterrupt, EOFError):  # a second Ctrl-C, or Ctrl-D at a prompt
        sys.stderr.write("aborted\n")
        return EXIT_STOPPED
    except MemoryError:
        sys.stderr.write("error: out of memory; try a smaller batch size, patch size or image\n")
        return 1
