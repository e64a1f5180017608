"""Corpus descriptions, the row schema, and the builder that turns flat per-utterance arrays into a ``Dataset``.

Every reader (GCNet, MMSA, parquet, synthetic) produces :class:`CorpusSplit` objects: conversations in order,
utterance metadata, and one flat ``float32`` matrix per modality with a row per utterance. :func:`build_dataset`
turns one into an Arrow-backed :class:`datasets.Dataset` without per-row Python work, so preparing a MOSEI-sized
corpus is dominated by reading the feature files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from datasets import Array2D, ClassLabel, Dataset, DatasetInfo, Features, List, Value
from datasets.table import InMemoryTable

from .constants import AUDIO, CONVERSATION_INDEX, LABELS, MODALITIES, MODALITY_MASK, TEXT, VIDEO


__all__ = [
    "CONVERSATION_INDEX",
    "CORPORA",
    "DEFAULT_FEATURE_NAMES",
    "DERIVED_COLUMNS",
    "FEATURE_PRESENT",
    "IEMOCAP4_LABELS",
    "IEMOCAP6_LABELS",
    "MAX_ABS_FEATURE",
    "UTTERANCE_KEYS",
    "CorpusSpec",
    "CorpusSplit",
    "base_features",
    "build_dataset",
    "first_bad_feature",
    "get_spec",
    "matrix_column",
    "ragged_column",
]

#: Column with the stable 64-bit keys of the utterance ids (see :mod:`hub_datasets.masks`).
UTTERANCE_KEYS = "utterance_keys"
#: Column ``[n, 3]`` int8: 1 where the corpus has a non-empty feature for that utterance and modality.
FEATURE_PRESENT = "feature_present"
#: Columns computed at load time and never published (masks depend on the missing rate; keys on the ids).
DERIVED_COLUMNS = (MODALITY_MASK, CONVERSATION_INDEX, UTTERANCE_KEYS)

#: IEMOCAP 4-class names (GCNet ids: 0 happy+excited, 1 sad, 2 neutral, 3 angry).
IEMOCAP4_LABELS = ("hap", "sad", "neu", "ang")
#: IEMOCAP 6-class names (GCNet ids: 0 happy, 1 sad, 2 neutral, 3 angry, 4 excited, 5 frustrated).
IEMOCAP6_LABELS = ("hap", "sad", "neu", "ang", "exc", "fru")

#: Largest magnitude accepted in a feature value. Real utterance features (wav2vec, DeBERTa, MANet, COVAREP,
#: OpenFace, FACET) stay orders of magnitude below it; larger values overflow float32 inside the model (their
#: squares exceed 3.4e38 from about 1.8e19) and come from corrupt files.
MAX_ABS_FEATURE = 1e6

#: GCNet/ComP feature folder names under ``features/``.
DEFAULT_FEATURE_NAMES = {AUDIO: "wav2vec-large-c-UTT", TEXT: "deberta-large-4-UTT", VIDEO: "manet_UTT"}


@dataclass(frozen=True)
class CorpusSpec:
    """What we know about one corpus configuration.

    Attributes:
        name: Config name (``"iemocap4"``, ``"iemocap6"``, ``"mosi"``, ``"mosei"``).
        family: ``"iemocap"`` (sessions, leave-one-session-out folds) or ``"cmu"`` (train/valid/test).
        display_name: Human-readable name.
        label_names: Class names (classification) or ``None`` (sentiment regression in [-3, 3]).
        folder: The corpus folder under a GCNet root (``IEMOCAP``, ``CMUMOSI``, ``CMUMOSEI``).
        label_pickle: The GCNet label pickle's file name.
        max_utterances: The released code's padded length ``seq_len`` (65 MOSI, 150 otherwise).
    """

    name: str
    family: str
    display_name: str
    label_names: tuple[str, ...] | None
    folder: str
    label_pickle: str
    max_utterances: int

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return "regression" if self.label_names is None else "classification"


#: The four real corpora: name (:data:`~hub_datasets.constants.CORPUS_NAMES`) -> :class:`CorpusSpec`.
CORPORA: dict[str, CorpusSpec] = {
    "iemocap4": CorpusSpec(
        "iemocap4", "iemocap", "IEMOCAP (4 classes)", IEMOCAP4_LABELS, "IEMOCAP", "IEMOCAP_features_raw_4way.pkl", 150
    ),
    "iemocap6": CorpusSpec(
        "iemocap6", "iemocap", "IEMOCAP (6 classes)", IEMOCAP6_LABELS, "IEMOCAP", "IEMOCAP_features_raw_6way.pkl", 150
    ),
    "mosi": CorpusSpec("mosi", "cmu", "CMU-MOSI", None, "CMUMOSI", "CMUMOSI_features_raw_2way.pkl", 65),
    "mosei": CorpusSpec("mosei", "cmu", "CMU-MOSEI", None, "CMUMOSEI", "CMUMOSEI_features_raw_2way.pkl", 150),
}


def get_spec(name: str) -> CorpusSpec:
    """Look up a corpus configuration.

    Args:
        name: ``"iemocap4"``, ``"iemocap6"``, ``"mosi"`` or ``"mosei"``.

    Returns:
        Its :class:`CorpusSpec`.

    Raises:
        ValueError: For an unknown name.
    """
    try:
        return CORPORA[name]
    except KeyError:
        raise ValueError(f"unknown corpus config {name!r}; expected one of {sorted(CORPORA)}") from None


@dataclass
class CorpusSplit:
    """One split of a corpus in flat form (one row per utterance, conversations contiguous and in order).

    Attributes:
        dialog_ids: Conversation ids, in order.
        lengths: Number of utterances of each conversation.
        utterance_ids: All utterance ids, flattened.
        speakers: Speaker of each utterance (``"F"``/``"M"`` for IEMOCAP, ``""`` for CMU).
        transcripts: Transcript of each utterance (``""`` where the corpus has none).
        labels: Class ids (``int64``) or sentiment (``float64``), one per utterance.
        features: ``{modality: float32 [N, dim]}``.
        present: ``int8 [N, 3]``, 1 where a non-empty feature existed.
        sessions: IEMOCAP session (1-5) of each conversation; 0 for CMU.
        source_split: The split's name in the source files (``"session3"``, ``"train"``, ``"valid"`` ...).
        corpus: Value of the ``corpus`` column (``"mosi"``, ``"synthetic-iemocap4"`` ...).
    """

    dialog_ids: list[str]
    lengths: np.ndarray
    utterance_ids: list[str]
    speakers: list[str]
    transcripts: list[str]
    labels: np.ndarray
    features: dict[str, np.ndarray]
    present: np.ndarray
    sessions: np.ndarray
    source_split: str
    corpus: str
    extra: dict = field(default_factory=dict)

    @property
    def num_utterances(self) -> int:
        """Total number of utterances."""
        return int(self.lengths.sum())


def base_features(label_names: tuple[str, ...] | None, dims: dict[str, int]) -> Features:
    """The stored row schema (without the load-time columns of :data:`DERIVED_COLUMNS`).

    Args:
        label_names: Class names, or ``None`` for sentiment regression.
        dims: ``{modality: dim}``.

    Returns:
        The :class:`datasets.Features`.
    """
    label = Value("float64") if label_names is None else ClassLabel(names=list(label_names))
    return Features(
        {
            "dialog_id": Value("string"),
            "utterance_ids": List(Value("string")),
            "speakers": List(Value("string")),
            "transcripts": List(Value("string")),
            LABELS: List(label),
            **{m: Array2D(shape=(None, int(dims[m])), dtype="float32") for m in MODALITIES},
            FEATURE_PRESENT: Array2D(shape=(None, 3), dtype="int8"),
            "num_utterances": Value("int32"),
            "corpus": Value("string"),
            "session": Value("int32"),
            "source_split": Value("string"),
        }
    )


def _offsets(lengths: np.ndarray) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32))


def _matrix_storage(values: np.ndarray, offsets: pa.Array) -> pa.Array:
    """``list<list<T>>`` storage of an ``Array2D((None, d))`` column from a flat ``[N, d]`` matrix."""
    values = np.ascontiguousarray(values)
    n, d = values.shape
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), pa.array(values.ravel()))
    return pa.ListArray.from_arrays(offsets, inner)


def ragged_column(values, lengths: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A ``list<T>`` column from flat values and per-row lengths.

    Args:
        values: Flat values (list or numpy array).
        lengths: Row lengths.
        arrow_type: Arrow type of the leaf values.

    Returns:
        The Arrow list array.
    """
    return pa.ListArray.from_arrays(_offsets(lengths), pa.array(values, type=arrow_type))


