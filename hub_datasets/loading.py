"""``load_dataset``: the four corpora, the synthetic corpus and parquet repos, with missing-modality masks.

The look and feel is that of :func:`datasets.load_dataset` (a :class:`~datasets.DatasetDict`, or one
:class:`~datasets.Dataset` with ``split=``); it is built only on public ``datasets`` APIs (Arrow tables,
``save_to_disk``/``load_from_disk``, parquet repos through :func:`datasets.load_dataset`).

Rows are conversations. The features stay as read from the corpus; ``modality_mask`` says which ones the
protocol hides, and :class:`~hub_datasets.ComPDataCollator` (and the model) zero the hidden ones. Redrawing
training masks for an epoch only replaces the mask column.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import numbers
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, List, Value, concatenate_datasets

from . import masks as _masks
from .cache import cache_key, default_cache_dir, load_cached, quiet_progress, save_cached
from .constants import AUDIO, LABELS, MODALITIES, MODALITY_MASK, TEXT, VIDEO, is_hub_id
from .errors import DatasetFormatError
from .gcnet import NAN_POLICIES, find_gcnet_corpus_dir, gcnet_fingerprint, read_gcnet, read_synthetic_marker
from .mmsa import find_mmsa_files, mmsa_fingerprint, read_mmsa, verify_mmsa_checksum
from .schema import (
    CONVERSATION_INDEX,
    CORPORA,
    DERIVED_COLUMNS,
    FEATURE_PRESENT,
    MAX_ABS_FEATURE,
    UTTERANCE_KEYS,
    CorpusSpec,
    CorpusSplit,
    build_dataset,
    first_bad_feature,
    get_spec,
    matrix_column,
    ragged_column,
)
from .synthetic import SYNTHETIC_CONFIGS, generate_synthetic_corpus


__all__ = [
    "PROVENANCE_KEY",
    "add_missing_modality",
    "apply_missing_protocol",
    "dataset_provenance",
    "load_dataset",
    "model_config_kwargs",
    "redraw_training_masks",
]

#: Key of our JSON object inside ``Dataset.info.description``.
PROVENANCE_KEY = "comp_emotion_provenance"
_NUMPY_COLUMNS = (AUDIO, TEXT, VIDEO, MODALITY_MASK, FEATURE_PRESENT)
_MASK_FEATURE = Array2D(shape=(None, 3), dtype="int8")


# --------------------------------------------------------------------------------------------- provenance


def dataset_provenance(dataset: Dataset) -> dict:
    """The provenance record of a split produced by :func:`load_dataset`.

    It names the corpus and config, the split and fold (and the validation dialogues of a fold), the missing
    protocol, requested / expected / realised missing rate, the mask seed, role and epoch, the task, label
    names, dims and ``max_utterances``, and where the data came from, so any number computed from the split
    can cite it.

    Args:
        dataset: One split.

    Returns:
        A fresh dict (modifying it does not change the dataset).

    Raises:
        ValueError: If the dataset was not produced by :func:`load_dataset`.
    """
    if isinstance(dataset, DatasetDict):
        raise TypeError("dataset_provenance takes one split, e.g. dataset_provenance(dsd['test'])")
    try:
        record = json.loads(dataset.info.description or "")[PROVENANCE_KEY]
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            "this dataset carries no comp-emotion provenance; it was not produced by hub_datasets.load_dataset "
            "(or its info.description was overwritten)"
        ) from None
    return copy.deepcopy(record)


def _set_provenance(dataset: Dataset, record: dict) -> None:
    dataset.info.description = json.dumps({PROVENANCE_KEY: record}, sort_keys=True)


def model_config_kwargs(dataset: Dataset) -> dict:
    """Keyword arguments for ``ComPConfig`` that come from the data.

    Args:
        dataset: A split produced by :func:`load_dataset`.

    Returns:
        ``audio_dim``, ``text_dim``, ``video_dim``, ``num_labels``, ``problem_type``, ``id2label``,
        ``label2id`` and ``max_utterances``.
    """
    prov = dataset_provenance(dataset)
    dims = prov["dims"]
    if prov["task"] == "classification":
        names = list(prov["label_names"])
        id2label = dict(enumerate(names))
        problem_type = "single_label_classification"
    else:
        id2label = {0: "sentiment"}
        problem_type = "regression"
    return {
        "audio_dim": int(dims[AUDIO]),
        "text_dim": int(dims[TEXT]),
        "video_dim": int(dims[VIDEO]),
        "num_labels": len(id2label),
        "problem_type": problem_type,
        "id2label": id2label,
        "label2id": {name: i for i, name in id2label.items()},
        "max_utterances": int(prov["max_utterances"]),
    }


# --------------------------------------------------------------------------------------------- masks


def _flat_column(dataset: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Flattened values and row lengths of a list column, in the dataset's logical row order."""
    table = dataset.select_columns([column]).with_format("arrow")[:]
    chunked = table.column(column)
    values = pc.list_flatten(chunked)
    lengths = pc.list_value_length(chunked).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, lengths


