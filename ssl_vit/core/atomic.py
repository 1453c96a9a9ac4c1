"""Atomic file writes: write to a temporary file in the same directory, fsync, then ``os.replace``.

A crash (or SIGKILL) at any moment leaves either the old file or the new one, never half of one.
Disk-full and permission errors surface as one-line :class:`SslvitError` messages.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ssl_vit.errors import SslvitError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it is fsynced and renamed onto ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise SslvitError(f"cannot write to '{path.parent}': {e.strerror}; choose a writable --output-dir") from None
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise SslvitError(
                f"disk full while writing '{path}'; the previous file is intact, free space and resume with --resume"
            ) from None
        raise SslvitError(f"cannot write '{path}': {e.strerror}; check the directory's permissions") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save(path: Path, writer: Callable[[Path], None]) -> None:
    """``writer(tmp_path)`` writes the file (e.g. ``torch.save``); it becomes ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
