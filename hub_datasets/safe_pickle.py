"""A restricted, budgeted unpickler for the GCNet label pickles and the MMSA feature pickles.

Pickles downloaded from the internet can run arbitrary code when loaded with :func:`pickle.load`, and even a
pickle that only calls harmless constructors can make them build gigabytes from a few hundred bytes (``str`` of a
list holding many references to one large buffer, a codec applied to its own output again and again, an array
whose shape is a number stored in the file). The corpora we read only need builtin containers and numpy's
array/scalar reconstruction, so :class:`RestrictedUnpickler`:

* resolves exactly the globals those formats use (numpy 1.x and 2.x spellings, Python 2 ``__builtin__`` names)
  and refuses anything else *before* calling it: ``set``/``frozenset``, ``bytes``/``bytearray`` of a byte string,
  ``_codecs.encode(text, "latin1")`` (how Python 3 writes bytes under protocol 2), an empty ``OrderedDict`` and
  numpy's ``_reconstruct``, ``scalar``, ``_frombuffer`` and ``dtype``. No global is handed to the pickle machinery
  itself: each is a checked stand-in that accepts only the argument forms pickle and numpy write;
* computes the size of every result *before* building it and charges it against one budget for the whole file
  (:data:`ALLOCATION_ALLOWANCE` plus a small multiple of the file's size), counting repeated references to one
  object once per use: a tiny file cannot make the reader allocate gigabytes, however it combines the calls;
* only lets ``BUILD`` restore the state of an array or dtype this file has just created (once, before use: a
  dtype shared with numpy or already used by an array is never modified), only lets ``APPEND``/``SETITEM``/
  ``ADDITEMS`` fill lists, dicts and sets, only accepts dict keys and set members whose hash cannot be forced to
  collide (strings, bytes, small integers), and refuses the opcodes no corpus pickle uses (``NEWOBJ``, ``INST``,
  ``OBJ``, extensions, persistent ids, out-of-band buffers);
* never allocates a buffer from a length stored in the file before the bytes are actually there;
* refuses a result nested deeper than :data:`MAX_NESTING` or containing itself.

It runs on the pure-Python unpickler so that every opcode above can be checked; corpus pickles hold few, large
objects, so this costs little (see ``benchmarks/bench_data.py``).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetFormatError, UnsafePickleError, short_repr


__all__ = [
    "ALLOCATION_ALLOWANCE",
    "ALLOWED_GLOBALS",
    "MAX_NESTING",
    "RestrictedUnpickler",
    "TextBudget",
    "safe_load_pickle",
]

#: Bytes that the calls in one pickle may produce in all, on top of :data:`SIZE_FACTOR` times the file's size.
ALLOCATION_ALLOWANCE = 16 * 1024 * 1024
#: A genuine pickle's calls produce about as many bytes as the file holds (bytes decoded, then copied into an
#: array); this multiple of the file size leaves room for that and for the containers' own overhead.
SIZE_FACTOR = 4
#: Deepest container nesting a corpus pickle may have (the real ones nest four or five levels).
MAX_NESTING = 32
#: Files up to this size are read whole before unpickling (faster); larger ones are streamed.
IN_MEMORY_BYTES = 64 * 1024 * 1024
#: Reads of at most this many bytes go straight to the file; longer ones only as far as the file reaches.
_DIRECT_READ = 1 << 16
#: Integers usable as dict keys or set members: their hash is their value, so distinct ones cannot collide.
_SAFE_INT = 1 << 60
_DTYPE_RE = re.compile(r"[<>|=]?[?bBhHiIlLqQefdgFDGOSUa]\d{0,9}|[<>|=]?[biufcSUa]\d{1,9}")


class _Refused(Exception):
    """Internal: a form of call or opcode this reader does not accept (turned into :class:`UnsafePickleError`)."""


class _Global:
    """A checked stand-in for an allowed global: the pickle can only call it through ``REDUCE``."""

    __slots__ = ("label", "handler")

    def __init__(self, label: str, handler: Callable | None) -> None:
        self.label = label
        self.handler = handler

    def __repr__(self) -> str:
        return f"<{self.label}>"


def _numpy_targets() -> dict[str, Any]:
    from numpy._core import multiarray, numeric  # numpy >= 2 (the 1.x ``numpy.core`` names map onto these)

    return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar, "_frombuffer": numeric._frombuffer}


_NUMPY = _numpy_targets()


def _global_names() -> dict[tuple[str, str], str]:
    table: dict[tuple[str, str], str] = {}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = "_reconstruct"
        table[(f"{core}.multiarray", "scalar")] = "scalar"
        table[(f"{core}.numeric", "_frombuffer")] = "_frombuffer"
    table[("numpy", "ndarray")] = "ndarray"
    table[("numpy", "dtype")] = "dtype"
    for module in ("builtins", "__builtin__"):
        for name in ("set", "frozenset", "bytes", "bytearray"):
            table[(module, name)] = name
    table[("_codecs", "encode")] = "encode"
    table[("collections", "OrderedDict")] = "OrderedDict"
    return table


#: ``(module, name) -> role`` for every global a corpus pickle may reference (each resolves to a checked stand-in).
ALLOWED_GLOBALS: dict[tuple[str, str], str] = _global_names()

_BYTES_LIKE = (bytes, bytearray)


def _describe(value: Any) -> str:
    """A short description of a value that never formats the value itself (it may be huge or deeply nested)."""
    if isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    if isinstance(value, (bool, float, type(None))) or (isinstance(value, int) and abs(value) < 10**12):
        return repr(value)
    return type(value).__name__


def _hash_safe(value: Any) -> bool:
    if type(value) in (str, bytes, np.str_, np.bytes_) or value is None:
        return True
    return type(value) in (int, bool) and -_SAFE_INT < value < _SAFE_INT


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that only rebuilds builtin containers, byte strings and numpy arrays, within a byte budget.

    Args:
        file: A binary file object.
        source: The file name used in error messages.
        encoding: Passed to :class:`pickle.Unpickler` (``"latin1"`` reads Python 2 pickles).
        allocation_budget: Bytes that the pickle's calls may produce in all (default :data:`ALLOCATION_ALLOWANCE`
            plus :data:`SIZE_FACTOR` times the file's size when it can be determined).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(
        self, file, *, source: str = "<pickle>", encoding: str = "latin1", allocation_budget: int | None = None
    ) -> None:
        self._raw = file
        try:
            self._size: int | None = os.fstat(file.fileno()).st_size
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            self._size = None
        super().__init__(_BoundedReader(file, self._size), encoding=encoding)
        self._source = source
        if allocation_budget is None:
            allocation_budget = ALLOCATION_ALLOWANCE + SIZE_FACTOR * (self._size or 0)
        self._budget = int(allocation_budget)
        self._limit = self._budget
        # dtypes this file created and has not used yet (only those may be BUILT), arrays awaiting their BUILD
        self._fresh_dtypes: dict[int, np.dtype] = {}
        self._fresh_arrays: dict[int, np.ndarray] = {}
        self._memory: io.BytesIO | None = None

    # ------------------------------------------------------------------ errors and budget

    def _refuse(self, why: str) -> UnsafePickleError:
        return UnsafePickleError(f"refusing to unpickle {self._source}: {why}. Nothing further was built.")

    def _charge(self, nbytes: int, what: str) -> None:
        if nbytes > self._budget:
            raise self._refuse(
                f"{what} would produce {nbytes:,} bytes, over what is left of the {self._limit:,}-byte budget "
                f"for this file ({max(self._budget, 0):,}); a genuine corpus pickle produces about its own size"
            )
        self._budget -= nbytes

    # ------------------------------------------------------------------ globals

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - documented on the class
        role = ALLOWED_GLOBALS.get((module, name))
        if role is None:
            raise UnsafePickleError(
                f"refusing to unpickle {self._source}: it references the global '{module}.{name}', which is not "
                "one of the builtin containers or numpy array/scalar constructors a corpus pickle needs. Nothing "
                "was executed. The file is not a GCNet/MMSA corpus pickle or it has been tampered with."
            )
        handler = None if role == "ndarray" else getattr(self, f"_call_{role}")
        return _Global(f"{module}.{name}", handler)

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - refuse persistent ids as well
        raise self._refuse("it uses persistent ids")

    # ------------------------------------------------------------------ checked calls

    def _call_set(self, label: str, args: tuple) -> Any:
        return self._make_set(label, args, set)

    def _call_frozenset(self, label: str, args: tuple) -> Any:
        return self._make_set(label, args, frozenset)

    def _make_set(self, label: str, args: tuple, kind: type) -> Any:
        if not args:
            self._charge(256, f"{label}()")
            return kind()
        if len(args) != 1 or type(args[0]) not in (list, tuple, set, frozenset):
            raise _Refused(f"{label} called with {len(args)} argument(s) ({', '.join(map(_describe, args))})")
        items = args[0]
        self._charge(256 + 32 * len(items), f"{label} of {len(items):,} members")
        self._check_members(items, label)
        return kind(items)

    def _call_bytes(self, label: str, args: tuple) -> bytes:
        if not args:
            return b""
        if len(args) != 1 or type(args[0]) not in _BYTES_LIKE:
            raise _Refused(f"{label} called with {', '.join(map(_describe, args))}; only a byte string is accepted")
        self._charge(len(args[0]) + 64, f"{label} of {len(args[0]):,} bytes")
        return bytes(args[0])

    def _call_bytearray(self, label: str, args: tuple) -> bytearray:
        if args and (len(args) != 1 or type(args[0]) not in _BYTES_LIKE):
            raise _Refused(f"{label} called with {', '.join(map(_describe, args))}; only a byte string is accepted")
        data = args[0] if args else b""
        self._charge(len(data) + 64, f"{label} of {len(data):,} bytes")
        return bytearray(data)

    def _call_encode(self, label: str, args: tuple) -> bytes:
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
            raise _Refused(
                f"{label} called with {', '.join(map(_describe, args))}; pickles only use it as "
                "encode(<text>, 'latin1')"
            )
        self._charge(len(args[0]) + 64, f"{label} of {len(args[0]):,} characters")
        return args[0].encode("latin1")

    def _call_OrderedDict(self, label: str, args: tuple) -> OrderedDict:  # noqa: N802 - named after the global
        if args:
            raise _Refused(f"{label} called with arguments; pickles create it empty and fill it")
        self._charge(256, f"{label}()")
        return OrderedDict()

    def _call_dtype(self, label: str, args: tuple) -> np.dtype:
        spec = args[0] if args else None
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        flags_ok = all(type(a) in (bool, int) and a in (0, 1) for a in args[1:])
        if not (1 <= len(args) <= 3 and type(spec) is str and _DTYPE_RE.fullmatch(spec) and flags_ok):
            raise _Refused(
                f"{label} called with {', '.join(map(_describe, args))}; only a plain type code such as 'f8', "
                "'<U12' or 'O8' is accepted"
            )
        if len(args) == 3 and not args[2]:
            raise _Refused(f"{label}({spec!r}, copy=False) would hand out numpy's shared {spec!r} type")
        self._charge(1024, f"{label}({spec!r})")
        dtype = np.dtype(spec, False, True)  # a private copy: BUILD may then set its byte order
        if dtype.fields is not None or dtype.subdtype is not None:
            raise _Refused(f"{label}({spec!r}) is not a plain type")
        self._fresh_dtypes[id(dtype)] = dtype
        return dtype

    def _settled_dtype(self, value: Any, label: str) -> np.dtype:
        """``value`` as the dtype of a new array or scalar (from then on it may no longer be rebuilt)."""
        if not isinstance(value, np.dtype):
            raise _Refused(f"{label} was given {_describe(value)} where a dtype was expected")
        self._fresh_dtypes.pop(id(value), None)
        if value.hasobject and value != np.dtype(object):
            raise _Refused(f"{label} was given the dtype {value.str!r}, which holds objects inside a record")
        return value

    def _count(self, shape: Any, label: str) -> int:
        if type(shape) is not tuple or len(shape) > 32 or not all(type(d) is int and d >= 0 for d in shape):
            raise _Refused(f"{label} was given the shape {_describe(shape)}, not a tuple of non-negative integers")
        count = 1
        for dim in shape:
            count *= dim
        return count

    def _call__reconstruct(self, label: str, args: tuple) -> np.ndarray:
        if len(args) != 3 or not isinstance(args[0], _Global) or args[0].handler is not None:
            raise _Refused(
                f"{label} called with {', '.join(map(_describe, args))}; numpy writes (ndarray, (0,), b'b')"
            )
        if args[2] not in (b"b", "b"):
            raise _Refused(f"{label} called with the dtype {_describe(args[2])}; numpy writes b'b'")
        count = self._count(args[1], label)
        self._charge(count + 128, f"{label}(shape={args[1]})")
        array = _NUMPY["_reconstruct"](np.ndarray, args[1], b"b")
        self._fresh_arrays[id(array)] = array
        return array

    def _call_scalar(self, label: str, args: tuple) -> Any:
        if len(args) != 2:
            raise _Refused(f"{label} called with {len(args)} argument(s); numpy writes scalar(dtype, data)")
        dtype = self._settled_dtype(args[0], label)
        if dtype.hasobject:
            self._charge(64, f"{label}(object)")
            return args[1]
        data = args[1].encode("latin1") if type(args[1]) is str else args[1]
        if type(data) not in _BYTES_LIKE or len(data) != dtype.itemsize:
            raise _Refused(f"{label}({dtype.str!r}) was given {_describe(args[1])}, not {dtype.itemsize} bytes")
        self._charge(dtype.itemsize + 64, f"{label}({dtype.str!r})")
        return _NUMPY["scalar"](dtype, bytes(data))

    def _call__frombuffer(self, label: str, args: tuple) -> np.ndarray:
        if len(args) != 4 or type(args[0]) not in _BYTES_LIKE or args[3] not in ("C", "F", "A"):
            raise _Refused(
                f"{label} called with {', '.join(map(_describe, args))}; numpy writes (buffer, dtype, shape, order)"
            )
        dtype = self._settled_dtype(args[1], label)
        count = self._count(args[2], label)
        if dtype.hasobject or dtype.itemsize == 0 or count * dtype.itemsize != len(args[0]):
            raise _Refused(
                f"{label}: a buffer of {len(args[0]):,} bytes does not hold an array of shape {args[2]} "
                f"and dtype {dtype.str!r}"
            )
        self._charge(len(args[0]) + 128, f"{label}(shape={args[2]})")
        return _NUMPY["_frombuffer"](args[0], dtype, args[2], args[3])

    # ------------------------------------------------------------------ BUILD

    def _build_dtype(self, dtype: np.dtype, state: Any) -> None:
        if self._fresh_dtypes.pop(id(dtype), None) is None:
            raise _Refused("BUILD targets a dtype that is shared or already in use; only a new one may be set up")
        ok = type(state) is tuple and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "|", "=")
        ok = ok and state[2] is None and state[3] is None and state[4] is None
        # only the byte order may change: size, alignment and flags (which say whether it holds objects) stay
        ok = ok and state[5] in (-1, dtype.itemsize) and state[6] in (-1, dtype.alignment) and state[7] == dtype.flags
        if not ok:
            raise _Refused(f"BUILD of the dtype {dtype.str!r} was given {_describe(state)}, not a plain type's state")
        dtype.__setstate__(state)

    def _build_array(self, array: np.ndarray, state: Any) -> None:
        if self._fresh_arrays.pop(id(array), None) is None:
            raise _Refused("BUILD targets an array that was already set up; numpy sets each one up once")
        if type(state) is not tuple or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            raise _Refused(
                f"BUILD of an array was given {_describe(state)}, not numpy's (1, shape, dtype, order, data)"
            )
        shape, dtype, fortran, data = state[-4:]
        label = "BUILD of an array"
        count = self._count(shape, label)
        dtype = self._settled_dtype(dtype, label)
        if type(fortran) not in (bool, int):
            raise _Refused(f"{label} was given the order flag {_describe(fortran)}")
        if dtype.hasobject:
            if type(data) is not list or len(data) != count:
                raise _Refused(f"{label} of {count:,} objects was given {_describe(data)}")
            self._charge(8 * count + 128, f"{label} of {count:,} objects")
        else:
            if type(data) not in (bytes, bytearray, str) or len(data) != count * dtype.itemsize:
                raise _Refused(
                    f"{label} of shape {shape} and dtype {dtype.str!r} needs {count * dtype.itemsize:,} bytes of "
                    f"data, got {_describe(data)}"
                )
            if dtype.itemsize == 0 and count:
                raise _Refused(f"{label} has elements of zero bytes ({dtype.str!r})")
            self._charge(len(data) + 128, f"{label} of shape {shape}")
        array.__setstate__(state)

    # ------------------------------------------------------------------ checks

    def _check_members(self, items, label: str) -> None:
        for item in items:
            if not _hash_safe(item):
                raise _Refused(
                    f"{label} holds a {type(item).__name__} key or member; corpus pickles key their dicts and sets by "
                    "strings (or small integers)"
                )

    def check_result(self, obj: Any) -> None:
        """Refuse a result nested deeper than :data:`MAX_NESTING` or containing itself (checked without recursion,
        visiting each container once; leaves are not recorded, so the bookkeeping grows with the containers)."""
        if _children(obj) is None:
            return
        depth: dict[int, int] = {}
        active: set[int] = set()
        stack: list[tuple[Any, bool]] = [(obj, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            if done:
                active.discard(key)
                depth[key] = 1 + max((depth[id(c)] for c in _children(node) if _is_container(c)), default=0)
                if depth[key] > MAX_NESTING:
                    raise self._refuse(f"its containers nest deeper than {MAX_NESTING} levels")
                continue
            if key in depth:
                continue
            if key in active:
                raise self._refuse("a container holds itself")
            active.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if _is_container(child))

    # ------------------------------------------------------------------ opcodes

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if not isinstance(func, _Global) or func.handler is None:
            raise _Refused(f"the pickle calls {_describe(func) if not isinstance(func, _Global) else func.label}")
        if type(args) is not tuple:
            raise _Refused(f"{func.label} is called with {_describe(args)} instead of an argument tuple")
        stack[-1] = func.handler(func.label, args)

    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if isinstance(inst, np.dtype):
            self._build_dtype(inst, state)
        elif type(inst) is np.ndarray:
            self._build_array(inst, state)
        else:
            raise _Refused(f"BUILD sets the state of a {type(inst).__name__}; only new arrays and dtypes have one")

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target(list, "APPEND").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list, "APPENDS").extend(items)

    def _target(self, kinds, opcode: str):
        target = self.stack[-1]
        if not isinstance(target, kinds) or (kinds is list and type(target) is not list):
            raise _Refused(f"{opcode} adds items to a {type(target).__name__}")
        return target

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._check_members((key,), "a dict")
        target = self._target(dict, "SETITEM")
        target[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        keys = items[0::2]
        if len(items) % 2:
            raise _Refused("SETITEMS is given a key without a value")
        self._check_members(keys, "a dict")
        target = self._target(dict, "SETITEMS")
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]

    def load_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Refused("DICT is given a key without a value")
        self._check_members(items[0::2], "a dict")
        self.append({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._check_members(items, "a set")
        target = self.stack[-1]
        if type(target) is not set:
            raise _Refused(f"ADDITEMS adds items to a {type(target).__name__}")
        target.update(items)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self._check_members(items, "a frozenset")
        self.append(frozenset(items))

    def load_bytearray8(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        data = self.read(length)  # the reader never allocates more than the file holds
        if len(data) != length:
            raise EOFError("BYTEARRAY8 is longer than the rest of the file")
        self.append(bytearray(data))

    def load_frame(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        if self._memory is not None:  # the whole file is in memory: a frame is only a length to check
            if size > len(self._memory.getbuffer()) - self._memory.tell():
                raise EOFError("a frame is longer than the rest of the file")
            return
        self._unframer.load_frame(size)  # the reader never allocates more than the file holds
        if len(self._unframer.current_frame.getbuffer()) != size:
            raise EOFError("a frame is longer than the rest of the file")

    def load_stop(self) -> None:
        raise _Stop(self.stack.pop())

    def _unused(self) -> None:
        raise _Refused("it uses an opcode that corpus pickles never use (objects, extensions or external data)")

    for _code, _method in (
        (pickle.REDUCE, load_reduce),
        (pickle.BUILD, load_build),
        (pickle.APPEND, load_append),
        (pickle.APPENDS, load_appends),
        (pickle.SETITEM, load_setitem),
        (pickle.SETITEMS, load_setitems),
        (pickle.DICT, load_dict),
        (pickle.ADDITEMS, load_additems),
        (pickle.FROZENSET, load_frozenset),
        (pickle.BYTEARRAY8, load_bytearray8),
        (pickle.FRAME, load_frame),
        (pickle.STOP, load_stop),
    ):
        dispatch[_code[0]] = _method
    for _code in (
        pickle.NEWOBJ,
        pickle.NEWOBJ_EX,
        pickle.OBJ,
        pickle.INST,
        pickle.EXT1,
        pickle.EXT2,
        pickle.EXT4,
        pickle.PERSID,
        pickle.BINPERSID,
        pickle.NEXT_BUFFER,
        pickle.READONLY_BUFFER,
    ):
        dispatch[_code[0]] = _unused
    del _code, _method

    def load(self) -> Any:  # noqa: D102 - documented on the class
        try:
            if self._size is not None and self._size <= IN_MEMORY_BYTES:
                obj = self._load_from_memory()
            else:
                obj = super().load()
        except _Stop as stop:
            obj = stop.value
        except _Refused as exc:
            raise self._refuse(str(exc)) from None
        self.check_result(obj)
        if self._fresh_arrays:
            raise self._refuse("an array was created but never given its data")
        return obj

    def _load_from_memory(self) -> Any:
        """The opcode loop of :meth:`pickle._Unpickler.load` over the file read whole (small files: much faster,
        as every read is then one call into ``io.BytesIO``)."""
        self._memory = io.BytesIO(self._raw.read(self._size + 1))
        self.read, self.readline, self.readinto = self._memory.read, self._memory.readline, self._memory.readinto
        self.metastack, self.stack, self.proto = [], [], 0
        self.append = self.stack.append
        read, dispatch = self.read, self.dispatch
        while True:
            key = read(1)
            if not key:
                raise EOFError
            dispatch[key[0]](self)


class _Stop(Exception):  # noqa: N818 - a control-flow signal, as pickle's own
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def _is_container(node: Any) -> bool:
    return type(node) in _CONTAINERS or (type(node) is np.ndarray and node.dtype.hasobject)


_CONTAINERS = (list, tuple, set, frozenset, dict, OrderedDict)


def _children(node: Any):
    """The objects a container refers to (``None`` for leaves)."""
    if type(node) in (list, tuple, set, frozenset):
        return list(node)
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, np.ndarray) and node.dtype.hasobject:
        return list(node.reshape(-1))
    return None


class _BoundedReader:
    """A file wrapper whose ``read(n)`` never allocates more than the bytes actually left in the file."""

    def __init__(self, raw, size: int | None) -> None:
        self._raw = raw
        self._size = size
        self.readline = raw.readline

    def read(self, n: int = -1) -> bytes:
        if 0 <= n <= _DIRECT_READ:
            return self._raw.read(n)
        if self._size is not None:
            try:
                left = max(self._size - self._raw.tell(), 0)
            except (OSError, ValueError):
                left = None
            if left is not None:
                return self._raw.read(left if n < 0 else min(n, left))
        if n < 0:
            return self._raw.read()
        parts, wanted = [], n
        while wanted > 0:
            chunk = self._raw.read(min(wanted, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)


def safe_load_pickle(path: str | os.PathLike, *, encoding: str = "latin1") -> Any:
    """Load a corpus pickle with :class:`RestrictedUnpickler`.

    Args:
        path: The pickle file.
        encoding: Text encoding for Python 2 ``str`` objects (``"latin1"`` as the GCNet readers use).

    Returns:
        The unpickled object.

    Raises:
        DatasetFormatError: If the file is missing, truncated or not a pickle.
        UnsafePickleError: If it references a global outside the allow-list, calls an allowed one in a form
            corpus pickles never use, or would produce more than its byte budget.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"pickle file not found: {path}")
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, source=str(path), encoding=encoding).load()
        except UnsafePickleError:
            raise
        except (Exception, RecursionError) as exc:  # noqa: BLE001 - any failure of a malformed file is reported
            detail = " ".join(str(exc).split())[:200]
            raise DatasetFormatError(f"{path} is not a readable pickle ({type(exc).__name__}: {detail})") from None