def _column(dataset: Dataset, column: str):
    """One column as a ``pyarrow.ChunkedArray`` in logical row order (no per-row formatting)."""
    return dataset.select_columns([column]).with_format("arrow")[:].column(column)


def _present_flat(dataset: Dataset) -> np.ndarray:
    table = dataset.select_columns([FEATURE_PRESENT]).with_format("arrow")[:]
    column = table.column(FEATURE_PRESENT)
    storage = [chunk.storage for chunk in column.chunks]
    flat = [pc.list_flatten(pc.list_flatten(s)).to_numpy(zero_copy_only=False) for s in storage]
    return np.concatenate(flat).astype(np.int8).reshape(-1, 3) if flat else np.zeros((0, 3), np.int8)


def _replace_column(dataset: Dataset, name: str, column, feature) -> Dataset:
    """Replace (or add) one column, keeping the format; the other columns' Arrow buffers are shared, not copied."""
    fmt = dataset.format
    if name in dataset.column_names:
        dataset = dataset.remove_columns([name])
    dataset = dataset.add_column(name, column, feature=feature)
    columns = fmt["columns"]
    if columns is not None and name not in columns and name in _NUMPY_COLUMNS:
        columns = [*columns, name]
    return dataset.with_format(
        type=fmt["type"], columns=columns, output_all_columns=fmt["output_all_columns"], **fmt["format_kwargs"]
    )


def _fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def apply_missing_protocol(
    dataset: Dataset | DatasetDict,
    *,
    protocol: str = "rate",
    missing_rate: float = 0.0,
    modalities: str | None = None,
    seed: int = 0,
    role: str | None = None,
    epoch: int | None = None,
    mask_absent_features: bool | None = None,
) -> Dataset | DatasetDict:
    """(Re)compute the ``modality_mask`` column of a prepared split, e.g. to evaluate another condition.

    Only the mask column changes (features are never copied), so this is cheap even for MOSEI.

    Args:
        dataset: A split (or a ``DatasetDict``) from :func:`load_dataset`.
        protocol: ``"rate"`` or ``"subset"``.
        missing_rate: ``eta`` in ``[0, 1)`` (``rate``).
        modalities: Observed set such as ``"at"`` (``subset``).
        seed: Mask seed.
        role: ``"eval"`` or ``"train"``; default: ``"train"`` for a split named ``train``, else ``"eval"``.
        epoch: Training epoch (``role="train"``); default 0 for training masks.
        mask_absent_features: Also mask utterances whose feature file was empty (``feature_present == 0``);
            default: keep what the dataset's provenance says (``False`` for a fresh load).

    Returns:
        The dataset with new masks and an updated provenance record.
    """
    if isinstance(dataset, DatasetDict):
        return DatasetDict(
            {
                name: apply_missing_protocol(
                    split,
                    protocol=protocol,
                    missing_rate=missing_rate,
                    modalities=modalities,
                    seed=seed,
                    role=role,
                    epoch=epoch,
                    mask_absent_features=mask_absent_features,
                )
                for name, split in dataset.items()
            }
        )
    protocol, missing_rate, modalities, seed = _check_protocol_args(protocol, missing_rate, modalities, seed)
    try:
        prov = dataset_provenance(dataset)
    except ValueError:
        prov = {}
    if mask_absent_features is None:
        mask_absent_features = bool(prov.get("mask_absent_features", False))
    role, epoch = _check_role(dataset, role, epoch)
    masks, lengths = _compute_dataset_masks(
        dataset, protocol, missing_rate, modalities, seed, role, epoch, bool(mask_absent_features)
    )
    result = _replace_column(dataset, MODALITY_MASK, matrix_column(masks, lengths, _MASK_FEATURE), _MASK_FEATURE)
    expected = _masks.expected_missing_rate(missing_rate) if protocol == "rate" else 1.0 - len(modalities) / 3.0
    prov.update(
        {
            "protocol": protocol,
            "missing_rate": missing_rate,
            "expected_missing_rate": expected,
            "realised_missing_rate": _masks.realised_missing_rate(masks),
            "modalities": modalities,
            "seed": seed,
            "mask_role": role,
            "epoch": epoch,
            "mask_algorithm": _masks.MASK_ALGORITHM,
            "mask_absent_features": bool(mask_absent_features),
            "observed_fraction_per_modality": {
                m: float(masks[:, i].mean()) if len(masks) else 1.0 for i, m in enumerate(MODALITIES)
            },
        }
    )
    _set_provenance(result, prov)
    return result


