"""The built-in synthetic corpus: the real schema with a planted, modality-imbalanced signal.

Nothing here is real emotion data. Every id carries ``synth``, every transcript says "synthetic", the
``corpus`` column reads ``synthetic-<config>``, and corpora written to disk carry a
``SYNTHETIC_CORPUS.json`` marker so the real readers label them synthetic as well.

The generative model, per conversation (dialogue or video):

* classification (``iemocap4`` / ``iemocap6``): the first label is uniform over the classes; each next
  utterance keeps the previous label with probability ``label_persistence`` (labels are persistent within a
  conversation) and otherwise draws a new uniform label;
* regression (``mosi`` / ``mosei``): a conversation mood ``b ~ U(-2.5, 2.5)`` and utterance sentiment
  ``y = clip(b + N(0, 0.8^2), -3, 3)`` rounded to thirds (three annotators' mean, like CMU's labels);
* features, per modality ``m``: ``x = signal[m] * mu_m(y) + c + e`` with ``mu_m(y)`` a unit class mean
  (classification) or ``(y / 3)`` times a unit direction (regression), ``c ~ N(0, 0.5^2 I)`` a conversation
  offset and ``e ~ N(0, I)`` utterance noise. Default strengths: text 2.2 (strong), audio 1.5 (medium),
  video 0.9 (weak): each modality alone is above chance and the fusion is better than any single one.

Everything is drawn from one ``numpy.random.Generator(PCG64(seed))``: a seed gives the same corpus on every
machine.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json, make_temp_dir
from .constants import AUDIO, MODALITIES, TEXT, VIDEO
from .gcnet import SYNTHETIC_MARKER
from .mmsa import MMSA_FILES
from .schema import DEFAULT_FEATURE_NAMES, CorpusSpec, CorpusSplit, get_spec


__all__ = [
    "DEFAULT_DIMS",
    "DEFAULT_SIGNAL",
    "SYNTHETIC_CONFIGS",
    "SyntheticCorpus",
    "generate_synthetic_corpus",
    "write_synthetic_corpus",
]

#: The synthetic configurations (same schema and task as the real corpus of the same name).
SYNTHETIC_CONFIGS = ("iemocap4", "iemocap6", "mosi", "mosei")
#: Default feature dimensions (small, so the whole training recipe runs in minutes on a CPU).
DEFAULT_DIMS = {AUDIO: 32, TEXT: 64, VIDEO: 64}
#: Default signal strengths: text strong, audio medium, video weak.
DEFAULT_SIGNAL = {AUDIO: 1.5, TEXT: 2.2, VIDEO: 0.9}
_OFFSET_STD = 0.5
_MOOD_NOISE = 0.8


@dataclass
class SyntheticCorpus:
    """A generated corpus in flat form.

    Attributes:
        config: ``"iemocap4"``, ``"iemocap6"``, ``"mosi"`` or ``"mosei"``.
        spec: The real corpus it imitates.
        splits: Natural splits (``session1..5`` for IEMOCAP-like, ``train/validation/test`` for CMU-like).
        params: The generator arguments (stored in provenance and in the on-disk marker).
    """

    config: str
    spec: CorpusSpec
    splits: dict[str, CorpusSplit]
    params: dict = field(default_factory=dict)

    @property
    def corpus_label(self) -> str:
        """Value of the ``corpus`` column: ``synthetic-<config>``."""
        return f"synthetic-{self.config}"


def _check_params(config, num_conversations, min_utterances, max_utterances, dims, signal, persistence, frac):
    if config not in SYNTHETIC_CONFIGS:
        raise ValueError(f"unknown synthetic config {config!r}; expected one of {SYNTHETIC_CONFIGS}")
    if int(num_conversations) < 5:
        raise ValueError(f"num_conversations must be >= 5 (one per IEMOCAP-like session), got {num_conversations}")
    if not 1 <= int(min_utterances) <= int(max_utterances):
        raise ValueError(
            f"need 1 <= min_utterances <= max_utterances, got min_utterances={min_utterances}, "
            f"max_utterances={max_utterances}"
        )
    for name, table in (("dims", dims), ("signal", signal)):
        unknown = set(table) - set(MODALITIES)
        if unknown:
            raise ValueError(f"{name} has unknown modalities {sorted(unknown)}; expected keys from {MODALITIES}")
    for m, d in dims.items():
        if int(d) < 1:
            raise ValueError(f"dims[{m!r}] must be >= 1, got {d}")
    if not 0.0 <= float(persistence) <= 1.0:
        raise ValueError(f"label_persistence must be in [0, 1], got {persistence}")
    if not 0.0 <= float(frac) < 1.0:
        raise ValueError(f"missing_face_fraction must be in [0, 1), got {frac}")


def _adjust_lengths(lengths: np.ndarray, total: int, low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    if not low * len(lengths) <= total <= high * len(lengths):
        raise ValueError(
            f"total_utterances={total} cannot be reached with {len(lengths)} conversations of {low}..{high} utterances"
        )
    lengths = lengths.copy()
    while (diff := total - int(lengths.sum())) != 0:
        movable = np.flatnonzero(lengths < high) if diff > 0 else np.flatnonzero(lengths > low)
        picks = rng.choice(movable, size=min(abs(diff), len(movable)), replace=False)
        lengths[picks] += 1 if diff > 0 else -1
    return lengths


def generate_synthetic_corpus(
    config: str = "iemocap4",
    *,
    num_conversations: int = 120,
    min_utterances: int = 5,
    max_utterances: int = 20,
    total_utterances: int | None = None,
    dims: dict[str, int] | None = None,
    signal: dict[str, float] | None = None,
    label_persistence: float = 0.75,
    missing_face_fraction: float = 0.0,
    seed: int = 0,
) -> SyntheticCorpus:
    """Generate a synthetic corpus (deterministic by ``seed``; no global RNG).

    Args:
        config: ``"iemocap4"`` / ``"iemocap6"`` (classification, 5 sessions) or ``"mosi"`` / ``"mosei"``
            (sentiment regression in [-3, 3], train/validation/test = 70/10/20 % of the conversations).
        num_conversations: Number of conversations.
        min_utterances: Shortest conversation.
        max_utterances: Longest conversation (lengths are uniform in between).
        total_utterances: If given, lengths are then adjusted one utterance at a time (seeded, within
            ``[min_utterances, max_utterances]``) until they sum to exactly this (e.g. MOSEI's 22,856).
        dims: Feature dimensions per modality (default :data:`DEFAULT_DIMS`); partial dicts are merged.
        signal: Signal strength per modality (default :data:`DEFAULT_SIGNAL`); 0 means pure noise.
        label_persistence: Probability that an utterance repeats the previous utterance's label.
        missing_face_fraction: Fraction of utterances with no face found (zero video, ``feature_present`` 0),
            written as empty face folders; 0 by default.
        seed: Generator seed.

    Returns:
        The :class:`SyntheticCorpus`.
    """
    dims = {**DEFAULT_DIMS, **(dims or {})}
    signal = {**DEFAULT_SIGNAL, **(signal or {})}
    _check_params(
        config,
        num_conversations,
        min_utterances,
        max_utterances,
        dims,
        signal,
        label_persistence,
        missing_face_fraction,
    )
    spec = get_spec(config)
    rng = np.random.default_rng(int(seed))
    num_conversations = int(num_conversations)
    dims = {m: int(dims[m]) for m in MODALITIES}
    classes = None if spec.label_names is None else len(spec.label_names)
    directions = {}
    for m in MODALITIES:
        raw = rng.standard_normal((classes or 1, dims[m]))
        directions[m] = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    lengths = rng.integers(int(min_utterances), int(max_utterances) + 1, size=num_conversations)
    if total_utterances is not None:
        lengths = _adjust_lengths(lengths, int(total_utterances), int(min_utterances), int(max_utterances), rng)
    if spec.family == "iemocap":
        sessions = 1 + np.arange(num_conversations) % 5
        dialog_ids = [f"Ses0{s}{'FM'[(i // 5) % 2]}_synth{i:03d}" for i, s in enumerate(sessions)]
        split_of = [f"session{s}" for s in sessions]
        split_names = [f"session{s}" for s in range(1, 6)]
    else:
        sessions = np.zeros(num_conversations, dtype=np.int64)
        dialog_ids = [f"synth{i:05d}" for i in range(num_conversations)]
        order = rng.permutation(num_conversations)
        n_train, n_val = int(round(0.7 * num_conversations)), int(round(0.1 * num_conversations))
        split_of = [""] * num_conversations
        for rank, i in enumerate(order):
            split_of[i] = "train" if rank < n_train else ("validation" if rank < n_train + n_val else "test")
        split_names = ["train", "validation", "test"]
    per_split: dict[str, dict[str, list]] = {
        name: {
            "dialogs": [],
            "lengths": [],
            "uids": [],
            "speakers": [],
            "texts": [],
            "labels": [],
            "sessions": [],
            "present": [],
            **{m: [] for m in MODALITIES},
        }
        for name in split_names
    }
    for i in range(num_conversations):
        n = int(lengths[i])
        if classes is not None:
            labels = np.empty(n, dtype=np.int64)
            labels[0] = rng.integers(classes)
            for j in range(1, n):
                labels[j] = labels[j - 1] if rng.random() < label_persistence else rng.integers(classes)
            targets = {m: directions[m][labels] for m in MODALITIES}
            label_values = labels
        else:
            mood = rng.uniform(-2.5, 2.5)
            values = np.clip(mood + _MOOD_NOISE * rng.standard_normal(n), -3.0, 3.0)
            label_values = np.round(values * 3.0) / 3.0
            targets = {m: (label_values / 3.0)[:, None] * directions[m][0][None, :] for m in MODALITIES}
        if spec.family == "iemocap":
            first = "FM"[int(rng.integers(2))]
            speakers = [first]
            for _ in range(1, n):
                speakers.append(speakers[-1] if rng.random() < 0.3 else ("M" if speakers[-1] == "F" else "F"))
            uids = [f"{dialog_ids[i]}_{s}{j:03d}" for j, s in enumerate(speakers)]
        else:
            speakers = [""] * n
            uids = [f"{dialog_ids[i]}_{j + 1}" for j in range(n)]
        present = np.ones((n, 3), dtype=np.int8)
        bucket = per_split[split_of[i]]
        for m in MODALITIES:
            offset = _OFFSET_STD * rng.standard_normal(dims[m])
            x = signal[m] * targets[m] + offset[None, :] + rng.standard_normal((n, dims[m]))
            bucket[m].append(x.astype(np.float32))
        if missing_face_fraction > 0:
            no_face = rng.random(n) < missing_face_fraction
            bucket[VIDEO][-1][no_face] = 0.0
            present[no_face, 2] = 0
        bucket["dialogs"].append(dialog_ids[i])
        bucket["lengths"].append(n)
        bucket["uids"].extend(uids)
        bucket["speakers"].extend(speakers)
        bucket["texts"].extend(f"(synthetic) utterance {j + 1} of {dialog_ids[i]}" for j in range(n))
        bucket["labels"].append(np.asarray(label_values))
        bucket["sessions"].append(int(sessions[i]))
        bucket["present"].append(present)
    params = {
        "config": config,
        "num_conversations": num_conversations,
        "min_utterances": int(min_utterances),
        "max_utterances": int(max_utterances),
        "total_utterances": None if total_utterances is None else int(total_utterances),
        "dims": dims,
        "signal": {m: float(signal[m]) for m in MODALITIES},
        "label_persistence": float(label_persistence),
        "missing_face_fraction": float(missing_face_fraction),
        "seed": int(seed),
    }
    splits = {}
    label_dtype = np.int64 if classes is not None else np.float64
    for name in split_names:
        bucket = per_split[name]
        # Sort conversations by id inside each split, as the readers do, so written corpora round-trip exactly.
        order = sorted(range(len(bucket["dialogs"])), key=lambda k: bucket["dialogs"][k])
        starts = np.concatenate([[0], np.cumsum(bucket["lengths"])])

        def gather(items, order=order, starts=starts):
            return [items[u] for k in order for u in range(starts[k], starts[k + 1])]

        splits[name] = CorpusSplit(
            dialog_ids=[bucket["dialogs"][k] for k in order],
            lengths=np.array([bucket["lengths"][k] for k in order], dtype=np.int64),
            utterance_ids=gather(bucket["uids"]),
            speakers=gather(bucket["speakers"]),
            transcripts=gather(bucket["texts"]),
            labels=(np.concatenate([bucket["labels"][k] for k in order]) if order else np.zeros(0)).astype(
                label_dtype
            ),
            features={
                m: (np.concatenate([bucket[m][k] for k in order]) if order else np.zeros((0, dims[m]))).astype(
                    np.float32
                )
                for m in MODALITIES
            },
            present=(np.concatenate([bucket["present"][k] for k in order]) if order else np.zeros((0, 3))).astype(
                np.int8
            ),
            sessions=np.array([bucket["sessions"][k] for k in order], dtype=np.int32),
            source_split=name,
            corpus=f"synthetic-{config}",
        )
    return SyntheticCorpus(config=config, spec=spec, splits=splits, params=params)


# --------------------------------------------------------------------------------------------- writers


def _conversations(split: CorpusSplit):
    start = 0
    for dialog, n in zip(split.dialog_ids, split.lengths, strict=True):
        yield dialog, start, start + int(n)
        start += int(n)


def _write_gcnet(corpus: SyntheticCorpus, corpus_dir: Path, *, seed: int) -> None:
    spec = corpus.spec
    rng = np.random.default_rng([int(seed), 1])
    folders = {m: corpus_dir / "features" / DEFAULT_FEATURE_NAMES[m] for m in MODALITIES}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    video_ids, labels, speakers, sentences = {}, {}, {}, {}
    for split in corpus.splits.values():
        for dialog, start, stop in _conversations(split):
            video_ids[dialog] = list(split.utterance_ids[start:stop])
            speakers[dialog] = list(split.speakers[start:stop])
            if spec.family == "iemocap":
                labels[dialog] = [int(v) for v in split.labels[start:stop]]
                sentences[dialog] = list(split.transcripts[start:stop])
            else:
                labels[dialog] = [np.float64(v) for v in split.labels[start:stop]]
                sentences[dialog] = np.array(split.transcripts[start:stop])
            for k in range(start, stop):
                uid = split.utterance_ids[k]
                for m in (AUDIO, TEXT):
                    np.save(folders[m] / f"{uid}.npy", split.features[m][k])
                face_dir = folders[VIDEO] / uid
                face_dir.mkdir(exist_ok=True)
                face = split.features[VIDEO][k]
                has_face = bool(split.present[k, 2])
                if spec.family == "iemocap":
                    other = "M" if split.speakers[k] == "F" else "F"
                    listener = rng.standard_normal(face.shape[0]).astype(np.float32)
                    np.save(face_dir / f"compress_{other}.npy", listener)
                    if has_face:
                        np.save(face_dir / f"compress_{split.speakers[k]}.npy", face)
                elif has_face:
                    # CMU face folders hold one file per detected face; identical copies average exactly.
                    for f in range(1 + int(rng.integers(2))):
                        np.save(face_dir / f"face_{f}.npy", face)
    if spec.family == "iemocap":
        sessions = {d: int(d[4]) for d in video_ids}
        obj = [
            video_ids,
            labels,
            speakers,
            sentences,
            {d for d, s in sessions.items() if s != 5},
            {d for d, s in sessions.items() if s == 5},
        ]
        protocol = 2
    else:
        groups = {name: set(split.dialog_ids) for name, split in corpus.splits.items()}
        obj = [video_ids, labels, speakers, sentences, groups["train"], groups["validation"], groups["test"]]
        protocol = 4
    with open(corpus_dir / spec.label_pickle, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)


def _write_mmsa(corpus: SyntheticCorpus, folder: Path, *, variant: str, frames: tuple[int, int, int], seed: int):
    rng = np.random.default_rng([int(seed), 2])
    data = {}
    for source, name in (("train", "train"), ("valid", "validation"), ("test", "test")):
        split = corpus.splits[name]
        n = split.num_utterances
        dialog_of = [d for d, start, stop in _conversations(split) for _ in range(start, stop)]
        ids = [f"{d}$_${u.rsplit('_', 1)[1]}" for d, u in zip(dialog_of, split.utterance_ids, strict=True)]
        t_len, a_len, v_len = frames
        lengths = {
            TEXT: rng.integers(1, t_len + 1, size=n),
            AUDIO: rng.integers(1, a_len + 1, size=n),
            VIDEO: rng.integers(1, v_len + 1, size=n),
        }
        if variant == "aligned":
            lengths[AUDIO] = lengths[VIDEO] = lengths[TEXT]
        arrays = {}
        for m, total in ((TEXT, t_len), (AUDIO, a_len), (VIDEO, v_len)):
            arr = np.zeros((n, total, split.features[m].shape[1]), dtype=np.float32)
            valid = np.arange(total)[None, :] < lengths[m][:, None]
            arr[valid] = np.repeat(split.features[m], lengths[m], axis=0)
            if m == AUDIO:
                arr[~valid] = -np.inf  # MMSA's COVAREP audio carries -inf; padded frames are masked anyway
            if m == VIDEO:
                arr[split.present[:, 2] == 0] = 0.0
                lengths[m] = np.where(split.present[:, 2] == 0, 0, lengths[m])
            arrays[m] = arr
        text_bert = np.zeros((n, 3, t_len), dtype=np.float32)
        text_bert[:, 1, :] = np.arange(t_len)[None, :] < lengths[TEXT][:, None]
        data[source] = {
            "id": np.array(ids, dtype=object),
            "raw_text": np.array(split.transcripts, dtype=object),
            "text": arrays[TEXT],
            "text_bert": text_bert,
            "audio": arrays[AUDIO],
            "vision": arrays[VIDEO],
            "audio_lengths": lengths[AUDIO].astype(np.int64),
            "vision_lengths": lengths[VIDEO].astype(np.int64),
            "regression_labels": np.asarray(split.labels, dtype=np.float64),
            "annotations": np.array(["synthetic"] * n, dtype=object),
        }
    with open(folder / MMSA_FILES[variant], "wb") as handle:
        pickle.dump(data, handle, protocol=4)


def write_synthetic_corpus(
    output_dir: str | os.PathLike,
    config: str = "iemocap4",
    *,
    format: str = "gcnet",
    mmsa_variant: str = "unaligned",
    mmsa_frames: tuple[int, int, int] = (16, 20, 20),
    overwrite: bool = False,
    **generator_kwargs,
) -> Path:
    """Generate a synthetic corpus and write it in a real on-disk format.

    The corpus is written into a temporary folder next to the target and renamed into place when complete, so
    an interrupted call never leaves a half-written corpus behind.

    Args:
        output_dir: The root folder. GCNet: the corpus goes to ``<output_dir>/<IEMOCAP|CMUMOSI|CMUMOSEI>/``.
            MMSA (``mosi``/``mosei`` only): ``<output_dir>/<MOSI|MOSEI>/Processed/<variant>_50.pkl``.
        config: Synthetic config (see :func:`generate_synthetic_corpus`).
        format: ``"gcnet"`` or ``"mmsa"``.
        mmsa_variant: ``"aligned"`` or ``"unaligned"`` (MMSA only).
        mmsa_frames: Padded frame counts (text, audio, vision) of the MMSA arrays (MMSA's real ones are 50 / 500
            / 375 unaligned and 50 / 50 / 50 aligned; the defaults are small to keep files small).
        overwrite: Replace an existing corpus folder.
        **generator_kwargs: Passed to :func:`generate_synthetic_corpus` (``num_conversations``, ``dims``,
            ``seed`` ...).

    Returns:
        The folder to pass as ``data_dir`` to :func:`hub_datasets.load_dataset`.
    """
    if format not in ("gcnet", "mmsa"):
        raise ValueError(f"format must be 'gcnet' or 'mmsa', got {format!r}")
    corpus = generate_synthetic_corpus(config, **generator_kwargs)
    spec = corpus.spec
    root = Path(output_dir).expanduser()
    if format == "gcnet":
        target = root / spec.folder
    else:
        if spec.family != "cmu":
            raise ValueError(f"the MMSA format holds CMU-MOSI/MOSEI only, not {config!r}")
        if mmsa_variant not in MMSA_FILES:
            raise ValueError(f"mmsa_variant must be one of {sorted(MMSA_FILES)}, got {mmsa_variant!r}")
        if len(mmsa_frames) != 3 or min(int(f) for f in mmsa_frames) < 1:
            raise ValueError(f"mmsa_frames must be three positive frame counts, got {mmsa_frames!r}")
        target = root / spec.name.upper() / "Processed"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target.parent, f".{target.name}.tmp-")
    try:
        seed = corpus.params["seed"]
        if format == "gcnet":
            _write_gcnet(corpus, tmp, seed=seed)
        else:
            _write_mmsa(corpus, tmp, variant=mmsa_variant, frames=tuple(int(f) for f in mmsa_frames), seed=seed)
        marker = {"synthetic": True, "generator": "hub_datasets.synthetic", "format": format, **corpus.params}
        atomic_write_json(tmp / SYNTHETIC_MARKER, marker, indent=2, sort_keys=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
