"""Exceptions raised by :mod:`hub_datasets`; all are ``ValueError`` subclasses with messages that name the file,
field or value at fault and what was expected."""

from __future__ import annotations

import reprlib


__all__ = [
    "ChecksumMismatchError",
    "DatasetFormatError",
    "IemocapUploadRefusedError",
    "UnsafePickleError",
    "short_repr",
]


class DatasetFormatError(ValueError):
    """A corpus file or folder does not match the documented on-disk format (docs/datasets.md, "On-disk formats")."""


class UnsafePickleError(DatasetFormatError):
    """A pickle references a global outside the allow-list; it was refused before anything was executed."""


class ChecksumMismatchError(DatasetFormatError):
    """A file's SHA-256 digest differs from the published one."""


class IemocapUploadRefusedError(PermissionError):
    """IEMOCAP-derived features may only be published with an explicit opt-in to a private repository."""


def short_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, computed without formatting a large or deep value whole.

    Values read from a corpus file may be huge (a list of a million references to one long string) or nested
    deeply; error messages quote them through this so the message stays one short line.
    """
    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxlist, shortener.maxtuple, shortener.maxdict = 2, 4, 4, 4
    shortener.maxset = shortener.maxfrozenset = shortener.maxdeque = shortener.maxarray = 4
    shortener.maxstring = shortener.maxother = shortener.maxlong = limit
    try:
        text = shortener.repr(value)
    except Exception:  # noqa: BLE001 - an object whose repr fails (an int past Python's digit limit) is named
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