def _check_role(dataset: Dataset, role: str | None, epoch) -> tuple[str, int | None]:
    if role is None:
        role = "train" if str(dataset.split) == "train" else "eval"
    if role not in ("train", "eval"):
        raise ValueError(f"role must be 'train' or 'eval', got {role!r}")
    if role == "train":
        epoch = 0 if epoch is None else epoch
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        return role, int(epoch)
    if epoch is not None:
        raise ValueError("evaluation masks (role='eval') do not depend on the epoch; pass epoch=None")
    return role, None


def _compute_dataset_masks(dataset, protocol, missing_rate, modalities, seed, role, epoch, mask_absent_features):
    """Flat ``[N, 3]`` masks of every utterance (row order) and the per-row utterance counts."""
    if UTTERANCE_KEYS in dataset.column_names:
        values, lengths = _flat_column(dataset, UTTERANCE_KEYS)
        keys = values.to_numpy(zero_copy_only=False).astype(np.uint64)
    elif "utterance_ids" in dataset.column_names:
        values, lengths = _flat_column(dataset, "utterance_ids")
        keys = _masks.utterance_keys(values.to_pylist())
    else:
        raise ValueError(
            f"the dataset has neither {UTTERANCE_KEYS!r} nor 'utterance_ids' (columns: {dataset.column_names}); "
            "masks are computed from the utterance ids of a comp-emotion corpus"
        )
    masks = _masks.compute_masks(
        keys, protocol=protocol, missing_rate=missing_rate, modalities=modalities, seed=seed, role=role, epoch=epoch
    )
    if mask_absent_features:
        if FEATURE_PRESENT not in dataset.column_names:
            raise ValueError(f"mask_absent_features=True needs the {FEATURE_PRESENT!r} column, which is missing")
        masks = masks * _present_flat(dataset)
    return masks, lengths


