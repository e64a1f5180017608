"""The provenance record every split produced by :func:`hub_datasets.load_dataset` carries.

It is stored as JSON under :data:`PROVENANCE_KEY` in ``Dataset.info.description`` and names the corpus, split,
fold, missing protocol and rates, seeds, dims and sources, so any number computed from the split can cite it.
"""

from __future__ import annotations

import copy
import json

from datasets import Dataset, DatasetDict

from .constants import AUDIO, TEXT, VIDEO


__all__ = ["PROVENANCE_KEY", "dataset_provenance", "model_config_kwargs", "set_provenance"]

#: Key of our JSON object inside ``Dataset.info.description``.
PROVENANCE_KEY = "comp_emotion_provenance"


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


def set_provenance(dataset: Dataset, record: dict) -> None:
    """Store ``record`` as the split's provenance (replacing ``info.description``)."""
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
