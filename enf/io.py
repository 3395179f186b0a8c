"""Small file helpers: atomic writes with the permissions of a plain ``open`` (the process umask)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["replace_with_umask", "umask_mode", "write_json_atomic", "write_text_atomic"]


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


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace`` (the umask's
    mode); a failure leaves any existing ``path`` untouched and no temporary file. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        replace_with_umask(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
