"""Missing-modality masks on datasets: :func:`add_missing_modality` (plain ``datasets`` objects, streaming ones
included), :class:`MissingModalityTransform` (the same masks as a batch function for ``.map(batched=True)`` and
``with_transform``), :func:`apply_missing_protocol` and :func:`redraw_training_masks` (splits from
:func:`hub_datasets.load_dataset`).

Only the ``modality_mask`` column changes; features are never copied. The masks themselves are computed by
:mod:`hub_datasets.masks` from the utterance ids, so the same utterance gets the same mask whichever way the
data was loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import Array2D, Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict

from . import masks as _masks
from .columns import flat_column, present_flat, replace_column
from .constants import MODALITIES, MODALITY_MASK
from .provenance import dataset_provenance, set_provenance
from .schema import FEATURE_PRESENT, UTTERANCE_KEYS, matrix_column


__all__ = [
    "MissingModalityTransform",
    "add_missing_modality",
    "apply_missing_protocol",
    "check_protocol_args",
    "redraw_training_masks",
]

_MASK_FEATURE = Array2D(shape=(None, 3), dtype="int8")


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
    protocol, missing_rate, modalities, seed = check_protocol_args(protocol, missing_rate, modalities, seed)
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
    result = replace_column(dataset, MODALITY_MASK, matrix_column(masks, lengths, _MASK_FEATURE), _MASK_FEATURE)
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
    set_provenance(result, prov)
    return result


def _check_role(dataset: Any, role: str | None, epoch) -> tuple[str, int | None]:
    if role is None:
        role = "train" if str(getattr(dataset, "split", None)) == "train" else "eval"
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
        values, lengths = flat_column(dataset, UTTERANCE_KEYS)
        keys = values.to_numpy(zero_copy_only=False).astype(np.uint64)
    elif "utterance_ids" in dataset.column_names:
        values, lengths = flat_column(dataset, "utterance_ids")
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
        masks = masks * present_flat(dataset)
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
    the fixed evaluation masks. A streaming ``IterableDataset`` (``datasets.load_dataset(..., streaming=True)``)
    gets the same masks, computed batch by batch as its rows are read (see :class:`MissingModalityTransform`).

    ``datasets.load_dataset`` itself has no ``missing_rate`` option (passing one fails with a ``ParquetConfig``
    error): load without it, then call this, or use :func:`hub_datasets.load_dataset`, which accepts it.

    Args:
        dataset: A ``Dataset``, ``DatasetDict``, ``IterableDataset`` or ``IterableDatasetDict`` with an
            ``utterance_ids`` column (list of strings per row).
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
    if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
        return type(dataset)(
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
    if isinstance(dataset, IterableDataset):
        role, epoch = _check_role(dataset, role, epoch)
        transform = MissingModalityTransform(
            missing_rate,
            role=role,
            seed=seed,
            protocol=protocol,
            modalities=modalities,
            epoch=epoch,
            mask_absent_features=mask_absent_features,
        )
        features = None
        if dataset.features is not None:
            features = Features({**dataset.features, MODALITY_MASK: _MASK_FEATURE})
        return dataset.map(transform, batched=True, features=features)
    if not isinstance(dataset, Dataset):
        raise TypeError(
            "add_missing_modality takes a datasets.Dataset, DatasetDict, IterableDataset or IterableDatasetDict, "
            f"got {type(dataset).__name__}"
        )
    protocol, missing_rate, modalities, seed = check_protocol_args(protocol, missing_rate, modalities, seed)
    role, epoch = _check_role(dataset, role, epoch)
    masks, lengths = _compute_dataset_masks(
        dataset, protocol, missing_rate, modalities, seed, role, epoch, bool(mask_absent_features)
    )
    return replace_column(dataset, MODALITY_MASK, matrix_column(masks, lengths, _MASK_FEATURE), _MASK_FEATURE)


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


def check_protocol_args(protocol, missing_rate, modalities, seed):
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


class MissingModalityTransform:
    """The masks of :func:`add_missing_modality` as a batch function, for ``.map(batched=True)``,
    ``with_transform`` / ``set_transform`` and streaming datasets.

    A mask depends only on (seed, role, epoch, utterance id), so computing it batch by batch gives exactly the
    masks of the whole-dataset form::

        from hub_datasets import MissingModalityTransform

        masks = MissingModalityTransform(0.5, role="eval", seed=0)
        test = dsd["test"].map(masks, batched=True)           # a stored column
        test = dsd["test"].with_transform(masks)              # computed on access, nothing stored
        train = dsd["train"].map(MissingModalityTransform(0.5, role="train", epoch=3), batched=True)

    Unlike :func:`add_missing_modality` it cannot see the split's name, so ``role`` is required: ``"train"``
    for training masks (of ``epoch``), ``"eval"`` for the fixed evaluation masks.

    Args:
        missing_rate: ``eta`` in ``[0, 1)`` for ``protocol="rate"``.
        role: ``"train"`` or ``"eval"``.
        seed: Mask seed.
        protocol: ``"rate"`` or ``"subset"``.
        modalities: Observed set for ``protocol="subset"``, e.g. ``"at"``.
        epoch: Training epoch (``role="train"``; default 0).
        mask_absent_features: Also mask utterances the corpus had no feature for (needs ``feature_present``).

    Calling it on a batch (a dict of columns, one list entry per row, as ``datasets`` passes) returns the batch
    with a ``modality_mask`` entry: one ``[num_utterances, 3]`` int8 array per row (a single row, whose
    ``utterance_ids`` is a list of strings, gets one array).
    """

    def __init__(
        self,
        missing_rate: float = 0.0,
        *,
        role: str,
        seed: int = 0,
        protocol: str = "rate",
        modalities: str | None = None,
        epoch: int | None = None,
        mask_absent_features: bool = False,
    ) -> None:
        self.protocol, self.missing_rate, self.modalities, self.seed = check_protocol_args(
            protocol, missing_rate, modalities, seed
        )
        self.role, self.epoch = _check_role(None, role, epoch)
        if not isinstance(mask_absent_features, (bool, np.bool_)):
            raise ValueError(f"mask_absent_features must be True or False, got {mask_absent_features!r}")
        self.mask_absent_features = bool(mask_absent_features)

    def __repr__(self) -> str:
        return (
            f"MissingModalityTransform(missing_rate={self.missing_rate}, role={self.role!r}, seed={self.seed}, "
            f"protocol={self.protocol!r}, modalities={self.modalities!r}, epoch={self.epoch}, "
            f"mask_absent_features={self.mask_absent_features})"
        )

    def __call__(self, batch: dict) -> dict:
        if "utterance_ids" not in batch:
            raise ValueError(
                f"the batch has no 'utterance_ids' column (columns: {sorted(batch)}); masks are computed from the "
                "utterance ids of a comp-emotion corpus"
            )
        ids = batch["utterance_ids"]
        single = len(ids) > 0 and isinstance(ids[0], str)
        rows = [list(ids)] if single else [list(row) for row in ids]
        lengths = [len(row) for row in rows]
        flat = [uid for row in rows for uid in row]
        bad = next((uid for uid in flat if not isinstance(uid, str)), None)
        if bad is not None:
            raise ValueError(f"utterance_ids must hold strings, found {type(bad).__name__} {bad!r:.60}")
        masks = _masks.compute_masks(
            _masks.utterance_keys(flat),
            protocol=self.protocol,
            missing_rate=self.missing_rate,
            modalities=self.modalities,
            seed=self.seed,
            role=self.role,
            epoch=self.epoch,
        )
        if self.mask_absent_features:
            if FEATURE_PRESENT not in batch:
                raise ValueError(f"mask_absent_features=True needs the {FEATURE_PRESENT!r} column, which is missing")
            present = [batch[FEATURE_PRESENT]] if single else list(batch[FEATURE_PRESENT])
            parts = [np.asarray(p, dtype=np.int8).reshape(-1, 3) for p in present]
            stacked = np.concatenate(parts) if parts else np.zeros((0, 3), np.int8)
            if stacked.shape[0] != masks.shape[0]:
                raise ValueError(f"{FEATURE_PRESENT} has {stacked.shape[0]} rows, utterance_ids {masks.shape[0]}")
            masks = masks * stacked
        pieces = np.split(masks.astype(np.int8), np.cumsum(lengths)[:-1]) if rows else []
        out = dict(batch)
        out[MODALITY_MASK] = pieces[0] if single else pieces
        return out
