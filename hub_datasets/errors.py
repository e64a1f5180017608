"""Exceptions raised by :mod:`hub_datasets`; all are ``ValueError`` subclasses with messages that name the file,
field or value at fault and what was expected."""

from __future__ import annotations


__all__ = ["ChecksumMismatchError", "DatasetFormatError", "IemocapUploadRefusedError", "UnsafePickleError"]


class DatasetFormatError(ValueError):
    """A corpus file or folder does not match the documented on-disk format (docs/datasets.md, "On-disk formats")."""


class UnsafePickleError(DatasetFormatError):
    """A pickle references a global outside the allow-list; it was refused before anything was executed."""


class ChecksumMismatchError(DatasetFormatError):
    """A file's SHA-256 digest differs from the published one."""


class IemocapUploadRefusedError(PermissionError):
    """IEMOCAP-derived features may only be published with an explicit opt-in to a private repository."""