def add_missing_modality(
    dataset: Dataset | DatasetDict,
    missing_rate: float = 0.0,
    *,
    seed: int = 0,
    protocol: str = "rate",
    modalities: str | None = None,
    role: str | None = None,
    epoch: int | None = None,
    mask_absent_features: bool = False,
) -> Dataset | DatasetDict:
    """Add the ``modality_mask`` column to a comp-emotion corpus loaded with plain :func:`datasets.load_dataset`.

    This is the datasets-native way to get the missing-modality masks: load a published repo (Hub or local
    parquet) with ``datasets`` itself and add the masks; the result holds exactly the masks that
    :func:`hub_datasets.load_dataset` gives for the same repo, protocol, rate and seed (a mask is a function of
    the seed, the role, the epoch and the utterance id only)::

        import datasets
        from hub_datasets import add_missing_modality

        dsd = datasets.load_dataset("org/comp-emotion-features", "mosi")
        dsd = add_missing_modality(dsd, missing_rate=0.5, seed=0)
        dsd["test"][0]["modality_mask"]  # [[1, 0, 1], [0, 1, 0], ...], 1 = observed (audio, text, video)

    Only the mask column is added (an existing one is replaced); features, format and description are kept.
    The ``train`` split gets the training masks of epoch 0 (redraw per epoch with ``epoch=``), every other split
    the fixed evaluation masks.

    Args:
        dataset: A ``Dataset`` or ``DatasetDict`` with an ``utterance_ids`` column (list of strings per row).
        missing_rate: ``eta`` in ``[0, 1)`` for ``protocol="rate"``.
        seed: Mask seed.
        protocol: ``"rate"`` (the paper's) or ``"subset"`` (a fixed observed set for every utterance).
        modalities: Observed set for ``protocol="subset"``, e.g. ``"at"``.
        role: ``"train"`` or ``"eval"``; default ``"train"`` for a split named ``train``, else ``"eval"``.
        epoch: Training epoch for training masks (default 0).
        mask_absent_features: Also mask utterances the corpus had no feature for (``feature_present == 0``).

    Returns:
        The same kind of object with a ``modality_mask`` column ``[num_utterances, 3]`` (int8) per row.
    """
    if isinstance(dataset, DatasetDict):
        return DatasetDict(
            {
                name: add_missing_modality(
                    split,
                    missing_rate,
                    seed=seed,
                    protocol=protocol,
                    modalities=modalities,
                    role=role,
                    epoch=epoch,
                    mask_absent_features=mask_absent_features,
                )
                for name, split in dataset.items()
            }
        )
    if not isinstance(dataset, Dataset):
        raise TypeError(f"add_missing_modality takes a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    protocol, missing_rate, modalities, seed = _check_protocol_args(protocol, missing_rate, modalities, seed)
    role, epoch = _check_role(dataset, role, epoch)
    masks, lengths = _compute_dataset_masks(
        dataset, protocol, missing_rate, modalities, seed, role, epoch, bool(mask_absent_features)
    )
    return _replace_column(dataset, MODALITY_MASK, matrix_column(masks, lengths, _MASK_FEATURE), _MASK_FEATURE)


def redraw_training_masks(dataset: Dataset, epoch: int) -> Dataset:
    """New training masks for ``epoch`` (deterministic in (seed, epoch, utterance id)); features untouched.

    The protocol, rate and seed come from the split's provenance. Call it once per epoch on the training split,
    like the released code's per-batch redraw but reproducible.

    Args:
        dataset: The training split from :func:`load_dataset`.
        epoch: Epoch number (``>= 0``; epoch 0 gives the masks the split was loaded with).

    Returns:
        The split with that epoch's masks.
    """
    if isinstance(dataset, DatasetDict):
        raise TypeError("redraw_training_masks takes the training split, e.g. redraw_training_masks(dsd['train'], 3)")
    prov = dataset_provenance(dataset)
    return apply_missing_protocol(
        dataset,
        protocol=prov["protocol"],
        missing_rate=prov["missing_rate"],
        modalities=prov["modalities"],
        seed=prov["seed"],
        role="train",
        epoch=epoch,
        mask_absent_features=prov.get("mask_absent_features", False),
    )


def _check_protocol_args(protocol, missing_rate, modalities, seed):
    protocol = _masks.validate_protocol(protocol)
    missing_rate = _masks.validate_missing_rate(missing_rate)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if protocol == "subset":
        if modalities is None:
            raise ValueError(f"protocol='subset' needs modalities=..., one of {_masks.SUBSET_CONDITIONS} (or 'atv')")
        if missing_rate != 0.0:
            raise ValueError("protocol='subset' fixes the observed modalities; leave missing_rate at 0")
        modalities = _masks.parse_modalities(modalities)
    elif modalities is not None:
        raise ValueError("modalities=... belongs to protocol='subset'; protocol='rate' draws masks per utterance")
    return protocol, missing_rate, modalities, int(seed)


# --------------------------------------------------------------------------------------------- preparation


def _with_keys(dataset: Dataset) -> Dataset:
    values, lengths = _flat_column(dataset, "utterance_ids")
    keys = _masks.utterance_keys(values.to_pylist())
    feature = List(Value("uint64"))
    return _replace_column(dataset, UTTERANCE_KEYS, ragged_column(keys, lengths, feature.feature.pa_type), feature)


def _build_natural(splits: dict[str, CorpusSplit], spec: CorpusSpec, fingerprint: str) -> dict[str, Dataset]:
    return {
        name: _with_keys(
            build_dataset(split, spec.label_names, split_name=name, fingerprint=_fingerprint(fingerprint, name))
        )
        for name, split in splits.items()
    }


def _resolve_progress(progress: bool | None) -> bool:
    import datasets

    return datasets.is_progress_bar_enabled() if progress is None else bool(progress)


def _prepare_corpus(
    spec: CorpusSpec,
    data_dir,
    *,
    source_format: str,
    mmsa_variant: str | None,
    verify_checksums: bool,
    expected_sha256: str | None,
    feature_names: dict | None,
    nan_policy: str,
    cache_dir,
    use_cache: bool,
    progress: bool,
) -> tuple[dict[str, Dataset], dict]:
    if data_dir is None:
        raise ValueError(
            f"load_dataset({spec.name!r}) needs data_dir=<folder holding {spec.label_pickle} and features/"
            f"{' or MMSA aligned_50.pkl / unaligned_50.pkl' if spec.family == 'cmu' else ''}>; these corpora "
            "cannot be downloaded by this library (IEMOCAP is licence-restricted). For a quick start use "
            "load_dataset('synthetic', ...)."
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetFormatError(f"data_dir {root} does not exist or is not a folder")
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
    use_gcnet = corpus_dir is not None and source_format != "mmsa"
    if use_gcnet:
        if verify_checksums:
            raise ValueError("verify_checksums=True applies to MMSA pickles; GCNet files have no published digests")
        marker = read_synthetic_marker(corpus_dir)
        label = f"synthetic-{spec.name}" if marker else spec.name
        key_parts = {
            "source": "gcnet",
            "corpus": spec.name,
            "files": gcnet_fingerprint(spec, corpus_dir, feature_names),
            "feature_names": feature_names or {},
            "nan_policy": nan_policy,
        }
        source_path = corpus_dir
    else:
        if mmsa_variant is None:
            if len(mmsa) > 1:
                raise ValueError(
                    f"{root} holds both aligned_50.pkl and unaligned_50.pkl; choose one with "
                    "mmsa_variant='aligned' or 'unaligned'"
                )
            mmsa_variant = next(iter(mmsa))
        if mmsa_variant not in mmsa:
            raise DatasetFormatError(f"no {mmsa_variant}_50.pkl under {root} (found {sorted(mmsa) or 'none'})")
        source_path = mmsa[mmsa_variant]
        marker = read_synthetic_marker(source_path.parent)
        label = f"synthetic-{spec.name}" if marker else spec.name
        if verify_checksums or expected_sha256:
            verify_mmsa_checksum(spec, mmsa_variant, source_path, expected_sha256)
        key_parts = {
            "source": "mmsa",
            "corpus": spec.name,
            "files": mmsa_fingerprint(source_path),
            "variant": mmsa_variant,
            "nan_policy": nan_policy,
        }
    key = cache_key(key_parts)
    root_cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cached = load_cached(root_cache, spec.name, key) if use_cache else None
    if cached is not None:
        natural, manifest = cached
        meta = manifest["meta"]
        meta["cache"] = {"hit": True, "path": str(root_cache / f"{spec.name}-{key}")}
        return natural, meta
    if use_gcnet:
        flat, info = read_gcnet(
            spec,
            corpus_dir,
            feature_names=feature_names,
            nan_policy=nan_policy,
            corpus_label=label,
            progress=progress,
        )
        source = "gcnet"
    else:
        flat, info = read_mmsa(spec, source_path, nan_policy=nan_policy, corpus_label=label)
        source = "mmsa"
    natural = _build_natural(flat, spec, key)
    meta = {
        "corpus": spec.name,
        "corpus_label": label,
        "synthetic": bool(marker),
        "synthetic_params": marker,
        "source": source,
        "source_path": str(source_path),
        "nan_policy": nan_policy,
        "fingerprint": key,
        **info,
    }
    if use_cache:
        natural = save_cached(root_cache, spec.name, key, natural, {"meta": meta})
        meta["cache"] = {"hit": False, "path": str(root_cache / f"{spec.name}-{key}")}
    else:
        meta["cache"] = None
    return natural, meta


def _prepare_synthetic(config: str, kwargs: dict) -> tuple[dict[str, Dataset], dict]:
    corpus = generate_synthetic_corpus(config, **kwargs)
    fingerprint = cache_key({"synthetic": corpus.params})
    natural = _build_natural(corpus.splits, corpus.spec, fingerprint)
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


def _prepare_parquet(path: str, config: str | None, revision, token) -> tuple[dict[str, Dataset], dict, CorpusSpec]:
    import datasets

    local = Path(path).expanduser()
    target = str(local) if local.is_dir() else path
    try:
        if local.is_dir():
            # A local folder is resolved to its data files first: ``datasets`` keys the cache of a folder loaded by
            # name on its README alone, so a rewritten file would be served from a stale cache; the ``parquet``
            # builder keys it on the files' paths and modification times.
            builder = datasets.load_dataset_builder(target, config)
            loaded = datasets.load_dataset(
                "parquet", data_files=dict(builder.config.data_files), features=builder.info.features
            )
        else:
            loaded = datasets.load_dataset(target, config, revision=revision, token=token)
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"could not load parquet dataset {path!r} config {config!r}: {exc}") from None
    if not isinstance(loaded, DatasetDict) or not len(loaded):
        raise DatasetFormatError(f"{path!r} config {config!r} holds no splits")
    first = next(iter(loaded.values()))
    required = {"dialog_id", "utterance_ids", LABELS, AUDIO, TEXT, VIDEO, "corpus"}
    missing = required - set(first.column_names)
    if missing:
        raise DatasetFormatError(
            f"{path!r} config {config!r} lacks the comp-emotion columns {sorted(missing)}; publish it with "
            "hub_datasets.write_parquet_repo"
        )
    label = first[0]["corpus"] if len(first) else (config or "")
    name = label.removeprefix("synthetic-")
    spec = get_spec(name)
    natural = {}
    for split_name, split in loaded.items():
        drop = [c for c in DERIVED_COLUMNS if c in split.column_names]
        if drop:
            split = split.remove_columns(drop)
        _validate_rows(split, f"{path!r} config {config!r} split {split_name!r}", spec)
        natural[split_name] = _with_keys(split)
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
        "fingerprint": _fingerprint("parquet", path, config, revision),
        "feature_names": None,
        "dims": dims,
        "nonfinite_values_replaced": None,
        "cache": None,
    }
    return natural, meta, spec


