"""Names shared by the data side: batch keys, modality names, corpus names, missing-data protocols and the Hub-id
check.

This module imports nothing beyond the standard library, so the mask code (:mod:`hub_datasets.masks`) can be
used without torch or transformers. The batch keys and row fields (``AUDIO`` ... ``MODALITIES``,
``CONVERSATION_INDEX``) have their one home in ``modeling_comp/names.py``, because a checkpoint's remote code needs
them without this package; they are read from that file here without importing the model package (torch).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path


__all__ = [
    "ATTENTION_MASK",
    "AUDIO",
    "CMU_CORPORA",
    "CONVERSATION_INDEX",
    "CORPUS_NAMES",
    "DATASET_NAMES",
    "DIALOG_ID",
    "HUB_ID_PATTERN",
    "IEMOCAP_CORPORA",
    "LABELS",
    "MISSING_PROTOCOLS",
    "MODALITIES",
    "MODALITY_MASK",
    "MODEL_INPUT_NAMES",
    "SYNTHETIC",
    "TEXT",
    "UTTERANCE_IDS",
    "VIDEO",
    "is_hub_id",
]


def _model_names():
    """``modeling_comp/names.py`` (the shared names' home): the loaded module when the model package is imported,
    otherwise the file itself, executed on its own (it imports nothing), so the data side never imports torch."""
    loaded = sys.modules.get("modeling_comp.names")
    if loaded is not None:
        return loaded
    path = Path(__file__).resolve().parent.parent / "modeling_comp" / "names.py"
    spec = importlib.util.spec_from_file_location("hub_datasets._model_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_names = _model_names()
AUDIO, TEXT, VIDEO = _names.AUDIO, _names.TEXT, _names.VIDEO
MODALITIES = _names.MODALITIES
MODALITY_MASK, ATTENTION_MASK, LABELS = _names.MODALITY_MASK, _names.ATTENTION_MASK, _names.LABELS
MODEL_INPUT_NAMES = _names.MODEL_INPUT_NAMES
CONVERSATION_INDEX, DIALOG_ID, UTTERANCE_IDS = _names.CONVERSATION_INDEX, _names.DIALOG_ID, _names.UTTERANCE_IDS
del _names

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

#: The missing-data protocols of :func:`hub_datasets.load_dataset` (``missing_protocol=``): a missing rate drawn per
#: utterance, or a fixed subset of observed modalities.
MISSING_PROTOCOLS = ("rate", "subset")

#: A Hub repository id ``"<owner>/<name>"``: letters, digits, ``-``, ``_`` and ``.``, each part at most 96
#: characters and starting with a letter or digit.
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


#: A Hub name without its owner (models such as ``bert-base-uncased`` have none).
_HUB_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def is_hub_id(text: object, *, owner_optional: bool = False) -> bool:
    """Whether ``text`` is shaped like a Hub repository id ``"<owner>/<name>"`` (nothing is looked up).

    Args:
        text: The candidate.
        owner_optional: Also accept a bare ``"<name>"`` (the form of some older model ids).

    Returns:
        ``True`` for a string matching :data:`HUB_ID_PATTERN` (or a bare name, with ``owner_optional``) without
        ``..`` or a trailing ``.git``.
    """
    if not isinstance(text, str) or ".." in text or text.endswith(".git"):
        return False
    if HUB_ID_PATTERN.match(text) is not None:
        return True
    return owner_optional and _HUB_NAME_PATTERN.match(text) is not None
