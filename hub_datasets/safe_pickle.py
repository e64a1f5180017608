"""A restricted unpickler for the GCNet label pickles and the MMSA feature pickles.

Pickles downloaded from the internet can run arbitrary code when loaded with :func:`pickle.load`. The corpora
we read only need builtin containers and numpy's array/scalar reconstruction, so :class:`RestrictedUnpickler`
resolves exactly those globals (numpy 1.x and 2.x spellings, Python 2 ``__builtin__`` names) and refuses
anything else *before* calling it.
"""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetFormatError, UnsafePickleError


__all__ = ["ALLOWED_GLOBALS", "RestrictedUnpickler", "safe_load_pickle"]

_SAFE_BUILTINS = (
    "set",
    "frozenset",
    "list",
    "dict",
    "tuple",
    "str",
    "bytes",
    "bytearray",
    "int",
    "float",
    "complex",
    "bool",
    "slice",
    "range",
)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    from numpy._core import multiarray, numeric  # numpy >= 2 (the 1.x ``numpy.core`` names map onto these)

    table: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    return table


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table = _numpy_globals()
    for module in ("builtins", "__builtin__"):
        for name in _SAFE_BUILTINS:
            table[(module, name)] = getattr(builtins, name)
    # Python 3 writes ``bytes`` under protocol 2 as ``_codecs.encode(str, "latin1")``; it only encodes text.
    import _codecs

    table[("_codecs", "encode")] = _codecs.encode
    table[("collections", "OrderedDict")] = __import__("collections").OrderedDict
    return table


#: ``(module, name) -> object`` for every global a corpus pickle may reference.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only resolves the globals in :data:`ALLOWED_GLOBALS`.

    Args:
        file: A binary file object.
        source: The file name used in error messages.
        encoding: Passed to :class:`pickle.Unpickler` (``"latin1"`` reads Python 2 pickles).
    """

    def __init__(self, file, *, source: str = "<pickle>", encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - documented on the class
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle {self._source}: it references the global '{module}.{name}', which is not "
                "one of the builtin containers or numpy array/scalar constructors a corpus pickle needs. Nothing "
                "was executed. The file is not a GCNet/MMSA corpus pickle or it has been tampered with."
            ) from None

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - refuse persistent ids as well
        raise UnsafePickleError(f"refusing to unpickle {self._source}: it uses persistent ids ({pid!r})")


def safe_load_pickle(path: str | os.PathLike, *, encoding: str = "latin1") -> Any:
    """Load a corpus pickle with :class:`RestrictedUnpickler`.

    Args:
        path: The pickle file.
        encoding: Text encoding for Python 2 ``str`` objects (``"latin1"`` as the GCNet readers use).

    Returns:
        The unpickled object.

    Raises:
        DatasetFormatError: If the file is missing, truncated or not a pickle.
        UnsafePickleError: If it references a global outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"pickle file not found: {path}")
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, source=str(path), encoding=encoding).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise DatasetFormatError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
