"""What every command-line entry point shares: absl flags, one error path, `key=value` parsing.

Every CLI (`train.py`, `eval.py`, `python -m sslsr.upscale`, `python -m sslsr.data.masks`,
`python -m sslsr.data.prepare`) defines absl flags and calls `run(main)`. Errors the user can fix
end the program with one line, `error: <file or field>: <problem>`, and exit status 2; `--debug`
shows the traceback instead. They are: `UserError` (and the config's `ConfigError`), a missing or
unreadable file, a full disk or a file over the size limit (ENOSPC, EDQUOT, EFBIG, also when a
library wraps them), and bad flag values, including `--config` files, their variants and
misspelt `--config.<field>` overrides. Warnings print as one line `warning: ...`. See
docs/reliability.md for the table of cases.
"""

from __future__ import annotations

import ast
import errno
import re
import sys
import warnings
from collections.abc import Callable, Sequence

from absl import app, flags, logging

from sslsr.errors import UserError

_DEBUG = flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")

EXIT_USER_ERROR = 2


def define_out(help_text: str) -> flags.FlagHolder:
    """`--out`, for the CLIs that take one (eval: a report folder, adapt: an image).

    absl flags are process-global and two modules may not define one name, yet a process may
    import both CLIs (the tests do): the second definition reuses the first's flag. Only one of
    them runs per command line, so the flag holds what that command asked for.
    """
    if "out" in flags.FLAGS:
        return flags.FlagHolder(flags.FLAGS, flags.FLAGS["out"])
    return flags.DEFINE_string("out", None, help_text)
# The storage errors a user fixes by freeing space or raising a limit, not by reading a traceback.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _is_user_error(e: BaseException) -> bool:
    # ConfigError subclasses UserError, so this module needs nothing from the trainer.
    return isinstance(e, (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError))


def _storage_error(e: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT/EFBIG OSError in `e`'s cause/context chain (orbax, TensorStore and
    asyncio wrap them), or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def error_line(e: BaseException) -> str | None:
    """The one-line report of an error the user can fix, or None for a bug (traceback)."""
    storage = _storage_error(e)
    if storage is not None:
        where = storage.filename or "storage"
        return f"{where}: {storage.strerror or 'storage full'}"
    if _is_user_error(e):
        return " ".join(str(e).split("\n")) if "\n" in str(e) else str(e)
    return None


def _flag_error_line(e: Exception, argv: Sequence[str]) -> str:
    """One line for an error raised while parsing the flags (absl flags and ml_collections'
    config_flags, which put a config file's own traceback or a bare KeyError in the message)."""
    text = e
    while isinstance(text, BaseException):  # config_flags wraps a KeyError in an AttributeError
        text = text.args[0] if isinstance(text, (KeyError, AttributeError)) and text.args else str(text)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if isinstance(e, (KeyError, AttributeError)):  # a misspelt --config.<field> override
        key = lines[0].strip("'\"") if lines else "?"
        flag = next((a.split("=")[0] for a in argv if a.startswith("--config.") and key in a.split("=")[0]), "--config")
        return f"{flag}: no config field {key!r}" + (f"; {lines[1]}" if len(lines) > 1 else "")
    if "Traceback (most recent call last)" in text and lines:
        # `flag --config=<file>: Error whilst parsing config file: <traceback> <Exc>: <message>`
        last = re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])
        return last if ": " in last else f"{lines[0]} {last}"
    return "; ".join(lines)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - every parse failure is a bad flag value
        if "--debug" in argv:
            raise
        print(f"error: {_flag_error_line(e, argv)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)` with user errors reported as one line (exit status 2)."""

    def guarded(argv):
        if not _DEBUG.value:
            warnings.formatwarning = _one_line_warning
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)  # orbax logs every file it touches (INFO) and read-only opens (WARNING)
        try:
            main(argv)
        except Exception as e:  # noqa: BLE001 - the filter below re-raises everything else
            line = None if _DEBUG.value else error_line(e)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    app.run(guarded, flags_parser=_parse_flags)


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