def _validate_rows(dataset: Dataset, where: str, spec: CorpusSpec) -> None:
    """Check a parquet split where it enters: per-row lengths agree, labels are valid, features are finite.

    Each problem raises a one-line :class:`DatasetFormatError` naming the split, the conversation (row and
    ``dialog_id``), the utterance and, for features, the feature index.
    """
    dialog_ids = _column(dataset, "dialog_id")

    def at(row: int) -> str:
        return f"{where} row {row} (dialog_id {dialog_ids[row].as_py()!r})"

    def storage(column: str):
        chunked = _column(dataset, column)
        chunks = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in chunked.chunks]
        return pa.chunked_array(chunks) if chunks else pa.chunked_array([], type=chunked.type.storage_type)

    reference = pc.list_value_length(_column(dataset, "utterance_ids")).to_numpy(zero_copy_only=False)
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
        counts = _column(dataset, "num_utterances").to_numpy(zero_copy_only=False)
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


# --------------------------------------------------------------------------------------------- splits


def _validation_dialogs(train_parts: dict[int, list[str]], fraction: float, seed: int) -> list[str]:
    """A seeded, order-independent choice of ``round(fraction * n)`` dialogues per training session."""
    chosen = []
    for session in sorted(train_parts):
        ids = train_parts[session]
        if len(ids) < 2:
            continue
        count = min(max(1, int(round(fraction * len(ids)))), len(ids) - 1)
        ranked = sorted(ids, key=lambda d: hashlib.blake2b(f"{seed}|{d}".encode(), digest_size=8).digest())
        chosen.extend(ranked[:count])
    return sorted(chosen)


