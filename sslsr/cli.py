"""What every command-line entry point shares: absl flags, one error path, `key=value` parsing.

Every CLI (`train.py`, `eval.py`, `python -m sslsr.upscale`, `python -m sslsr.data.masks`,
`python -m sslsr.data.prepare`) defines absl flags and calls `run(main)`. Errors the user can fix
(`UserError`, the config's `ConfigError`, a missing or unreadable file) end the program with one
line, `error: <file or field>: <problem>`, and exit status 2; `--debug` shows the traceback
instead.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from sslsr.errors import UserError

_DEBUG = flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")

EXIT_USER_ERROR = 2


def _is_user_error(e: BaseException) -> bool:
    # ConfigError subclasses UserError, so this module needs nothing from the trainer.
    return isinstance(e, (UserError, FileNotFoundError, IsADirectoryError, PermissionError))


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)` with user errors reported as one line (exit status 2)."""

    def guarded(argv):
        try:
            main(argv)
        except Exception as e:  # noqa: BLE001 - the filter below re-raises everything else
            if _DEBUG.value or not _is_user_error(e):
                raise
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    app.run(guarded)


def parse_kwargs(items: Sequence[str], flag: str = "arch_kwargs") -> dict:
    """['num_block=23', 'upsampler=pixelshuffle'] -> {'num_block': 23, 'upsampler': 'pixelshuffle'}.

    Values are Python literals where they parse as one, else strings.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UserError(f"--{flag}: expected key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out
