"""The one way fsmigrate creates a file that may carry document data or IDs (plan files,
exports, audits, reports, the Beam journal): readable and writable by its owner only
(0600, like the state file), whatever the umask, and written whole or not at all.

Every writer of such a file goes through `private_file` (or puts its files in a
`private_dir`); tests/test_file_modes.py checks both that the files come out 0600 and
that no module of the package creates a file any other way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Union

FILE_MODE = 0o600
DIR_MODE = 0o700

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def private_file(path: PathLike, mode: str = "w", *, durable: bool = False) -> Iterator[IO[Any]]:
    """Open a new version of `path` for writing ("w" text, UTF-8; "wb" bytes). The data
    goes to a temporary file beside it, created 0600, that replaces `path` when the block
    ends without an error (a reader never sees half a file; on an error the old file
    stays as it was). `durable`: fsync before the rename."""
    if mode not in ("w", "wb"):
        raise ValueError(f"private_file opens for writing ('w' or 'wb'), not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")  # 0600
    try:
        os.fchmod(fd, FILE_MODE)  # (mkstemp's already; said here so it is not left to it)
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def private_append(path: PathLike) -> int:
    """A file descriptor appending to `path`, created 0600 when new (a log)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)


def private_dir(path: PathLike) -> Path:
    """Make directory `path` (and missing parents) readable by its owner only; what is
    created inside it by other code (Beam's own output files) is private through it."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(directory, DIR_MODE)
    return directory