def _named(dataset: Dataset, split_name: str, fingerprint: str) -> Dataset:
    """The same Arrow data under another split name (``Dataset.split`` is read-only)."""
    return Dataset(dataset.data, info=dataset.info.copy(), split=split_name, fingerprint=fingerprint)


def _take(dataset: Dataset, indices: list[int], split_name: str, fingerprint: str) -> Dataset:
    """Rows ``indices`` materialised in memory (no indices mapping, so later column swaps stay cheap)."""
    with quiet_progress():
        flat = dataset.select(indices).flatten_indices(keep_in_memory=True)
    return _named(flat, split_name, fingerprint)


def _fold_splits(
    natural: dict[str, Dataset], fold: int, fraction: float, seed: int, fingerprint: str
) -> tuple[dict, list[str]]:
    sessions = [f"session{s}" for s in range(1, 6)]
    missing = [s for s in sessions if s not in natural]
    if missing:
        raise DatasetFormatError(f"cannot build fold {fold}: the corpus has no {missing}")
    test_name = f"session{fold}"
    train_pool = concatenate_datasets([natural[s] for s in sessions if s != test_name])
    dialogs = train_pool.select_columns(["dialog_id", "session"]).with_format(None)[:]
    by_session: dict[int, list[str]] = {}
    for dialog, session in zip(dialogs["dialog_id"], dialogs["session"], strict=True):
        by_session.setdefault(int(session), []).append(dialog)
    validation = set(_validation_dialogs(by_session, fraction, seed))
    val_idx = [i for i, d in enumerate(dialogs["dialog_id"]) if d in validation]
    train_idx = [i for i, d in enumerate(dialogs["dialog_id"]) if d not in validation]
    tag = _fingerprint(fingerprint, fold, fraction, seed)
    out = {
        "train": _take(train_pool, train_idx, "train", _fingerprint(tag, "train")),
        "validation": _take(train_pool, val_idx, "validation", _fingerprint(tag, "validation")),
        "test": _named(natural[test_name], "test", _fingerprint(tag, "test")),
    }
    return out, sorted(validation)


def _finish_split(dataset: Dataset, name: str, record: dict) -> Dataset:
    """Add ``conversation_index``, set the numpy format and the provenance (masks are applied afterwards)."""
    if CONVERSATION_INDEX in dataset.column_names:
        dataset = dataset.remove_columns([CONVERSATION_INDEX])
    index = np.arange(len(dataset), dtype=np.int64)
    dataset = dataset.add_column(CONVERSATION_INDEX, index, feature=Value("int64"))
    dataset = dataset.with_format(
        "numpy", columns=[c for c in _NUMPY_COLUMNS if c in dataset.column_names], output_all_columns=True
    )
    _set_provenance(dataset, record)
    return dataset


# --------------------------------------------------------------------------------------------- entry point


