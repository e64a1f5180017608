"""Reading and checking the conversations the Space predicts on.

A conversation comes either from the bundled held-out *synthetic* example set (``examples.parquet``, one row
per conversation in the ``hub_datasets`` row format) or from files a visitor uploads:

* one ``.npy`` (or single-array ``.npz``) per modality, each ``[utterances, dim]``, the modality named by
  the file name (``audio.npy``, ``dialog7_text.npy``, ``video.npz`` ...);
* or one ``.npz`` holding the arrays ``audio``, ``text``, ``video`` (optional ``modality_mask`` ``[n, 3]``,
  ``labels`` ``[n]``, ``utterance_ids`` ``[n]``);
* or one parquet file, either one row per utterance (list columns ``audio``/``text``/``video``, optional
  ``label``/``labels``, ``utterance_id``, ``modality_mask``; a null cell marks that modality missing for
  that utterance) or a single row holding a whole conversation (the ``hub_datasets`` layout).

A modality for which no file is given is treated as missing for every utterance. Everything that is wrong
with an input raises :class:`InputError` with a message naming the file, the field and the value, and what
was expected; the Space shows that message to the visitor.
"""

from __future__ import annotations

import html
import math
import os
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hub_datasets.constants import MODALITIES  # the modality order of every [n, 3] mask


__all__ = [
    "GRID_COLUMNS",
    "MAX_FILE_BYTES_DEFAULT",
    "MODALITIES",
    "Conversation",
    "InputError",
    "grid_from_mask",
    "load_examples",
    "mask_from_grid",
    "parse_feature_files",
    "display_text",
    "validate_for_model",
]

#: Columns of the present/missing grid shown in the UI.
GRID_COLUMNS: tuple[str, ...] = ("#", "utterance", *MODALITIES)
#: Default per-file size limit (bytes); the Space reads ``COMP_MAX_FILE_MB`` to change it.
MAX_FILE_BYTES_DEFAULT = 16 * 1024 * 1024
#: Decompressed data may be at most this many times the file size limit (guards against zip bombs).
_DECOMPRESSED_FACTOR = 4
#: Largest accepted |feature value|: real utterance features (wav2vec, DeBERTa, MA-Net) stay far below it; beyond
#: it a float32 forward pass overflows into NaN.
MAX_ABS_FEATURE = 1e4
#: Most rows a parquet upload may declare (one conversation; far above any checkpoint's max_utterances).
MAX_PARQUET_ROWS = 10_000
#: Most feature values one request may upload (all modalities together; 110 utterances of 1,024 + 1,024 + 512
#: features are 0.3 million), checked from the file's header or footer before anything is decoded.
MAX_UPLOAD_VALUES = 2_000_000
#: Widest accepted feature vector (the corpora's widest is 1,024).
MAX_FEATURE_DIM = 4_096
_SUFFIXES = (".npy", ".npz", ".parquet", ".pq")

_ALIASES: dict[str, frozenset[str]] = {
    "audio": frozenset({"audio", "acoustic", "speech", "wav", "wav2vec", "a"}),
    "text": frozenset({"text", "textual", "lexical", "language", "deberta", "t", "l"}),
    "video": frozenset({"video", "visual", "vision", "face", "faces", "manet", "v"}),
}
_MASK_KEYS = ("modality_mask", "mask")
_LABEL_KEYS = ("labels", "label")
_ID_KEYS = ("utterance_ids", "utterance_id", "ids")
_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "present", "observed", "on", "x", "✓"})
_FALSE_WORDS = frozenset({"false", "0", "no", "n", "missing", "absent", "off", "", "-", "–"})


class InputError(ValueError):
    """An input the Space cannot use; the message says what is wrong and what was expected."""


