"""Atomic file writes: the data goes to a temporary file next to the target, which is then renamed over it.

A reader (or a process killed mid-write) sees either the old file or the complete new one, never a part.
The new file gets the permissions an ordinary ``open(path, "w")`` would give it (``0o666`` minus the umask).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


def _current_umask() -> int:
    """The process umask, read from /proc where possible (``os.umask`` would have to change it to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON (NaN/inf refused: make them ``None`` first) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
