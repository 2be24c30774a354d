"""Atomic file writes: a reader never sees a half-written result."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` and move it over ``path`` only on success.

    On any exception the temporary file is removed and ``path`` is left untouched. The
    file gets the mode a plain ``open`` would give it (0666 less the umask). A failed
    write names ``path``: an ``OSError`` without a file name gets it, and any error while
    the disk is full (torch's writer reports a short write in its own words) becomes
    "No space left on device" naming ``path``, its own message kept.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # the temporary's name would mean nothing to the reader
        raise _named(exc, target) from exc
    # mkstemp creates 0600 files; a result is meant to be shared like any other file.
    os.fchmod(fd, default_file_mode())
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        full = isinstance(exc, Exception) and disk_full(target.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if full and not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
            message = f"{os.strerror(errno.ENOSPC)} ({type(exc).__name__}: {exc})"
            raise OSError(errno.ENOSPC, message, str(target)) from exc
        if isinstance(exc, OSError) and exc.filename is None:
            raise _named(exc, target) from exc
        raise


#: free bytes below which a failed write is taken for a full disk
FULL_DISK_BYTES = 1 << 20


def disk_full(directory: str | os.PathLike[str]) -> bool:
    """Whether the filesystem of ``directory`` has (almost) no space left."""
    try:
        stats = os.statvfs(directory)
    except (OSError, AttributeError):  # no statvfs off POSIX
        return False
    return stats.f_bavail * stats.f_frsize < FULL_DISK_BYTES


def _named(exc: OSError, path: Path) -> OSError:
    """The error ``exc`` naming ``path``."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def default_file_mode() -> int:
    """The mode ``open`` gives a new file: 0666 less the process umask (reading the umask
    means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