@dataclass
class Conversation:
    """One conversation ready for prediction.

    Attributes:
        features: modality name -> float32 array ``[n, dim]``, or ``None`` when no data was given for
            that modality.
        available: bool ``[n, 3]``; ``True`` where the data holds that modality for that utterance.
        initial_mask: bool ``[n, 3]``; the present/missing grid shown first (a subset of ``available``).
        utterance_ids: one display id per utterance.
        labels: optional reference labels (class ids, class names or sentiment scores), one per utterance.
        transcripts: optional transcripts, one per utterance.
        source: human-readable origin shown in the UI.
        synthetic: whether the data comes from the synthetic corpus (the UI then says so everywhere).
        notes: one-line notes about how the input was read (e.g. typed lines whose accents were removed).
    """

    features: dict[str, np.ndarray | None]
    available: np.ndarray
    initial_mask: np.ndarray
    utterance_ids: list[str]
    labels: list[Any] | None = None
    transcripts: list[str] | None = None
    source: str = ""
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)
    dims: dict[str, int | None] = field(init=False)

    def __post_init__(self) -> None:
        self.dims = {m: (None if self.features.get(m) is None else int(self.features[m].shape[1])) for m in MODALITIES}

    @property
    def num_utterances(self) -> int:
        """Number of utterances in the conversation."""
        return int(self.available.shape[0])