class TextBudget:
    """Caps the characters a reader copies out of one pickle's strings, counting every use of a shared string.

    A pickle may list one long string many times by reference (cheap in the file); every copy the reader makes
    (into an Arrow table) costs its full length. The cap is the unpickler's budget for the same file.

    Args:
        path: The pickle the strings come from (its size sets the cap; named in errors).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except OSError:
            size = 0
        self.left = ALLOCATION_ALLOWANCE + SIZE_FACTOR * size

    def strings(self, values, where: str) -> list[str]:
        """``values`` (a list, tuple or 1-D array of str/bytes) as a list of str, charged against the cap.

        Raises:
            DatasetFormatError: Naming ``where``, if an entry is not a string or the cap is spent.
        """
        if isinstance(values, np.ndarray):
            values = values.reshape(-1).tolist()
        if not isinstance(values, (list, tuple)):
            raise DatasetFormatError(f"{where} should be a list of strings, got {type(values).__name__}")
        out = []
        for k, value in enumerate(values):
            if isinstance(value, (bytes, np.bytes_)):
                value = bytes(value).decode("latin1")
            elif not isinstance(value, str):
                raise DatasetFormatError(
                    f"{where}[{k}] should be a string, got {type(value).__name__} {short_repr(value, 60)}"
                )
            self.left -= len(value)
            if self.left < 0:
                raise DatasetFormatError(
                    f"{self.path}: its strings add up to more characters than the file could hold ({where}[{k}] "
                    f"is one of many references to one long string?); refusing to copy them"
                )
            out.append(str(value))
        return out
