"""The sources :func:`hub_datasets.load_dataset` reads, each prepared into natural splits without masks.

* raw corpora (GCNet or MMSA files under ``data_dir``), prepared once and kept in the Arrow cache;
* the built-in synthetic corpus (generated in memory);
* parquet repos (a Hub id or a local folder), checked row by row where they enter.

Each preparer returns a :class:`Prepared`: the natural splits (IEMOCAP sessions, CMU train/validation/test), a
metadata dict for the provenance record, and the corpus description.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, List, Value

from . import masks as _masks
from .cache import cache_key, default_cache_dir, load_cached, save_cached
from .columns import arrow_column, content_fingerprint, flat_column, replace_column
from .constants import AUDIO, LABELS, MODALITIES, SYNTHETIC, TEXT, VIDEO, is_hub_id
from .errors import DatasetFormatError
from .gcnet import find_gcnet_corpus_dir, gcnet_fingerprint, read_gcnet, read_synthetic_marker
from .mmsa import find_mmsa_files, mmsa_fingerprint, read_mmsa, verify_mmsa_checksum
from .schema import (
    CORPORA,
    DERIVED_COLUMNS,
    FEATURE_PRESENT,
    MAX_ABS_FEATURE,
    UTTERANCE_KEYS,
    CorpusSpec,
    CorpusSplit,
    base_features,
    build_dataset,
    first_bad_feature,
    get_spec,
    matrix_column,
    ragged_column,
)
from .synthetic import SYNTHETIC_CONFIGS, generate_synthetic_corpus


def with_keys(dataset: Dataset) -> Dataset:
    values, lengths = flat_column(dataset, "utterance_ids")
    keys = _masks.utterance_keys(values.to_pylist())
    feature = List(Value("uint64"))
    return replace_column(dataset, UTTERANCE_KEYS, ragged_column(keys, lengths, feature.feature.pa_type), feature)


def build_natural(splits: dict[str, CorpusSplit], spec: CorpusSpec, fingerprint: str) -> dict[str, Dataset]:
    return {
        name: with_keys(
            build_dataset(split, spec.label_names, split_name=name, fingerprint=content_fingerprint(fingerprint, name))
        )
        for name, split in splits.items()
    }


@dataclasses.dataclass(frozen=True)
class RawOptions:
    """How to read a raw corpus (the ``load_dataset`` arguments that only raw corpora use)."""

    data_dir: str | os.PathLike | None = None
    source_format: str = "auto"
    mmsa_variant: str | None = None
    verify_checksums: bool = False
    expected_sha256: str | None = None
    feature_names: dict | None = None
    nan_policy: str = "error"
    cache_dir: str | os.PathLike | None = None
    use_cache: bool = True
    progress: bool | None = None


@dataclasses.dataclass
class Prepared:
    """A source prepared into natural splits (no masks yet).

    Attributes:
        natural: ``{natural split: Dataset}`` (IEMOCAP ``session1..5``; CMU ``train/validation/test``).
        meta: Where the data came from (corpus label, source, fingerprint, dims, cache ...), for the provenance.
        spec: The corpus description (label names taken from a parquet repo's ``ClassLabel``).
        config: The config recorded in the provenance.
        default_fold: The IEMOCAP fold used when ``fold=None`` (``None``: the five sessions).
    """

    natural: dict[str, Dataset]
    meta: dict
    spec: CorpusSpec
    config: str | None
    default_fold: int | None


def prepare_source(
    path: str, config: str | None, raw: RawOptions, *, synthetic_kwargs: dict, revision=None, token=None
) -> Prepared:
    """Prepare whatever ``path`` names: a raw corpus, ``"synthetic"``, a Hub id or a local parquet folder.

    Args:
        path: As for :func:`hub_datasets.load_dataset`.
        config: Synthetic or parquet config; ``None`` (or the corpus name) for raw corpora.
        raw: Reading options of raw corpora.
        synthetic_kwargs: Generator arguments of the synthetic corpus (``synthetic_seed`` is its seed).
        revision: Hub revision of a parquet repo.
        token: Hub token.

    Returns:
        The :class:`Prepared` source.
    """
    if path in CORPORA:
        if config not in (None, path):
            raise ValueError(f"load_dataset({path!r}) takes no config (got {config!r}); the corpus name is the config")
        spec = get_spec(path)
        natural, meta = prepare_raw_corpus(spec, raw)
        return Prepared(natural, meta, spec, spec.name, None)
    if path == SYNTHETIC:
        config = config or "iemocap4"
        if config not in SYNTHETIC_CONFIGS:
            raise ValueError(f"unknown synthetic config {config!r}; expected one of {SYNTHETIC_CONFIGS}")
        generator_kwargs = dict(synthetic_kwargs)  # ``seed`` is the mask seed; the generator's is synthetic_seed
        generator_kwargs["seed"] = generator_kwargs.pop("synthetic_seed", 0)
        natural, meta = prepare_synthetic(config, generator_kwargs)
        return Prepared(natural, meta, get_spec(config), config, 5)
    if Path(path).expanduser().is_dir() or is_hub_id(path):
        natural, meta, spec = prepare_parquet(path, config, revision, token)
        return Prepared(natural, meta, spec, config, None)
    raise ValueError(
        f"unknown dataset {path!r}: expected one of {sorted(CORPORA)} (with data_dir=...), 'synthetic', a Hub "
        "dataset id '<user>/<repo>' or a local parquet folder"
    )


@dataclasses.dataclass
class _RawSource:
    """A located raw corpus: which reader, which files, and the cache key parts that identify them."""

    use_gcnet: bool
    source_path: Path
    marker: dict | None
    label: str
    key_parts: dict


def _locate_raw(spec: CorpusSpec, raw: RawOptions) -> _RawSource:
    """Find the GCNet folder or the MMSA pickle under ``data_dir`` (one-line errors naming what is missing)."""
    if raw.data_dir is None:
        raise ValueError(
            f"load_dataset({spec.name!r}) needs data_dir=<folder holding {spec.label_pickle} and features/"
            f"{' or MMSA aligned_50.pkl / unaligned_50.pkl' if spec.family == 'cmu' else ''}>; these corpora "
            "cannot be downloaded by this library (IEMOCAP is licence-restricted). For a quick start use "
            "load_dataset('synthetic', ...)."
        )
    root = Path(raw.data_dir).expanduser()
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder")
    source_format = raw.source_format
    if source_format not in ("auto", "gcnet", "mmsa"):
        raise ValueError(f"source_format must be 'auto', 'gcnet' or 'mmsa', got {source_format!r}")
    corpus_dir = find_gcnet_corpus_dir(spec, root) if source_format in ("auto", "gcnet") else None
    mmsa = find_mmsa_files(spec, root) if spec.family == "cmu" and source_format in ("auto", "mmsa") else {}
    if source_format == "mmsa" and spec.family != "cmu":
        raise ValueError(f"the MMSA format holds CMU-MOSI/MOSEI only, not {spec.name!r}")
    if corpus_dir is None and not mmsa:
        mmsa_hint = (
            " nor MMSA aligned_50.pkl / unaligned_50.pkl" if spec.family == "cmu" and source_format != "gcnet" else ""
        )
        raise DatasetFormatError(
            f"label pickle not found: no {spec.label_pickle} in {root} or {root / spec.folder}{mmsa_hint}"
            + (" (source_format='gcnet')" if source_format == "gcnet" else "")
        )
    if corpus_dir is not None and source_format != "mmsa":
        if raw.verify_checksums:
            raise ValueError("verify_checksums=True applies to MMSA pickles; GCNet files have no published digests")
        marker = read_synthetic_marker(corpus_dir)
        key_parts = {
            "source": "gcnet",
            "corpus": spec.name,
            "files": gcnet_fingerprint(spec, corpus_dir, raw.feature_names),
            "feature_names": raw.feature_names or {},
            "nan_policy": raw.nan_policy,
        }
        return _RawSource(True, corpus_dir, marker, f"synthetic-{spec.name}" if marker else spec.name, key_parts)
    variant = raw.mmsa_variant
    if variant is None:
        if len(mmsa) > 1:
            raise ValueError(
                f"{root} holds both aligned_50.pkl and unaligned_50.pkl; choose one with "
                "mmsa_variant='aligned' or 'unaligned'"
            )
        variant = next(iter(mmsa))
    if variant not in mmsa:
        raise DatasetFormatError(f"no {variant}_50.pkl under {root} (found {sorted(mmsa) or 'none'})")
    source_path = mmsa[variant]
    marker = read_synthetic_marker(source_path.parent)
    if raw.verify_checksums or raw.expected_sha256:
        verify_mmsa_checksum(spec, variant, source_path, raw.expected_sha256)
    key_parts = {
        "source": "mmsa",
        "corpus": spec.name,
        "files": mmsa_fingerprint(source_path),
        "variant": variant,
        "nan_policy": raw.nan_policy,
    }
    return _RawSource(False, source_path, marker, f"synthetic-{spec.name}" if marker else spec.name, key_parts)


def _read_raw(spec: CorpusSpec, source: _RawSource, raw: RawOptions, key: str) -> tuple[dict[str, Dataset], dict]:
    """Read every file of a located corpus into natural splits (the slow part the cache saves)."""
    if source.use_gcnet:
        progress = datasets.is_progress_bar_enabled() if raw.progress is None else bool(raw.progress)
        flat, info = read_gcnet(
            spec,
            source.source_path,
            feature_names=raw.feature_names,
            nan_policy=raw.nan_policy,
            corpus_label=source.label,
            progress=progress,
        )
    else:
        flat, info = read_mmsa(spec, source.source_path, nan_policy=raw.nan_policy, corpus_label=source.label)
    meta = {
        "corpus": spec.name,
        "corpus_label": source.label,
        "synthetic": bool(source.marker),
        "synthetic_params": source.marker,
        "source": "gcnet" if source.use_gcnet else "mmsa",
        "source_path": str(source.source_path),
        "nan_policy": raw.nan_policy,
        "fingerprint": key,
        **info,
    }
    return build_natural(flat, spec, key), meta


def prepare_raw_corpus(spec: CorpusSpec, raw: RawOptions) -> tuple[dict[str, Dataset], dict]:
    """A raw corpus's natural splits: from the Arrow cache when its files are unchanged, else read and cached.

    Args:
        spec: The corpus.
        raw: Reading options (``data_dir``, format, cache ...).

    Returns:
        ``(natural splits, meta)``; ``meta["cache"]`` says whether the cache was hit and where it lives.
    """
    source = _locate_raw(spec, raw)
    key = cache_key(source.key_parts)
    cache_root = Path(raw.cache_dir).expanduser() if raw.cache_dir is not None else default_cache_dir()
    entry = {"path": str(cache_root / f"{spec.name}-{key}")}
    cached = load_cached(cache_root, spec.name, key) if raw.use_cache else None
    if cached is not None:
        natural, manifest = cached
        return natural, {**manifest["meta"], "cache": {"hit": True, **entry}}
    natural, meta = _read_raw(spec, source, raw, key)
    if not raw.use_cache:
        return natural, {**meta, "cache": None}
    natural = save_cached(cache_root, spec.name, key, natural, {"meta": meta})
    return natural, {**meta, "cache": {"hit": False, **entry}}


def prepare_synthetic(config: str, kwargs: dict) -> tuple[dict[str, Dataset], dict]:
    corpus = generate_synthetic_corpus(config, **kwargs)
    fingerprint = cache_key({"synthetic": corpus.params})
    natural = build_natural(corpus.splits, corpus.spec, fingerprint)
    meta = {
        "corpus": config,
        "corpus_label": corpus.corpus_label,
        "synthetic": True,
        "synthetic_params": corpus.params,
        "source": "generated",
        "source_path": None,
        "nan_policy": "error",
        "fingerprint": fingerprint,
        "feature_names": None,
        "dims": dict(corpus.params["dims"]),
        "nonfinite_values_replaced": 0,
        "cache": None,
    }
    return natural, meta


def prepare_parquet(path: str, config: str | None, revision, token) -> tuple[dict[str, Dataset], dict, CorpusSpec]:
    local = Path(path).expanduser()
    target = str(local) if local.is_dir() else path
    try:
        if local.is_dir():
            # A local folder is resolved to its data files first: ``datasets`` keys the cache of a folder loaded by
            # name on its README alone, so a rewritten file would be served from a stale cache; the ``parquet``
            # builder keys it on the files' paths and modification times.
            builder = datasets.load_dataset_builder(target, config)
            _check_parquet_files(dict(builder.config.data_files), config)
            loaded = datasets.load_dataset(
                "parquet", data_files=dict(builder.config.data_files), features=builder.info.features
            )
        else:
            loaded = datasets.load_dataset(target, config, revision=revision, token=token)
    except DatasetFormatError:
        raise
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"could not load parquet dataset {path!r} config {config!r}: {exc}") from None
    if not isinstance(loaded, DatasetDict) or not len(loaded):
        raise DatasetFormatError(f"{path!r} config {config!r} holds no splits")
    files = dict(builder.config.data_files) if local.is_dir() else {}
    completed = {}
    for split_name, split in loaded.items():
        shown = [str(f) for f in files.get(split_name, [])]
        where = (
            f"{shown[0]} (config {config!r}, split {split_name!r})"
            if len(shown) == 1
            else f"{path!r} config {config!r} split {split_name!r}"
        )
        completed[split_name] = (_complete_parquet_split(split, split_name, where), where)
    first, first_where = completed[next(iter(completed))]
    label = arrow_column(first, "corpus")[0].as_py() if len(first) else (config or "")
    name = label.removeprefix("synthetic-")
    try:
        spec = get_spec(name)
    except ValueError as exc:
        raise DatasetFormatError(f"{first_where}: column 'corpus' holds {label!r}: {exc}") from None
    natural = {}
    for split_name, (split, where) in completed.items():
        drop = [c for c in DERIVED_COLUMNS if c in split.column_names]
        if drop:
            split = split.remove_columns(drop)
        validate_rows(split, where, spec)
        natural[split_name] = with_keys(split)
    for m in MODALITIES:
        if not isinstance(first.features[m], Array2D) or len(first.features[m].shape) != 2:
            raise DatasetFormatError(f"{path!r} config {config!r}: column {m!r} is not a [utterances, dim] matrix")
    dims = {m: int(first.features[m].shape[1]) for m in MODALITIES}
    if spec.label_names is not None:
        feature = first.features[LABELS].feature
        if not isinstance(feature, ClassLabel):
            raise DatasetFormatError(f"{path!r}: the labels of {name} should be ClassLabel ids")
        spec = dataclasses.replace(spec, label_names=tuple(feature.names))
    meta = {
        "corpus": name,
        "corpus_label": label,
        "synthetic": label.startswith("synthetic-"),
        "synthetic_params": None,
        "source": "parquet",
        "source_path": path,
        "nan_policy": None,
        "fingerprint": content_fingerprint("parquet", path, config, revision),
        "feature_names": None,
        "dims": dims,
        "nonfinite_values_replaced": None,
        "cache": None,
    }
    return natural, meta, spec


#: Columns a parquet split cannot do without.
PARQUET_REQUIRED = ("dialog_id", "utterance_ids", LABELS, AUDIO, TEXT, VIDEO, "corpus")
#: Columns rebuilt when a parquet split lacks them (every row null): what they hold can be derived or defaulted.
PARQUET_OPTIONAL = ("speakers", "transcripts", FEATURE_PRESENT, "num_utterances", "session", "source_split")
_SESSION_ID = re.compile(r"^Ses0([1-5])")


def _check_parquet_files(files: dict, config: str | None) -> None:
    """Read each local parquet file's footer: a file that is not parquet, holds no rows or has columns no
    comp-emotion split has is named before ``datasets`` reads it (its own errors name neither file nor column)."""
    known = set(base_features(None, dict.fromkeys(MODALITIES, 1))) | set(DERIVED_COLUMNS)
    for split_name, paths in files.items():
        for path in paths:
            where = f"{path} (config {config!r}, split {split_name!r})"
            try:
                meta = pq.read_metadata(str(path))
            except (OSError, pa.ArrowException) as exc:
                detail = " ".join(str(exc).split())[:200]
                raise DatasetFormatError(f"{where} is not a readable parquet file ({detail})") from None
            if meta.num_rows == 0:
                raise DatasetFormatError(f"{where} holds no rows (conversations)")
            extra = sorted(set(meta.schema.to_arrow_schema().names) - known)
            if extra:
                raise DatasetFormatError(
                    f"{where} has column(s) {extra} that a comp-emotion split does not have (expected some of "
                    f"{sorted(known - set(DERIVED_COLUMNS))})"
                )


def _first_null(column) -> int | None:
    """The first row of an Arrow column (or one of its nested lists) holding a null, or ``None``."""
    chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in column.chunks]
    offset = 0
    for chunk in chunks:
        rows = np.arange(len(chunk))
        if chunk.null_count:
            return offset + int(np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False))[0])
        values, owners = chunk, rows
        while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            owners = np.repeat(owners, np.nan_to_num(lengths).astype(np.int64))
            values = pc.list_flatten(values)
            if values.null_count:
                return offset + int(owners[np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]])
        offset += len(chunk)
    return None


def _check_matrix_width(values, feature: Array2D, column: str, where: str) -> None:
    """Every utterance row of an ``Array2D((None, d))`` column must hold ``d`` values (``datasets`` does not check)."""
    width = feature.shape[1]
    if width is None:
        return
    offset = 0
    for chunk in values.chunks:
        storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
        per_utterance = pc.list_value_length(pc.list_flatten(storage)).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(per_utterance != width)
        if bad.size:
            owners = np.repeat(np.arange(len(storage)), pc.list_value_length(storage).to_numpy(zero_copy_only=False))
            raise DatasetFormatError(
                f"{where} row {offset + int(owners[bad[0]])}: column {column!r} has utterance vectors of "
                f"{int(per_utterance[bad[0]])} values, but the repo's schema declares {width}"
            )
        offset += len(storage)


def _complete_parquet_split(split: Dataset, split_name: str, where: str) -> Dataset:
    """Check a parquet split for missing (null) values and rebuild the optional columns it lacks.

    A column the file lacks reads as all nulls (the card's schema still lists it). A required one is an error
    naming the file and column; an optional one is rebuilt: ``num_utterances`` from ``utterance_ids``, empty
    ``speakers``/``transcripts``, ``feature_present`` all ones, ``session`` from the IEMOCAP dialogue id (or the
    split name), ``source_split`` from the split name. A null in some rows only is an error naming the row.
    """
    rows = len(split)
    absent = [c for c in PARQUET_REQUIRED if c not in split.column_names]
    if absent:
        raise DatasetFormatError(
            f"{where} lacks the column(s) {absent}; a comp-emotion parquet split needs {list(PARQUET_REQUIRED)} "
            "(publish it with hub_datasets.write_parquet_repo)"
        )
    rebuild = [c for c in PARQUET_OPTIONAL if c not in split.column_names]
    for column in split.column_names:
        values = arrow_column(split, column)
        if rows and values.null_count == rows and column not in DERIVED_COLUMNS:
            if column not in PARQUET_OPTIONAL:
                raise DatasetFormatError(
                    f"{where} has no values in the required column {column!r} (the file lacks it or holds only nulls)"
                )
            rebuild.append(column)
            continue
        row = _first_null(values)
        if row is not None:
            raise DatasetFormatError(f"{where} row {row}: column {column!r} holds a missing (null) value")
        feature = split.features[column]
        if isinstance(feature, Array2D) and column not in rebuild:
            _check_matrix_width(values, feature, column, where)
    if not rebuild:
        return split
    _, lengths = flat_column(split, "utterance_ids")
    total = int(lengths.sum())
    schema = base_features(None, dict.fromkeys(MODALITIES, 1))
    for column in rebuild:
        if column == "num_utterances":
            values = pa.array(lengths.astype(np.int32))
        elif column in ("speakers", "transcripts"):
            values = ragged_column([""] * total, lengths, pa.string())
        elif column == FEATURE_PRESENT:
            values = matrix_column(np.ones((total, 3), np.int8), lengths, schema[FEATURE_PRESENT])
        elif column == "session":
            match = re.search(r"(\d+)$", split_name)
            fallback = int(match.group(1)) if split_name.startswith("session") and match else 0
            ids = arrow_column(split, "dialog_id").to_pylist()
            values = pa.array(
                [int(m.group(1)) if (m := _SESSION_ID.match(d or "")) else fallback for d in ids], pa.int32()
            )
        else:
            values = pa.array([split_name] * rows, pa.string())
        split = replace_column(split, column, values, schema[column])
    return split


def validate_rows(dataset: Dataset, where: str, spec: CorpusSpec) -> None:
    """Check a parquet split where it enters: per-row lengths agree, labels are valid, features are finite.

    Each problem raises a one-line :class:`DatasetFormatError` naming the split, the conversation (row and
    ``dialog_id``), the utterance and, for features, the feature index.
    """
    dialog_ids = arrow_column(dataset, "dialog_id")

    def at(row: int) -> str:
        return f"{where} row {row} (dialog_id {dialog_ids[row].as_py()!r})"

    def storage(column: str):
        chunked = arrow_column(dataset, column)
        chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in chunked.chunks]
        return pa.chunked_array(chunks) if chunks else pa.chunked_array([], type=chunked.type.storage_type)

    reference = pc.list_value_length(arrow_column(dataset, "utterance_ids")).to_numpy(zero_copy_only=False)
    per_row = [LABELS, "speakers", "transcripts", AUDIO, TEXT, VIDEO]
    if FEATURE_PRESENT in dataset.column_names:
        per_row.append(FEATURE_PRESENT)
    for column in per_row:
        if column not in dataset.column_names:
            continue
        lengths = pc.list_value_length(storage(column)).to_numpy(zero_copy_only=False)
        odd = np.flatnonzero(lengths != reference)
        if odd.size:
            row = int(odd[0])
            unit = "feature rows" if column in (AUDIO, TEXT, VIDEO, FEATURE_PRESENT) else "entries"
            raise DatasetFormatError(
                f"{at(row)}: {column} has {int(lengths[row])} {unit} but utterance_ids has {int(reference[row])}; "
                "every per-utterance column needs one entry per utterance"
            )
    if "num_utterances" in dataset.column_names:
        counts = arrow_column(dataset, "num_utterances").to_numpy(zero_copy_only=False)
        odd = np.flatnonzero(counts != reference)
        if odd.size:
            row = int(odd[0])
            raise DatasetFormatError(
                f"{at(row)}: num_utterances is {int(counts[row])} but utterance_ids has {int(reference[row])}"
            )
    rows_of = np.repeat(np.arange(len(reference)), reference)
    starts = np.concatenate([[0], np.cumsum(reference)])

    def position(flat_index: int) -> str:
        row = int(rows_of[flat_index])
        return f"{at(row)} utterance {flat_index - int(starts[row])}"

    labels = pc.list_flatten(storage(LABELS)).to_numpy(zero_copy_only=False)
    if spec.label_names is not None:
        num_classes = len(dataset.features[LABELS].feature.names)
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise DatasetFormatError(
                f"{position(int(bad[0]))}: label {labels[bad[0]]} is not a class id in 0..{num_classes - 1} "
                f"({', '.join(dataset.features[LABELS].feature.names)})"
            )
    else:
        labels = labels.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(labels) | (np.abs(labels) > 3.0))
        if bad.size:
            raise DatasetFormatError(
                f"{position(int(bad[0]))}: label {float(labels[bad[0]])!r} is not a sentiment score in [-3, 3]"
            )
    for modality in MODALITIES:
        values = pc.list_flatten(pc.list_flatten(storage(modality))).to_numpy(zero_copy_only=False)
        dim = int(dataset.features[modality].shape[1])
        bad_value = first_bad_feature(values.reshape(-1, dim))
        if bad_value is not None:
            flat, col, value = bad_value
            raise DatasetFormatError(
                f"{position(flat)}: {modality} feature {col} is {value:.6g}; features must be finite and within "
                f"±{MAX_ABS_FEATURE:g}"
            )
