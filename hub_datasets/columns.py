"""Column helpers on Arrow-backed datasets: flat values of list columns, cheap column swaps, fingerprints.

They read columns through ``with_format("arrow")`` in the dataset's logical row order (indices mappings are
respected) and never format rows one by one.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset

from .constants import AUDIO, MODALITY_MASK, TEXT, VIDEO
from .schema import FEATURE_PRESENT


__all__ = ["NUMPY_COLUMNS", "arrow_column", "content_fingerprint", "flat_column", "present_flat", "replace_column"]

#: Columns a prepared split returns as numpy arrays.
NUMPY_COLUMNS = (AUDIO, TEXT, VIDEO, MODALITY_MASK, FEATURE_PRESENT)


def flat_column(dataset: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Flattened values and row lengths of a list column, in the dataset's logical row order."""
    table = dataset.select_columns([column]).with_format("arrow")[:]
    chunked = table.column(column)
    values = pc.list_flatten(chunked)
    lengths = pc.list_value_length(chunked).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, lengths


def arrow_column(dataset: Dataset, column: str):
    """One column as a ``pyarrow.ChunkedArray`` in logical row order (no per-row formatting)."""
    return dataset.select_columns([column]).with_format("arrow")[:].column(column)


def present_flat(dataset: Dataset) -> np.ndarray:
    table = dataset.select_columns([FEATURE_PRESENT]).with_format("arrow")[:]
    column = table.column(FEATURE_PRESENT)
    storage = [chunk.storage for chunk in column.chunks]
    flat = [pc.list_flatten(pc.list_flatten(s)).to_numpy(zero_copy_only=False) for s in storage]
    return np.concatenate(flat).astype(np.int8).reshape(-1, 3) if flat else np.zeros((0, 3), np.int8)


def replace_column(dataset: Dataset, name: str, column, feature) -> Dataset:
    """Replace (or add) one column, keeping the format; the other columns' Arrow buffers are shared, not copied."""
    fmt = dataset.format
    if name in dataset.column_names:
        dataset = dataset.remove_columns([name])
    dataset = dataset.add_column(name, column, feature=feature)
    columns = fmt["columns"]
    if columns is not None and name not in columns and name in NUMPY_COLUMNS:
        columns = [*columns, name]
    return dataset.with_format(
        type=fmt["type"], columns=columns, output_all_columns=fmt["output_all_columns"], **fmt["format_kwargs"]
    )


def content_fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]
