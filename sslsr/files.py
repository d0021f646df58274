"""Writing a file so that it appears whole or not at all.

Every file the tools write (images, reports, configs, exported weights, run ids) goes through
`atomic_path`: the writer fills a temporary file beside the target, which is renamed over the
target only when the writer succeeded. A crash or a full disk leaves the previous file (or no
file) and no temporary one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path beside `path` (its folder created); renamed to `path` when the block
    succeeds, removed otherwise. An OSError without a file name is re-raised naming `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # some writers create the file 0600 (safetensors does)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno is not None and e.filename is None:  # Pillow's errors do not say which file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """`text` (UTF-8) to `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
