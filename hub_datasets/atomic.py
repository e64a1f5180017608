"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

The data go to a temporary file in the destination's own folder (so the final rename never crosses a file
system), are flushed and ``fsync``-ed, and the temporary file is then renamed over the destination with
:func:`os.replace`. On any error (including ``KeyboardInterrupt``) the temporary file is removed and the
destination is left untouched.

The temporary file is created with mode ``0o666`` through :func:`os.open`, so the kernel applies the process
umask exactly as it does for a plain ``open(path, "w")``; the process umask is never read or changed.

Example::

    from hub_datasets.atomic import atomic_write_json
    atomic_write_json("out/metrics.json", {"wa": 0.71}, indent=2)
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "make_temp_dir"]

# O_BINARY (Windows only) keeps the C runtime from translating newlines in the bytes written.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _open_temporary(path: Path) -> tuple[int, Path]:
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")  # pragma: no cover


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    Args:
        path: Destination file; its folder must exist.
        data: The complete new content.
    """
    path = Path(path)
    fd, tmp = _open_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically.

    Args:
        path: Destination file; its folder must exist.
        text: The complete new content.
        encoding: Text encoding.
    """
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, **json_kwargs: Any) -> None:
    """Serialise ``obj`` with :func:`json.dumps` (``json_kwargs`` passed through) and write it atomically.

    The object is serialised before anything is written, so a value that cannot be encoded leaves the
    destination untouched. A trailing newline is added.

    Args:
        path: Destination file; its folder must exist.
        obj: A JSON-serialisable object.
        **json_kwargs: Keyword arguments of :func:`json.dumps` (``indent``, ``sort_keys``, ``default`` ...).
    """
    atomic_write_text(path, json.dumps(obj, **json_kwargs) + "\n")


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """Create a fresh, uniquely named folder ``<parent>/<prefix><random>`` for staging a folder replace.

    Unlike :func:`tempfile.mkdtemp` (always ``0o700``), the folder is created with mode ``0o777`` minus the
    process umask, so a staged folder renamed into place has the permissions of a plain ``mkdir``.

    Args:
        parent: An existing folder (the staged folder is later renamed inside it).
        prefix: Start of the folder name.

    Returns:
        The new folder.
    """
    for _ in range(100):
        folder = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            folder.mkdir(mode=0o777)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary folder in {parent}")  # pragma: no cover
