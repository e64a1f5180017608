"""A restricted unpickler for the GCNet label pickles and the MMSA feature pickles.

Pickles downloaded from the internet can run arbitrary code when loaded with :func:`pickle.load`. The corpora
we read only need builtin containers and numpy's array/scalar reconstruction, so :class:`RestrictedUnpickler`
resolves exactly those globals (numpy 1.x and 2.x spellings, Python 2 ``__builtin__`` names) and refuses
anything else *before* calling it.

Some allowed constructors allocate memory from a number stored in the pickle rather than from data stored in
it (``bytearray(n)``, ``bytes(n)``, ``range(n)`` fed to a container, ``ndarray(shape, dtype)``,
``_reconstruct(ndarray, shape, dtype)``). A genuine corpus pickle never does that: its arrays and byte strings
carry their content. Such size-driven allocations are therefore charged against a budget of
:data:`ALLOCATION_ALLOWANCE` bytes plus the file's own size, and the pickle is refused once the budget is spent,
before the allocation happens: a tiny file cannot make the reader allocate gigabytes.
"""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetFormatError, UnsafePickleError


__all__ = ["ALLOCATION_ALLOWANCE", "ALLOWED_GLOBALS", "RestrictedUnpickler", "safe_load_pickle"]

#: Bytes that size-driven constructors (``bytearray(n)``, ``range(n)``, ``ndarray(shape)`` ...) may allocate in
#: one pickle, on top of the file's own size.
ALLOCATION_ALLOWANCE = 16 * 1024 * 1024

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
_SIZED_NAMES = frozenset({"bytes", "bytearray", "range", "ndarray", "_reconstruct"})


def _shape_bytes(shape, dtype) -> int:
    """Bytes an array of ``shape`` and ``dtype`` needs (0 when they are malformed: numpy then refuses them)."""
    try:
        dims = shape if isinstance(shape, (tuple, list)) else (shape,)
        count = 1
        for dim in dims:
            count *= max(int(dim), 0)
        return count * max(np.dtype(dtype).itemsize, 1)
    except (TypeError, ValueError, OverflowError):
        return 0


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only resolves the globals in :data:`ALLOWED_GLOBALS`, with bounded allocations.

    Args:
        file: A binary file object.
        source: The file name used in error messages.
        encoding: Passed to :class:`pickle.Unpickler` (``"latin1"`` reads Python 2 pickles).
        allocation_budget: Bytes that size-driven constructors may allocate (default
            :data:`ALLOCATION_ALLOWANCE` plus the file's size when it can be determined).
    """

    def __init__(
        self, file, *, source: str = "<pickle>", encoding: str = "latin1", allocation_budget: int | None = None
    ) -> None:
        super().__init__(file, encoding=encoding)
        self._source = source
        if allocation_budget is None:
            try:
                allocation_budget = ALLOCATION_ALLOWANCE + os.fstat(file.fileno()).st_size
            except (AttributeError, OSError, ValueError):
                allocation_budget = ALLOCATION_ALLOWANCE
        self._budget = int(allocation_budget)

    def _charge(self, nbytes: int, what: str) -> None:
        if nbytes > self._budget:
            raise UnsafePickleError(
                f"refusing to unpickle {self._source}: {what} would allocate {nbytes:,} bytes from a size stored in "
                f"the file (at most {self._budget:,} allowed). Corpus pickles store their data; they never ask for "
                "large empty buffers. Nothing was allocated."
            )
        self._budget -= nbytes

    def _sized(self, module: str, name: str, target: Any) -> Any:
        """A checked stand-in for an allowed constructor that can allocate from a number."""
        label = f"{module}.{name}"

        def call(*args, **kwargs):
            if name in ("bytes", "bytearray") and args and isinstance(args[0], int) and not isinstance(args[0], bool):
                self._charge(max(args[0], 0), f"{label}({args[0]})")
            elif name == "range":
                result = target(*args)
                self._charge(8 * len(result), f"{label}({', '.join(map(repr, args))})")
                return result
            elif name == "ndarray":
                shape = args[0] if args else kwargs.get("shape", ())
                dtype = args[1] if len(args) > 1 else kwargs.get("dtype", float)
                self._charge(_shape_bytes(shape, dtype), f"{label}(shape={shape!r})")
            elif name == "_reconstruct" and len(args) >= 3:
                if getattr(args[0], "_stands_for_ndarray", False):
                    args = (np.ndarray, *args[1:])
                self._charge(_shape_bytes(args[1], args[2]), f"{label}(shape={args[1]!r})")
            return target(*args, **kwargs)

        call._stands_for_ndarray = name == "ndarray"
        return call

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - documented on the class
        try:
            target = ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle {self._source}: it references the global '{module}.{name}', which is not "
                "one of the builtin containers or numpy array/scalar constructors a corpus pickle needs. Nothing "
                "was executed. The file is not a GCNet/MMSA corpus pickle or it has been tampered with."
            ) from None
        if name in _SIZED_NAMES:
            return self._sized(module, name, target)
        return target

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
