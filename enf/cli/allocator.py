"""Keep large CPU tensors on the C heap instead of fresh memory maps (glibc), set once per ``enf`` process.

glibc serves every allocation above ``M_MMAP_THRESHOLD`` (128 KiB, adapting up to 32 MiB) with a new memory map
and returns it to the kernel on ``free``. A Meta-SGD outer step allocates and frees hundreds of such tensors
(the per-pair activations of every inner step and their gradients), so each one is page-faulted in again: about
100,000 minor page faults per reference-size step. Raising the threshold (and the trim threshold) keeps the freed
memory in the process for the next step. The function stays the same; only the time changes (see
``experiments/benchmarks/README.md`` for the side-by-side numbers). Peak memory is the same high-water mark; the
process does not hand memory back to the system until it exits.

Every ``enf`` command calls :func:`tune_allocator` at start-up; ``ENF_ALLOCATOR=system`` keeps the system's
settings (the baseline of the comparison). Python users can call it first thing in their own scripts.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["allocator_setting", "tune_allocator"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: thresholds tried in order: glibc refuses values above its heap limit (32 MiB on some builds)
_MMAP_THRESHOLDS = (1 << 30, 32 << 20)
_state: dict[str, str] = {"setting": "system"}


def allocator_setting() -> str:
    """``"tuned (mmap threshold N MiB)"`` after a successful :func:`tune_allocator` in this process, else
    ``"system"``."""
    return _state["setting"]


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; ``True`` if they were set.

    A no-op (``False``) where it does not apply: not Linux, not glibc, or ``ENF_ALLOCATOR=system`` in the
    environment. Any other value of ``ENF_ALLOCATOR`` than ``tuned`` or ``system`` raises ``ValueError``.
    """
    choice = os.environ.get("ENF_ALLOCATOR", "tuned")
    if choice not in ("tuned", "system"):
        raise ValueError(f"ENF_ALLOCATOR must be 'tuned' or 'system', got {choice!r}")
    if choice == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    for threshold in _MMAP_THRESHOLDS:
        if mallopt(_M_MMAP_THRESHOLD, threshold) == 1:
            mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
            _state["setting"] = f"tuned (mmap threshold {threshold >> 20} MiB)"
            log.debug("allocator: %s", _state["setting"])
            return True
    return False