# ----------------------------------------------------------------------------------------------- helpers
def display_text(value: Any, limit: int = 80) -> str:
    """A visitor-supplied string made safe to render anywhere: HTML-escaped, one line, at most ``limit`` chars."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


def _modality_of(name: str) -> str | None:
    """Map a file stem, npz key or column name to a modality, ``None`` if it names none.

    Raises:
        InputError: if the name matches more than one modality.
    """
    tokens = [tok for tok in re.split(r"[^a-z0-9]+", name.lower()) if tok]
    hits = sorted({m for m, aliases in _ALIASES.items() if any(tok in aliases for tok in tokens)})
    if len(hits) > 1:
        raise InputError(f"the name {name!r} matches several modalities ({', '.join(hits)}); name it after one")
    return hits[0] if hits else None


def _as_matrix(value: Any, where: str) -> np.ndarray:
    """Check one modality's features and return them as float32 ``[n, dim]``."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise InputError(f"{where}: cannot be read as a rectangular numeric array ({err})") from None
    if arr.dtype == object:
        raise InputError(f"{where}: rows have different lengths or non-numeric values; expected [utterances, dim]")
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{where}: has dtype {arr.dtype}, expected real numbers (float or int)")
    if arr.ndim != 2:
        raise InputError(
            f"{where}: has shape {tuple(arr.shape)}, expected 2 dimensions [utterances, dim] "
            "(one feature vector per utterance)"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{where}: has shape {tuple(arr.shape)}; expected at least one utterance and one dim")
    _check_finite(arr, where)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    _check_finite(out, where + " (after conversion to float32)")
    big = np.abs(out) > MAX_ABS_FEATURE
    if big.any():
        row, col = (int(i) for i in np.argwhere(big)[0])
        raise InputError(
            f"{where}: {int(big.sum())} value(s) exceed {MAX_ABS_FEATURE:g} in magnitude (first at utterance "
            f"{row + 1}, dim {col}: {float(out[row, col]):g}); expected features of a sane magnitude"
        )
    return out


def _check_finite(arr: np.ndarray, where: str) -> None:
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise InputError(
                f"{where}: {int(bad.sum())} value(s) are NaN or infinite (first at utterance {row + 1}, "
                f"dim {col}: {arr[row, col]}); expected finite numbers"
            )


def _as_mask(value: Any, n: int, where: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf" or arr.shape != (n, 3):
        raise InputError(
            f"{where}: expected a [{n}, 3] array of 0/1 (audio, text, video), got shape {tuple(arr.shape)} "
            f"and dtype {arr.dtype}"
        )
    if not np.isin(arr, (0, 1)).all():
        raise InputError(f"{where}: values must be 0 or 1")
    return arr.astype(bool)


def _as_vector(value: Any, n: int, where: str) -> list[Any]:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{where}: expected one value per utterance ({n}), got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{where}: contains NaN or infinite values")
    return arr.tolist()


def _human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} MiB"  # pragma: no cover - loop always returns


def _check_size(path: Path, display: str, max_bytes: int) -> None:
    if not path.is_file():
        raise InputError(f"{display}: file not found or not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{display}: file is {_human(size)}, over the {_human(max_bytes)} limit per file")
    if size == 0:
        raise InputError(f"{display}: file is empty")


# ------------------------------------------------------------------------------------------- file readers
@dataclass
class _Parsed:
    arrays: dict[str, tuple[Any, str]] = field(default_factory=dict)  # modality -> (values, where)
    missing_rows: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> bool [n] (parquet nulls)
    mask: tuple[Any, str] | None = None
    labels: tuple[Any, str] | None = None
    ids: tuple[Any, str] | None = None
    transcripts: list[str] | None = None
    max_utterances: int | None = None  # the checkpoint's, when known: more rows are refused before decoding
    values: int = 0  # feature values declared so far (headers / footers), over all files of the request

    def count(self, where: str, shape: Sequence[int]) -> None:
        """Charge a feature array's declared ``shape`` against the request's bounds, before it is read."""
        if len(shape) == 2:
            rows, dim = int(shape[0]), int(shape[1])
            if dim > MAX_FEATURE_DIM:
                raise InputError(f"{where}: {dim:,} features per utterance, over the limit of {MAX_FEATURE_DIM:,}")
            if self.max_utterances is not None and rows > self.max_utterances:
                raise InputError(
                    f"{where}: {rows:,} utterances, more than the checkpoint's max_utterances = {self.max_utterances}"
                )
        self.values += int(np.prod([int(d) for d in shape], dtype=np.float64))
        if self.values > MAX_UPLOAD_VALUES:
            raise InputError(
                f"{where}: the upload holds {self.values:,} feature values or more, over the limit of "
                f"{MAX_UPLOAD_VALUES:,} per conversation"
            )

    def add(self, modality: str, values: Any, where: str) -> None:
        if modality in self.arrays:
            raise InputError(
                f"{modality} features are given twice ({self.arrays[modality][1]} and {where}); give each once"
            )
        self.arrays[modality] = (values, where)


def _read_npy(path: Path, display: str, out: _Parsed) -> None:
    modality = _modality_of(Path(display).stem)
    if modality is None:
        raise InputError(
            f"{display}: cannot tell which modality this file holds; name it audio.npy, text.npy or video.npy "
            "(or put all three in one .npz)"
        )
    try:
        mapped = np.load(path, allow_pickle=False, mmap_mode="r")  # the header only; the data stays on disk
    except ValueError as err:
        raise InputError(f"{display}: not a plain numeric .npy array ({err})") from None
    except Exception as err:  # noqa: BLE001 -- any parser failure is a bad upload, reported as such
        raise InputError(f"{display}: unreadable as a NumPy .npy file ({type(err).__name__}: {err})") from None
    out.count(display, mapped.shape)
    arr = np.array(mapped)
    del mapped
    out.add(modality, arr, display)


def _read_npz(path: Path, display: str, out: _Parsed, max_bytes: int) -> None:
    if not zipfile.is_zipfile(path):
        raise InputError(f"{display}: unreadable as a NumPy .npz file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{display}: unreadable as a NumPy .npz file ({err})") from None
    limit = min(_DECOMPRESSED_FACTOR * max_bytes, 8 * MAX_UPLOAD_VALUES + 2**20)
    if total > limit:
        raise InputError(f"{display}: decompresses to {_human(total)}, over the {_human(limit)} limit")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except ValueError as err:
        raise InputError(f"{display}: holds something other than plain numeric/string arrays ({err})") from None
    except Exception as err:  # noqa: BLE001 -- any parser failure is a bad upload, reported as such
        raise InputError(f"{display}: unreadable as a NumPy .npz file ({type(err).__name__}: {err})") from None
    if not contents:
        raise InputError(f"{display}: the archive holds no arrays")
    found = False
    for key, arr in contents.items():
        where = f"{display}[{key!r}]"
        low = key.lower()
        if low in _MASK_KEYS:
            out.mask = (arr, where)
        elif low in _LABEL_KEYS:
            out.labels = (arr, where)
        elif low in _ID_KEYS:
            out.ids = (arr, where)
        else:
            modality = _modality_of(key)
            if modality is not None:
                out.count(where, arr.shape)
                out.add(modality, arr, where)
                found = True
    if not found:
        modality = _modality_of(Path(display).stem)
        if len(contents) == 1 and modality is not None:
            ((key, arr),) = contents.items()
            out.count(f"{display}[{key!r}]", arr.shape)
            out.add(modality, arr, f"{display}[{key!r}]")
        else:
            raise InputError(
                f"{display}: none of its arrays ({', '.join(map(repr, contents))}) is named audio, text or "
                "video; expected those keys (or a single array in a file named after its modality)"
            )


def _read_parquet(path: Path, display: str, out: _Parsed, max_bytes: int) -> None:
    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        rows, total = _parquet_decoded_bound(meta)
    except Exception as err:  # noqa: BLE001 -- any parser failure is a bad upload, reported as such
        raise InputError(f"{display}: unreadable as a parquet file ({type(err).__name__}: {err})") from None
    if rows > MAX_PARQUET_ROWS:
        raise InputError(
            f"{display}: declares {rows:,} rows, over the limit of {MAX_PARQUET_ROWS:,} (one conversation)"
        )
    if total > _DECOMPRESSED_FACTOR * max_bytes:
        raise InputError(
            f"{display}: would decode to at least {_human(total)}, over the "
            f"{_human(_DECOMPRESSED_FACTOR * max_bytes)} limit"
        )
    _check_parquet_footer(pf, display, out)
    try:
        table = pf.read()
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{display}: unreadable as a parquet file ({type(err).__name__}: {err})") from None
    if table.num_rows == 0:
        raise InputError(f"{display}: the table has no rows")

    columns: dict[str, str] = {}  # modality -> column name
    for name in table.column_names:
        low = name.lower()
        if low in _MASK_KEYS or low in _LABEL_KEYS or low in _ID_KEYS or low in ("transcript", "transcripts"):
            continue
        modality = _modality_of(name)
        if modality is not None and (
            pa.types.is_list(table.schema.field(name).type)
            or pa.types.is_large_list(table.schema.field(name).type)
            or pa.types.is_fixed_size_list(table.schema.field(name).type)
        ):
            if modality in columns:
                raise InputError(
                    f"{display}: columns {columns[modality]!r} and {name!r} both look like {modality} features"
                )
            columns[modality] = name
    if not columns:
        raise InputError(
            f"{display}: no list column named audio, text or video (columns: {', '.join(table.column_names)})"
        )

    def field_of(keys: Sequence[str]) -> str | None:
        return next((c for c in table.column_names if c.lower() in keys), None)

    first_type = table.schema.field(next(iter(columns.values()))).type
    per_conversation = (
        pa.types.is_list(first_type.value_type)
        or pa.types.is_large_list(first_type.value_type)
        or (pa.types.is_fixed_size_list(first_type.value_type))
    )
    if per_conversation:
        if table.num_rows != 1:
            raise InputError(
                f"{display}: holds {table.num_rows} conversations (one per row); upload a file with exactly one "
                "conversation"
            )
        for modality, name in columns.items():
            out.add(modality, table.column(name)[0].as_py(), f"{display}[{name!r}]")
        if (name := field_of(_MASK_KEYS)) is not None:
            out.mask = (table.column(name)[0].as_py(), f"{display}[{name!r}]")
        if (name := field_of(_LABEL_KEYS)) is not None:
            out.labels = (table.column(name)[0].as_py(), f"{display}[{name!r}]")
        if (name := field_of(_ID_KEYS)) is not None:
            out.ids = (table.column(name)[0].as_py(), f"{display}[{name!r}]")
        if (name := field_of(("transcripts", "transcript"))) is not None:
            value = table.column(name)[0].as_py()
            out.transcripts = [str(v) for v in value] if isinstance(value, list) else None
        return

    for modality, name in columns.items():
        cells = table.column(name).to_pylist()
        nulls = np.array([cell is None for cell in cells])
        if nulls.all():
            raise InputError(f"{display}[{name!r}]: every cell is null; leave the column out instead")
        width = len(next(cell for cell in cells if cell is not None))
        filled = [cell if cell is not None else [0.0] * width for cell in cells]
        out.add(modality, filled, f"{display}[{name!r}]")
        if nulls.any():
            out.missing_rows[modality] = nulls
    if (name := field_of(_MASK_KEYS)) is not None:
        out.mask = (table.column(name).to_pylist(), f"{display}[{name!r}]")
    if (name := field_of(_LABEL_KEYS)) is not None:
        out.labels = (table.column(name).to_pylist(), f"{display}[{name!r}]")
    if (name := field_of(_ID_KEYS)) is not None:
        out.ids = (table.column(name).to_pylist(), f"{display}[{name!r}]")
    if (name := field_of(("transcript", "transcripts"))) is not None:
        out.transcripts = ["" if v is None else str(v) for v in table.column(name).to_pylist()]


def _check_parquet_footer(pf: Any, display: str, out: _Parsed) -> None:
    """Bound what a parquet upload decodes to from its schema and footer alone: the layout (one row per utterance,
    or one row holding a whole conversation), the number of utterances against the checkpoint's
    ``max_utterances``, the number of feature values and the width of each feature column."""
    schema, meta = pf.schema_arrow, pf.metadata
    rows = int(meta.num_rows)
    features = {}
    for name in schema.names:
        kind = schema.field(name).type
        if _modality_of(name) is not None and (
            pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
        ):
            features[name] = (
                pa.types.is_list(kind.value_type)
                or pa.types.is_large_list(kind.value_type)
                or (pa.types.is_fixed_size_list(kind.value_type))
            )
    nested = any(features.values())
    if nested and rows != 1:
        raise InputError(
            f"{display}: holds {rows:,} conversations (one per row); upload a file with exactly one conversation"
        )
    if not nested and out.max_utterances is not None and rows > out.max_utterances:
        raise InputError(
            f"{display}: declares {rows:,} utterances (rows), more than the checkpoint's max_utterances = "
            f"{out.max_utterances}"
        )
    values: dict[str, int] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            top = str(column.path_in_schema).split(".")[0]
            values[top] = values.get(top, 0) + int(column.num_values)
    for name in features:
        count = values.get(name, 0)
        if not nested and rows and count / rows > MAX_FEATURE_DIM:
            raise InputError(
                f"{display}[{name!r}]: about {count // rows:,} features per utterance, over the limit of "
                f"{MAX_FEATURE_DIM:,}"
            )
        out.count(f"{display}[{name!r}]", (count,))
    others = sum(v for k, v in values.items() if k not in features)
    if others > MAX_UPLOAD_VALUES:
        raise InputError(
            f"{display}: its other columns hold {others:,} values, over the limit of {MAX_UPLOAD_VALUES:,}"
        )


_PHYSICAL_BYTES = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


def _parquet_decoded_bound(meta: Any) -> tuple[int, int]:
    """``(rows, bytes)`` a parquet file decodes to at least, from its footer alone (nothing is decoded).

    Dictionary and run-length encodings make the stored sizes tiny for huge tables, so the bound counts values:
    every column chunk's ``num_values`` (leaf values, nulls included) times the width of its physical type. For
    variable-length values (strings, binary) stored plainly, the chunk's uncompressed size; stored through a
    dictionary, ``num_values`` times the chunk's uncompressed size (no value can be longer than its dictionary).
    """
    rows = int(meta.num_rows)
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        rows = max(rows, int(group.num_rows))
        for c in range(group.num_columns):
            column = group.column(c)
            kind = str(column.physical_type)
            values = int(column.num_values)
            if kind in _PHYSICAL_BYTES:
                size = values * _PHYSICAL_BYTES[kind]
            else:  # BYTE_ARRAY / FIXED_LEN_BYTE_ARRAY
                stored = int(column.total_uncompressed_size)
                dictionary = any("DICTIONARY" in str(e) for e in column.encodings)
                size = max(values * 5, values * stored if dictionary else stored)
            total += size + int(group.num_rows) * 8  # + list offsets per row
    return rows, total


# ------------------------------------------------------------------------------------------------ public
def parse_feature_files(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None,
    *,
    max_file_bytes: int = MAX_FILE_BYTES_DEFAULT,
    display_names: Sequence[str] | None = None,
    max_utterances: int | None = None,
) -> Conversation:
    """Read an uploaded conversation from feature files.

    Args:
        paths: the uploaded files (``.npy``, ``.npz``, ``.parquet``); see the module docstring for layouts.
        max_file_bytes: size limit per file, in bytes.
        display_names: names to use in messages (default: the files' base names).
        max_utterances: the checkpoint's ``max_utterances``; a file declaring more utterances is refused from its
            header or footer, before its data is read.

    Returns:
        The conversation; modalities without a file have ``features[m] is None`` and are unavailable.

    Raises:
        InputError: for every problem with the files, naming the file and what was expected.
    """
    if paths is None:
        raise InputError("no files uploaded; upload one .npy/.npz per modality or one .npz/parquet with all three")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no files uploaded; upload one .npy/.npz per modality or one .npz/parquet with all three")
    if len(paths) > 3:
        raise InputError(f"{len(paths)} files uploaded; expected at most 3 (one per modality)")
    names = list(display_names) if display_names is not None else [p.name for p in paths]

    parsed = _Parsed(max_utterances=None if max_utterances is None else int(max_utterances))
    for path, display in zip(paths, names, strict=True):
        suffix = path.suffix.lower()
        if suffix not in _SUFFIXES:
            raise InputError(
                f"{display}: unsupported file type {suffix or '(none)'!r}; expected .npy, .npz or .parquet"
            )
        _check_size(path, display, max_file_bytes)
        if suffix == ".npy":
            _read_npy(path, display, parsed)
        elif suffix == ".npz":
            _read_npz(path, display, parsed, max_file_bytes)
        else:
            _read_parquet(path, display, parsed, max_file_bytes)

    if not parsed.arrays:
        raise InputError("the files hold no audio, text or video features")
    features: dict[str, np.ndarray | None] = dict.fromkeys(MODALITIES)
    for modality, (values, where) in parsed.arrays.items():
        features[modality] = _as_matrix(values, where)
    counts = {parsed.arrays[m][1]: arr.shape[0] for m, arr in features.items() if arr is not None}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{where}: {count}" for where, count in counts.items())
        raise InputError(f"the modalities have different numbers of utterances ({listing}); expected the same")
    n = next(iter(counts.values()))
    if parsed.max_utterances is not None and n > parsed.max_utterances:
        raise InputError(
            f"the files hold {n} utterances, more than the checkpoint's max_utterances = {parsed.max_utterances}"
        )

    available = np.zeros((n, 3), dtype=bool)
    for j, modality in enumerate(MODALITIES):
        if features[modality] is not None:
            available[:, j] = True
            if modality in parsed.missing_rows:
                available[parsed.missing_rows[modality], j] = False
    empty = np.flatnonzero(~available.any(axis=1))
    if empty.size:
        raise InputError(
            f"utterance {int(empty[0]) + 1} has no features in any modality (every cell of its row is null); "
            "every utterance needs at least one of audio, text, video"
        )
    initial = available.copy()
    if parsed.mask is not None:
        initial &= _as_mask(parsed.mask[0], n, parsed.mask[1])
        empty = np.flatnonzero(~initial.any(axis=1))
        if empty.size:
            raise InputError(
                f"{parsed.mask[1]}: utterance {int(empty[0]) + 1} has no observed modality (among those with "
                "features); every utterance needs at least one of audio, text, video"
            )
    labels = None
    if parsed.labels is not None:
        labels = _as_vector(parsed.labels[0], n, parsed.labels[1])
    ids = [str(i + 1) for i in range(n)]
    if parsed.ids is not None:
        ids = [display_text(v) for v in _as_vector(parsed.ids[0], n, parsed.ids[1])]
    transcripts = parsed.transcripts
    if transcripts is not None and len(transcripts) != n:
        transcripts = None
    return Conversation(
        features=features,
        available=available,
        initial_mask=initial,
        utterance_ids=ids,
        labels=labels,
        transcripts=transcripts,
        source="uploaded: " + ", ".join(names),
        synthetic=False,
    )


def load_examples(path: str | os.PathLike[str], *, synthetic: bool = True) -> dict[str, Conversation]:
    """Load the bundled example conversations (one row per conversation, ``hub_datasets`` layout).

    Args:
        path: the ``examples.parquet`` file written by ``python -m space_tools build_assets``.
        synthetic: whether the examples come from the synthetic corpus (default ``True``).

    Returns:
        ``dialog_id -> Conversation`` in file order; every modality is available for every utterance.

    Raises:
        InputError: if the file is missing or not in the expected layout.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"example set {str(path)!r} not found; build it with python -m space_tools build_assets")
    table = pq.read_table(path)
    required = {"dialog_id", *MODALITIES}
    missing = required - set(table.column_names)
    if missing:
        raise InputError(f"example set {path.name}: missing columns {sorted(missing)}")
    rows = table.to_pylist()
    examples: dict[str, Conversation] = {}
    for row in rows:
        dialog = str(row["dialog_id"])
        features = {m: _as_matrix(row[m], f"{path.name}[{dialog}][{m!r}]") for m in MODALITIES}
        n = features["audio"].shape[0]
        ids = [str(u) for u in (row.get("utterance_ids") or [str(i + 1) for i in range(n)])]
        available = np.ones((n, 3), dtype=bool)
        transcripts = row.get("transcripts")
        examples[dialog] = Conversation(
            features=features,
            available=available,
            initial_mask=available.copy(),
            utterance_ids=ids,
            labels=row.get("labels"),
            transcripts=[str(t) for t in transcripts] if transcripts else None,
            source=f"{'synthetic ' if synthetic else ''}example {dialog}",
            synthetic=synthetic,
        )
    return examples


def grid_from_mask(conversation: Conversation, mask: np.ndarray | None = None) -> Any:
    """Build the present/missing grid shown in the UI.

    Args:
        conversation: the conversation.
        mask: bool ``[n, 3]`` (default: ``conversation.initial_mask``).

    Returns:
        A ``pandas.DataFrame`` with columns :data:`GRID_COLUMNS`; modality columns are booleans.
    """
    mask = conversation.initial_mask if mask is None else np.asarray(mask, dtype=bool)
    data = {
        "#": np.arange(1, conversation.num_utterances + 1),
        "utterance": list(conversation.utterance_ids),
    }
    for j, modality in enumerate(MODALITIES):
        data[modality] = [bool(v) for v in mask[:, j]]
    return pd.DataFrame(data, columns=list(GRID_COLUMNS))


def _cell_to_bool(value: Any, row: int, column: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, (float, np.floating)) and not math.isnan(value) and float(value) in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE_WORDS:
            return True
        if low in _FALSE_WORDS:
            return False
    raise InputError(
        f"present/missing grid, utterance {row + 1}, column {column!r}: value {value!r} is not a yes/no value "
        "(expected true/false, 1/0, present/missing)"
    )


def mask_from_grid(grid: Any, num_utterances: int) -> np.ndarray:
    """Read the present/missing grid back into a bool ``[n, 3]`` mask.

    Args:
        grid: a ``pandas.DataFrame`` (what the Gradio component gives), a ``{"headers", "data"}`` dict (what
            an API client may send) or a list of rows in :data:`GRID_COLUMNS` order.
        num_utterances: number of utterances of the conversation the grid belongs to.

    Returns:
        bool ``[num_utterances, 3]``, columns audio/text/video.

    Raises:
        InputError: if the grid has the wrong number of rows, lacks a modality column or holds a value that
            is not yes/no.
    """
    if grid is None:
        raise InputError("the present/missing grid is empty; load an example or upload files first")
    if isinstance(grid, Mapping):
        frame = pd.DataFrame(grid.get("data") or [], columns=grid.get("headers"))
    elif isinstance(grid, pd.DataFrame):
        frame = grid
    else:
        rows = list(grid)
        frame = pd.DataFrame(rows, columns=list(GRID_COLUMNS)[: len(rows[0])] if rows else list(GRID_COLUMNS))
    lower = {str(c).strip().lower(): c for c in frame.columns}
    missing = [m for m in MODALITIES if m not in lower]
    if missing:
        raise InputError(
            f"the present/missing grid lacks the column(s) {missing}; expected columns {list(GRID_COLUMNS)}"
        )
    if len(frame) != num_utterances:
        raise InputError(
            f"the present/missing grid has {len(frame)} rows but the conversation has {num_utterances} "
            "utterances; reload the conversation to reset the grid"
        )
    mask = np.zeros((num_utterances, 3), dtype=bool)
    for j, modality in enumerate(MODALITIES):
        column = frame[lower[modality]].tolist()
        for i, value in enumerate(column):
            mask[i, j] = _cell_to_bool(value, i, modality)
    return mask


def validate_for_model(
    conversation: Conversation,
    mask: np.ndarray,
    *,
    dims: Mapping[str, int],
    max_utterances: int,
    checkpoint: str = "this checkpoint",
) -> None:
    """Check that ``conversation`` with ``mask`` can be fed to a model.

    Args:
        conversation: the conversation.
        mask: bool ``[n, 3]`` present/missing mask chosen by the visitor.
        dims: expected feature dimension per modality (``audio``/``text``/``video``) of the checkpoint.
        max_utterances: the checkpoint's ``max_utterances``.
        checkpoint: name of the checkpoint, used in messages.

    Raises:
        InputError: wrong dims, too many utterances, a mask of the wrong shape, an utterance with no modality,
            or a modality marked present where the data has none.
    """
    n = conversation.num_utterances
    if n > max_utterances:
        raise InputError(
            f"the conversation has {n} utterances, more than {checkpoint}'s max_utterances = {max_utterances}; "
            f"split it into parts of at most {max_utterances}"
        )
    wrong = [
        f"{modality} has {conversation.dims[modality]} (expected {int(dims[modality])})"
        for modality in MODALITIES
        if conversation.dims[modality] is not None and conversation.dims[modality] != int(dims[modality])
    ]
    if wrong:
        raise InputError(f"feature dims per utterance do not fit {checkpoint}: {'; '.join(wrong)}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n, 3):
        raise InputError(f"the present/missing mask has shape {tuple(mask.shape)}, expected ({n}, 3)")
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        shown = ", ".join(str(i + 1) for i in empty[:10]) + (" ..." if empty.size > 10 else "")
        raise InputError(
            f"utterance(s) {shown} have no modality marked present; every utterance needs at least one of "
            "audio, text, video"
        )
    impossible = mask & ~conversation.available
    if impossible.any():
        i, j = (int(v) for v in np.argwhere(impossible)[0])
        raise InputError(
            f"utterance {i + 1}: {MODALITIES[j]} is marked present but the data has no {MODALITIES[j]} features "
            "for it; mark it missing"
        )