def load_dataset(
    path: str,
    config: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    missing_rate: float = 0.0,
    protocol: str = "rate",
    modalities: str | None = None,
    seed: int = 0,
    split: str | None = None,
    fold: int | None = None,
    validation_fraction: float = 0.1,
    validation_seed: int | None = None,
    mask_absent_features: bool = False,
    feature_names: dict[str, str] | None = None,
    source_format: str = "auto",
    mmsa_variant: str | None = None,
    verify_checksums: bool = False,
    expected_sha256: str | None = None,
    nan_policy: str = "error",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    **synthetic_kwargs,
) -> DatasetDict | Dataset:
    """Load a corpus as conversations with missing-modality masks.

    Examples::

        load_dataset("iemocap4", data_dir="~/data/IEMOCAP")                 # DatasetDict session1..session5
        load_dataset("iemocap4", data_dir="~/data/IEMOCAP", fold=1)         # train / validation / test(session1)
        load_dataset("mosi", data_dir="~/data/MMSA/MOSI", missing_rate=0.7) # GCNet or MMSA files, detected
        load_dataset("org/comp-emotion-features", "mosei")                  # parquet repo (Hub or local folder)
        load_dataset("synthetic", "iemocap4", missing_rate=0.5, seed=0)     # built-in, no files needed

    Args:
        path: ``"iemocap4"``, ``"iemocap6"``, ``"mosi"``, ``"mosei"`` (raw files under ``data_dir``),
            ``"synthetic"``, a Hub dataset id ``"<user>/<repo>"`` or a local parquet folder.
        config: The synthetic config (``"iemocap4"`` default, ``"iemocap6"``, ``"mosi"``, ``"mosei"``) or the
            parquet repo's config; must be ``None`` (or equal ``path``) for the raw corpora.
        data_dir: Folder holding the label pickle and ``features/`` (or ``<root>`` with ``IEMOCAP/`` etc.), or
            the MMSA ``Processed`` folder.
        missing_rate: ``eta`` in ``[0, 1)`` for ``protocol="rate"`` (0.7 really gives 2/3, see provenance).
        protocol: ``"rate"`` (the paper's) or ``"subset"`` (fixed observed modalities).
        modalities: Observed set for ``protocol="subset"``, e.g. ``"at"``.
        seed: Mask seed (masks are functions of seed, split role, utterance id and, for training, the epoch).
        split: Return only this split as a :class:`~datasets.Dataset`.
        fold: IEMOCAP leave-one-session-out fold ``1..5`` (test = that session). Real IEMOCAP defaults to the
            five sessions; the synthetic IEMOCAP-like corpus defaults to fold 5.
        validation_fraction: Fraction of each training session's dialogues held out as validation (folds).
        validation_seed: Seed of that choice (default: ``seed``).
        mask_absent_features: Also mask utterances whose feature was empty in the corpus (no face found).
        feature_names: Feature folder names, e.g. ``{"video": "openface_UTT"}`` (GCNet format).
        source_format: ``"auto"``, ``"gcnet"`` or ``"mmsa"`` (MOSI/MOSEI).
        mmsa_variant: ``"aligned"`` or ``"unaligned"`` when both MMSA files are present.
        verify_checksums: Check the MMSA pickle against MMSA's published SHA-256.
        expected_sha256: Check the MMSA pickle against this digest instead.
        nan_policy: ``"error"`` (default: name the file) or ``"zero"`` (replace NaN/Inf by 0, counted).
        cache_dir: Arrow cache root (default ``$COMP_EMOTION_CACHE`` or ``<HF datasets cache>/comp_emotion``).
        use_cache: Reuse / write the Arrow cache of raw corpora.
        progress: Show progress bars (default: ``datasets``' setting).
        revision: Hub revision (parquet repos).
        token: Hub token (parquet repos).
        **synthetic_kwargs: Generator arguments for ``"synthetic"`` (``num_conversations``, ``min_utterances``,
            ``max_utterances``, ``dims``, ``signal``, ``label_persistence``, ``missing_face_fraction``); the
            generator seed is ``synthetic_seed`` (default 0, independent of the mask ``seed``).

    Returns:
        A :class:`~datasets.DatasetDict` (or one split). Splits are formatted as numpy for the array columns.
    """
    protocol, missing_rate, modalities, seed = _check_protocol_args(protocol, missing_rate, modalities, seed)
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if (
        isinstance(validation_fraction, (bool, np.bool_))
        or not isinstance(validation_fraction, numbers.Real)
        or not 0.0 < float(validation_fraction) < 1.0
    ):
        raise ValueError(f"validation_fraction must be a number in (0, 1), got {validation_fraction!r}")
    if fold is not None and (
        isinstance(fold, (bool, np.bool_)) or not isinstance(fold, (int, np.integer)) or fold not in (1, 2, 3, 4, 5)
    ):
        raise ValueError(f"fold must be 1..5 (an integer: the IEMOCAP session used as test set), got {fold!r}")
    if fold is not None:
        fold = int(fold)
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(
            f"data_dir must be a folder path (str or os.PathLike), got {type(data_dir).__name__} {data_dir!r}"
        )
    if validation_seed is not None and (
        isinstance(validation_seed, (bool, np.bool_)) or not isinstance(validation_seed, (int, np.integer))
    ):
        raise ValueError(f"validation_seed must be an integer, got {validation_seed!r}")
    if not isinstance(path, str) or not path:
        raise ValueError(f"path must be a corpus name, 'synthetic', a Hub id or a folder, got {path!r}")
    if synthetic_kwargs and path != "synthetic":
        raise TypeError(f"load_dataset() got unexpected keyword arguments {sorted(synthetic_kwargs)}")
    if path in CORPORA:
        if config not in (None, path):
            raise ValueError(f"load_dataset({path!r}) takes no config (got {config!r}); the corpus name is the config")
        spec = get_spec(path)
        natural, meta = _prepare_corpus(
            spec,
            data_dir,
            source_format=source_format,
            mmsa_variant=mmsa_variant,
            verify_checksums=verify_checksums,
            expected_sha256=expected_sha256,
            feature_names=feature_names,
            nan_policy=nan_policy,
            cache_dir=cache_dir,
            use_cache=use_cache,
            progress=_resolve_progress(progress),
        )
        default_fold = None
    elif path == "synthetic":
        config = config or "iemocap4"
        if config not in SYNTHETIC_CONFIGS:
            raise ValueError(f"unknown synthetic config {config!r}; expected one of {SYNTHETIC_CONFIGS}")
        generator_kwargs = dict(synthetic_kwargs)  # ``seed`` is the mask seed; the generator's is synthetic_seed
        generator_kwargs["seed"] = generator_kwargs.pop("synthetic_seed", 0)
        natural, meta = _prepare_synthetic(config, generator_kwargs)
        spec = get_spec(config)
        default_fold = 5
    elif Path(path).expanduser().is_dir() or is_hub_id(path):
        natural, meta, spec = _prepare_parquet(path, config, revision, token)
        default_fold = None
    else:
        raise ValueError(
            f"unknown dataset {path!r}: expected one of {sorted(CORPORA)} (with data_dir=...), 'synthetic', a Hub "
            "dataset id '<user>/<repo>' or a local parquet folder"
        )
    if spec.family != "iemocap" and fold is not None:
        raise ValueError(f"{spec.name} has fixed train/validation/test splits; fold= applies to IEMOCAP only")
    fold = fold if fold is not None else default_fold
    validation_seed = seed if validation_seed is None else int(validation_seed)
    validation_dialogs = None
    if spec.family == "iemocap" and fold is not None:
        splits, validation_dialogs = _fold_splits(
            natural, fold, float(validation_fraction), validation_seed, meta["fingerprint"]
        )
    else:
        splits = dict(natural)
    longest = max((pc.max(_column(ds, "num_utterances")).as_py() or 0) for ds in natural.values())
    max_utterances = longest if meta["synthetic"] else max(spec.max_utterances, longest)
    base = {
        "library": "comp-emotion hub_datasets",
        "corpus": spec.name,
        "corpus_label": meta["corpus_label"],
        "display_name": ("synthetic " if meta["synthetic"] else "") + spec.display_name,
        "config": config if path == "synthetic" or path not in CORPORA else spec.name,
        "path": path,
        "synthetic": meta["synthetic"],
        "synthetic_params": meta["synthetic_params"],
        "source": meta["source"],
        "source_path": meta["source_path"],
        "fingerprint": meta["fingerprint"],
        "feature_names": meta.get("feature_names"),
        "nan_policy": meta.get("nan_policy"),
        "nonfinite_values_replaced": meta.get("nonfinite_values_replaced"),
        "audio_neg_inf_replaced": meta.get("audio_neg_inf_replaced"),
        "family": spec.family,
        "task": spec.task,
        "label_names": list(spec.label_names) if spec.label_names else None,
        "num_labels": len(spec.label_names) if spec.label_names else 1,
        "dims": {m: int(meta["dims"][m]) for m in MODALITIES},
        "max_utterances": int(max_utterances),
        "fold": fold if spec.family == "iemocap" else None,
        "validation_fraction": float(validation_fraction) if validation_dialogs is not None else None,
        "validation_seed": validation_seed if validation_dialogs is not None else None,
        "validation_dialogs": validation_dialogs,
        "cache": meta.get("cache"),
    }
    out = {}
    for name, dataset in splits.items():
        record = {
            **base,
            "split": name,
            "source_splits": sorted(pc.unique(_column(dataset, "source_split")).to_pylist()),
            "num_conversations": len(dataset),
            "num_utterances": int(pc.sum(_column(dataset, "num_utterances")).as_py() or 0),
        }
        dataset = _finish_split(dataset, name, record)
        out[name] = apply_missing_protocol(
            dataset,
            protocol=protocol,
            missing_rate=missing_rate,
            modalities=modalities,
            seed=seed,
            role="train" if name == "train" else "eval",
            epoch=0 if name == "train" else None,
            mask_absent_features=mask_absent_features,
        )
    result = DatasetDict(out)
    if split is not None:
        if split not in result:
            raise ValueError(f"unknown split {split!r} for {path!r}; available: {list(result)}")
        return result[split]
    return result