def matrix_column(values: np.ndarray, lengths: np.ndarray, feature: Array2D) -> pa.Array:
    """An ``Array2D((None, d))`` extension column from a flat ``[N, d]`` matrix and per-row lengths.

    Args:
        values: ``[N, d]`` matrix (rows of consecutive conversations).
        lengths: Utterances per conversation.
        feature: The column's :class:`datasets.Array2D` feature.

    Returns:
        The Arrow extension array.
    """
    ext_type = Features({"x": feature}).arrow_schema.field("x").type
    storage = _matrix_storage(np.asarray(values, dtype=np.dtype(feature.dtype)), _offsets(lengths))
    return pa.ExtensionArray.from_storage(ext_type, storage)


def build_dataset(
    split: CorpusSplit, label_names: tuple[str, ...] | None, *, split_name: str, fingerprint: str
) -> Dataset:
    """Build an in-memory :class:`datasets.Dataset` (one row per conversation) from a :class:`CorpusSplit`.

    Args:
        split: The flat split.
        label_names: Class names, or ``None`` for regression.
        split_name: The ``Dataset.split`` name.
        fingerprint: A fingerprint that identifies the content (without it ``datasets`` would hash every
            value of the table).

    Returns:
        The dataset with the columns of :func:`base_features`.
    """
    dims = {m: int(split.features[m].shape[1]) for m in MODALITIES}
    features = base_features(label_names, dims)
    lengths = np.asarray(split.lengths, dtype=np.int64)
    offsets = _offsets(lengths)
    schema = features.arrow_schema
    label_type = pa.float64() if label_names is None else pa.int64()
    columns = {
        "dialog_id": pa.array(split.dialog_ids, type=pa.string()),
        "utterance_ids": pa.ListArray.from_arrays(offsets, pa.array(split.utterance_ids, type=pa.string())),
        "speakers": pa.ListArray.from_arrays(offsets, pa.array(split.speakers, type=pa.string())),
        "transcripts": pa.ListArray.from_arrays(offsets, pa.array(split.transcripts, type=pa.string())),
        LABELS: pa.ListArray.from_arrays(offsets, pa.array(np.asarray(split.labels), type=label_type)),
    }
    for m in MODALITIES:
        storage = _matrix_storage(np.asarray(split.features[m], dtype=np.float32), offsets)
        columns[m] = pa.ExtensionArray.from_storage(schema.field(m).type, storage)
    storage = _matrix_storage(np.asarray(split.present, dtype=np.int8), offsets)
    columns[FEATURE_PRESENT] = pa.ExtensionArray.from_storage(schema.field(FEATURE_PRESENT).type, storage)
    columns["num_utterances"] = pa.array(lengths.astype(np.int32))
    columns["corpus"] = pa.array([split.corpus] * len(split.dialog_ids), type=pa.string())
    columns["session"] = pa.array(np.asarray(split.sessions, dtype=np.int32))
    columns["source_split"] = pa.array([split.source_split] * len(split.dialog_ids), type=pa.string())
    table = pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
    info = DatasetInfo(features=features)
    return Dataset(InMemoryTable(table), info=info, split=split_name, fingerprint=fingerprint)


def first_bad_feature(matrix: np.ndarray) -> tuple[int, int, float] | None:
    """The first value of a ``[N, D]`` feature matrix that is NaN, infinite or beyond :data:`MAX_ABS_FEATURE`.

    Args:
        matrix: One modality's per-utterance features.

    Returns:
        ``(row, column, value)`` of the first bad value in row-major order, or ``None`` when all are fine.
    """
    matrix = np.asarray(matrix)
    if matrix.size == 0:
        return None
    low, high = np.min(matrix), np.max(matrix)  # no temporary copy; NaN makes both comparisons False
    if low >= -MAX_ABS_FEATURE and high <= MAX_ABS_FEATURE:
        return None
    with np.errstate(invalid="ignore"):
        ok = np.abs(matrix) <= MAX_ABS_FEATURE  # False for NaN as well
    if ok.all():
        return None
    flat = int(np.argmin(ok.reshape(-1)))
    row, col = divmod(flat, matrix.shape[1])
    return row, col, float(matrix[row, col])
