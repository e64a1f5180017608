"""Names shared by the data side: batch keys, modality names, corpus names and the Hub-id check.

This module imports nothing beyond the standard library, so the mask code (:mod:`hub_datasets.masks`) can be
used without torch or transformers. ``modeling_comp.configuration_comp`` keeps its own copy of the batch keys,
because a checkpoint's remote code must run without this package; a test checks that the two copies agree.
"""

from __future__ import annotations

import re


__all__ = [
    "ATTENTION_MASK",
    "AUDIO",
    "CMU_CORPORA",
    "CORPUS_NAMES",
    "DATASET_NAMES",
    "HUB_ID_PATTERN",
    "IEMOCAP_CORPORA",
    "LABELS",
    "MODALITIES",
    "MODALITY_MASK",
    "MODEL_INPUT_NAMES",
    "SYNTHETIC",
    "TEXT",
    "VIDEO",
    "is_hub_id",
]

# Batch keys shared by the datasets, the collator, the model, the recipes and the Space.
AUDIO = "audio"
TEXT = "text"
VIDEO = "video"
#: The three modalities, in the order every ``[..., 3]`` mask uses.
MODALITIES = (AUDIO, TEXT, VIDEO)
MODALITY_MASK = "modality_mask"
ATTENTION_MASK = "attention_mask"
LABELS = "labels"
MODEL_INPUT_NAMES = (AUDIO, TEXT, VIDEO, MODALITY_MASK, ATTENTION_MASK)

#: The IEMOCAP configurations (sessions 1-5, leave-one-session-out folds).
IEMOCAP_CORPORA = ("iemocap4", "iemocap6")
#: The CMU configurations (fixed train / validation / test splits, sentiment regression).
CMU_CORPORA = ("mosi", "mosei")
#: The four real corpora (``hub_datasets.CORPORA`` maps each of these names to its description).
CORPUS_NAMES = (*IEMOCAP_CORPORA, *CMU_CORPORA)
#: Name of the built-in synthetic corpus (its configs are the corpus names).
SYNTHETIC = "synthetic"
#: Every name :func:`hub_datasets.load_dataset` accepts as ``path`` besides Hub ids and folders.
DATASET_NAMES = (SYNTHETIC, *CORPUS_NAMES)

#: A Hub repository id ``"<owner>/<name>"``: letters, digits, ``-``, ``_`` and ``.``, each part at most 96
#: characters and starting with a letter or digit.
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def is_hub_id(text: object) -> bool:
    """Whether ``text`` is shaped like a Hub repository id ``"<owner>/<name>"`` (nothing is looked up).

    Args:
        text: The candidate.

    Returns:
        ``True`` for a string matching :data:`HUB_ID_PATTERN` without ``..`` or a trailing ``.git``.
    """
    return (
        isinstance(text, str)
        and HUB_ID_PATTERN.match(text) is not None
        and ".." not in text
        and not text.endswith(".git")
    )
