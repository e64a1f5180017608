"""comp-emotion data: the IEMOCAP / CMU-MOSI / CMU-MOSEI readers (GCNet and MMSA formats, parquet repos), the
missing-modality protocols, the built-in synthetic corpus, the batch collator and the Hub publishing helper.

Quick start (no data needed; the corpus is synthetic)::

    from hub_datasets import load_dataset, ComPDataCollator, model_config_kwargs
    dsd = load_dataset("synthetic", "iemocap4", missing_rate=0.5, seed=0)
    collate = ComPDataCollator(max_utterances=model_config_kwargs(dsd["train"])["max_utterances"])
    batch = collate([dsd["train"][i] for i in range(4)])

The collator needs torch and is imported on first use, so the data side (loaders, masks, publishing) works in an
environment without torch or transformers.
"""

from .constants import (
    ATTENTION_MASK,
    AUDIO,
    CMU_CORPORA,
    CORPUS_NAMES,
    DATASET_NAMES,
    IEMOCAP_CORPORA,
    LABELS,
    MODALITIES,
    MODALITY_MASK,
    SYNTHETIC,
    TEXT,
    VIDEO,
    is_hub_id,
)
from .errors import ChecksumMismatchError, DatasetFormatError, IemocapUploadRefusedError, UnsafePickleError
from .loading import (
    add_missing_modality,
    apply_missing_protocol,
    dataset_provenance,
    load_dataset,
    model_config_kwargs,
    redraw_training_masks,
)
from .masks import SUBSET_CONDITIONS, expected_missing_rate
from .missing import MissingModalityTransform
from .publish import publish_to_hub, render_dataset_card, write_parquet_repo
from .safe_pickle import safe_load_pickle
from .schema import CORPORA, IEMOCAP4_LABELS, IEMOCAP6_LABELS
from .synthetic import SYNTHETIC_CONFIGS, generate_synthetic_corpus, write_synthetic_corpus


__all__ = [
    "ATTENTION_MASK",
    "AUDIO",
    "CMU_CORPORA",
    "CORPORA",
    "CORPUS_NAMES",
    "DATASET_NAMES",
    "IEMOCAP4_LABELS",
    "IEMOCAP6_LABELS",
    "IEMOCAP_CORPORA",
    "LABELS",
    "MODALITIES",
    "MODALITY_MASK",
    "SUBSET_CONDITIONS",
    "SYNTHETIC",
    "SYNTHETIC_CONFIGS",
    "TEXT",
    "VIDEO",
    "ChecksumMismatchError",
    "ComPDataCollator",
    "DatasetFormatError",
    "IemocapUploadRefusedError",
    "MissingModalityTransform",
    "UnsafePickleError",
    "add_missing_modality",
    "apply_missing_protocol",
    "dataset_provenance",
    "expected_missing_rate",
    "generate_synthetic_corpus",
    "is_hub_id",
    "load_dataset",
    "model_config_kwargs",
    "publish_to_hub",
    "redraw_training_masks",
    "render_dataset_card",
    "safe_load_pickle",
    "write_parquet_repo",
    "write_synthetic_corpus",
]


def __getattr__(name: str):
    if name == "ComPDataCollator":  # needs torch: imported on first use only
        from .collator import ComPDataCollator

        return ComPDataCollator
    raise AttributeError(f"module 'hub_datasets' has no attribute {name!r}")
