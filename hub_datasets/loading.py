"""``load_dataset``: the four corpora, the synthetic corpus and parquet repos, with missing-modality masks.

The look and feel is that of :func:`datasets.load_dataset` (a :class:`~datasets.DatasetDict`, or one
:class:`~datasets.Dataset` with ``split=``); it is built only on public ``datasets`` APIs (Arrow tables,
``save_to_disk``/``load_from_disk``, parquet repos through :func:`datasets.load_dataset`).

Rows are conversations. The features stay as read from the corpus; ``modality_mask`` says which ones the
protocol hides, and :class:`~hub_datasets.ComPDataCollator` (and the model) zero the hidden ones. Redrawing
training masks for an epoch only replaces the mask column.

A load runs four steps, each in its own place: check the arguments (:func:`_check_load_args`), prepare the
source into natural splits (:func:`hub_datasets.sources.prepare_source`), derive the requested splits (IEMOCAP
folds, :func:`_make_splits`), then record the provenance and add the masks (:func:`_finish`).
"""

from __future__ import annotations

import hashlib
import numbers
import os

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Value, concatenate_datasets

from .cache import quiet_progress
from .columns import NUMPY_COLUMNS, arrow_column, content_fingerprint
from .constants import MODALITIES
from .errors import DatasetFormatError
from .gcnet import NAN_POLICIES
from .missing import add_missing_modality, apply_missing_protocol, check_protocol_args, redraw_training_masks
from .provenance import PROVENANCE_KEY, dataset_provenance, model_config_kwargs, set_provenance
from .schema import CONVERSATION_INDEX
from .sources import Prepared, RawOptions, prepare_source


__all__ = [
    "PROVENANCE_KEY",
    "add_missing_modality",
    "apply_missing_protocol",
    "dataset_provenance",
    "load_dataset",
    "model_config_kwargs",
    "redraw_training_masks",
]


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
    tag = content_fingerprint(fingerprint, fold, fraction, seed)
    out = {
        "train": _take(train_pool, train_idx, "train", content_fingerprint(tag, "train")),
        "validation": _take(train_pool, val_idx, "validation", content_fingerprint(tag, "validation")),
        "test": _named(natural[test_name], "test", content_fingerprint(tag, "test")),
    }
    return out, sorted(validation)


def _finish_split(dataset: Dataset, name: str, record: dict) -> Dataset:
    """Add ``conversation_index``, set the numpy format and the provenance (masks are applied afterwards)."""
    if CONVERSATION_INDEX in dataset.column_names:
        dataset = dataset.remove_columns([CONVERSATION_INDEX])
    index = np.arange(len(dataset), dtype=np.int64)
    dataset = dataset.add_column(CONVERSATION_INDEX, index, feature=Value("int64"))
    dataset = dataset.with_format(
        "numpy", columns=[c for c in NUMPY_COLUMNS if c in dataset.column_names], output_all_columns=True
    )
    set_provenance(dataset, record)
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
    protocol, missing_rate, modalities, seed = check_protocol_args(protocol, missing_rate, modalities, seed)
    fold, validation_fraction, validation_seed = _check_load_args(
        path, data_dir, nan_policy, fold, validation_fraction, validation_seed, seed, synthetic_kwargs
    )
    raw = RawOptions(
        data_dir=data_dir,
        source_format=source_format,
        mmsa_variant=mmsa_variant,
        verify_checksums=verify_checksums,
        expected_sha256=expected_sha256,
        feature_names=feature_names,
        nan_policy=nan_policy,
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
    )
    prepared = prepare_source(path, config, raw, synthetic_kwargs=synthetic_kwargs, revision=revision, token=token)
    if prepared.spec.family != "iemocap" and fold is not None:
        raise ValueError(f"{prepared.spec.name} has fixed train/validation/test splits; fold= applies to IEMOCAP only")
    fold = fold if fold is not None else prepared.default_fold
    splits, validation_dialogs = _make_splits(prepared, fold, validation_fraction, validation_seed)
    base = _base_record(prepared, path, fold, validation_fraction, validation_seed, validation_dialogs)
    result = DatasetDict(
        {
            name: _finish(
                dataset,
                name,
                base,
                protocol=protocol,
                missing_rate=missing_rate,
                modalities=modalities,
                seed=seed,
                mask_absent_features=mask_absent_features,
            )
            for name, dataset in splits.items()
        }
    )
    if split is not None:
        if split not in result:
            raise ValueError(f"unknown split {split!r} for {path!r}; available: {list(result)}")
        return result[split]
    return result


def _check_load_args(path, data_dir, nan_policy, fold, validation_fraction, validation_seed, seed, synthetic_kwargs):
    """One-line errors for malformed arguments; returns ``(fold, validation_fraction, validation_seed)`` normalised."""
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
    return (
        None if fold is None else int(fold),
        float(validation_fraction),
        seed if validation_seed is None else int(validation_seed),
    )


def _make_splits(
    prepared: Prepared, fold: int | None, fraction: float, validation_seed: int
) -> tuple[dict[str, Dataset], list[str] | None]:
    """The returned splits: an IEMOCAP fold's train/validation/test, or the natural splits as they are."""
    if prepared.spec.family == "iemocap" and fold is not None:
        return _fold_splits(prepared.natural, fold, fraction, validation_seed, prepared.meta["fingerprint"])
    return dict(prepared.natural), None


def _base_record(prepared: Prepared, path: str, fold, fraction, validation_seed, validation_dialogs) -> dict:
    """The provenance fields shared by every split of one load."""
    spec, meta = prepared.spec, prepared.meta
    longest = max((pc.max(arrow_column(ds, "num_utterances")).as_py() or 0) for ds in prepared.natural.values())
    max_utterances = longest if meta["synthetic"] else max(spec.max_utterances, longest)
    folded = validation_dialogs is not None
    return {
        "library": "comp-emotion hub_datasets",
        "corpus": spec.name,
        "corpus_label": meta["corpus_label"],
        "display_name": ("synthetic " if meta["synthetic"] else "") + spec.display_name,
        "config": prepared.config,
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
        "validation_fraction": fraction if folded else None,
        "validation_seed": validation_seed if folded else None,
        "validation_dialogs": validation_dialogs,
        "cache": meta.get("cache"),
    }


def _finish(dataset: Dataset, name: str, base: dict, **mask_args) -> Dataset:
    """Provenance, ``conversation_index``, numpy format, then the masks (training masks of epoch 0 on ``train``)."""
    record = {
        **base,
        "split": name,
        "source_splits": sorted(pc.unique(arrow_column(dataset, "source_split")).to_pylist()),
        "num_conversations": len(dataset),
        "num_utterances": int(pc.sum(arrow_column(dataset, "num_utterances")).as_py() or 0),
    }
    dataset = _finish_split(dataset, name, record)
    role = "train" if name == "train" else "eval"
    return apply_missing_protocol(dataset, role=role, epoch=0 if role == "train" else None, **mask_args)
