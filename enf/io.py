"""Small file helpers: atomic writes with the permissions of a plain ``open`` (the process umask)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "replace_with_umask", "umask_mode", "write_json_atomic", "write_text_atomic"]


def umask_mode() -> int:
    """``0o666`` less the process umask: the mode ``open(path, "w")`` would create a file with."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def replace_with_umask(tmp: str | Path, path: str | Path) -> None:
    """``os.replace(tmp, path)`` after giving ``tmp`` the umask's mode (``tempfile.mkstemp`` makes files
    owner-only, which would make every output of an atomic write unreadable to the user's group)."""
    os.chmod(tmp, umask_mode())
    os.replace(tmp, path)


@contextmanager
def atomic_write(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """The one way this project writes a file: yields a fresh temporary path beside ``path`` (same folder, so
    the rename is atomic; ``suffix`` for writers that read the format from it) to write to; when the block
    ends without an error it becomes ``path`` with the umask's mode, else it is removed. Either way no
    temporary file stays behind and an existing ``path`` is never half-written. Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        replace_with_umask(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; removed after a failure


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`). Returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
