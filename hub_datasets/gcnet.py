"""Reader for the GCNet / ComP on-disk format.

::

    <corpus dir>/IEMOCAP_features_raw_4way.pkl        (or _6way, CMUMOSI_..._2way.pkl, CMUMOSEI_..._2way.pkl)
    <corpus dir>/features/wav2vec-large-c-UTT/<utt>.npy          audio  [D] or frames [T, D]
    <corpus dir>/features/deberta-large-4-UTT/<utt>.npy          text
    <corpus dir>/features/manet_UTT/<utt>/compress_F.npy         IEMOCAP faces, one file per actor
    <corpus dir>/features/manet_UTT/<utt>/*.npy  (or <utt>.npy)  CMU faces, stacked and averaged

Each directory is listed once (the released loader globbed per utterance, which is quadratic), the label
pickle goes through :func:`hub_datasets.safe_pickle.safe_load_pickle`, ``.npy`` files are read with
``allow_pickle=False``, and every inconsistency raises :class:`~hub_datasets.errors.DatasetFormatError` naming
the file and the utterance.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .constants import MODALITIES, VIDEO
from .errors import DatasetFormatError, short_repr
from .mmsa import sha256_file
from .safe_pickle import TextBudget, safe_load_pickle
from .schema import DEFAULT_FEATURE_NAMES, MAX_ABS_FEATURE, CorpusSpec, CorpusSplit, first_bad_feature


__all__ = [
    "NAN_POLICIES",
    "SYNTHETIC_MARKER",
    "find_gcnet_corpus_dir",
    "gcnet_fingerprint",
    "read_gcnet",
    "read_synthetic_marker",
]

#: What to do with NaN/Inf feature values: ``"error"`` (default, names the file) or ``"zero"`` (replace by 0).
NAN_POLICIES = ("error", "zero")
#: File written next to the label pickle by :func:`hub_datasets.write_synthetic_corpus`.
SYNTHETIC_MARKER = "SYNTHETIC_CORPUS.json"

_SESSION_RE = re.compile(r"^Ses0([1-5])")


def find_gcnet_corpus_dir(spec: CorpusSpec, data_dir: str | os.PathLike) -> Path | None:
    """Locate the folder holding ``spec.label_pickle``: ``data_dir`` itself or ``data_dir/<spec.folder>``.

    Args:
        spec: The corpus.
        data_dir: The user's folder.

    Returns:
        The corpus folder, or ``None`` when neither holds the label pickle.
    """
    root = Path(data_dir).expanduser()
    for candidate in (root, root / spec.folder):
        if (candidate / spec.label_pickle).is_file():
            return candidate
    return None


def read_synthetic_marker(corpus_dir: Path) -> dict | None:
    """The generator parameters of a synthetic corpus written in GCNet/MMSA format, or ``None``.

    Args:
        corpus_dir: The corpus folder.

    Returns:
        The marker's JSON content, or ``None`` when the folder holds no marker.
    """
    marker = corpus_dir / SYNTHETIC_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{marker} is not valid JSON ({exc})") from None


def _resolve_feature_names(feature_names: dict[str, str] | None) -> dict[str, str]:
    names = dict(DEFAULT_FEATURE_NAMES)
    for key, value in (feature_names or {}).items():
        if key not in MODALITIES:
            raise ValueError(f"feature_names has unknown modality {short_repr(key)}; expected keys from {MODALITIES}")
        names[key] = str(value)
    return names


def _tree_signature(root: Path, digest) -> None:
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            digest.update(f"missing:{folder}\n".encode())
            continue
        lines = []
        for entry in entries:
            if entry.is_dir():
                lines.append(f"d:{entry.path}")
                stack.append(entry.path)
            else:
                st = entry.stat()
                lines.append(f"f:{entry.path}:{st.st_size}:{st.st_mtime_ns}")
        digest.update(("\n".join(lines) + "\n").encode())


def gcnet_fingerprint(spec: CorpusSpec, corpus_dir: Path, feature_names: dict[str, str] | None = None) -> str:
    """A fingerprint of every input file: the label pickle's SHA-256 and (name, size, mtime) of all feature files.

    Args:
        spec: The corpus.
        corpus_dir: The folder holding the label pickle.
        feature_names: Feature folder names per modality.

    Returns:
        A hex digest that changes whenever an input file is added, removed or rewritten.
    """
    names = _resolve_feature_names(feature_names)
    digest = hashlib.sha256()
    digest.update(f"pickle:{sha256_file(corpus_dir / spec.label_pickle)}\n".encode())
    marker = corpus_dir / SYNTHETIC_MARKER
    if marker.is_file():
        digest.update(f"marker:{sha256_file(marker)}\n".encode())
    for modality in MODALITIES:
        digest.update(f"modality:{modality}:{names[modality]}\n".encode())
        _tree_signature(corpus_dir / "features" / names[modality], digest)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- label pickles


def _as_list(value, where: str) -> list:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    raise DatasetFormatError(f"{where} should be a list, got {type(value).__name__}")


def _where(pickle_path: Path, field_name: str, vid: str) -> str:
    return f"{pickle_path}: {field_name}[{short_repr(vid)}]"


def _field(table, key: str, pickle_path: Path, field_name: str):
    if not isinstance(table, dict):
        raise DatasetFormatError(f"{pickle_path}: {field_name} should be a dict, got {type(table).__name__}")
    try:
        return table[key]
    except KeyError:
        raise DatasetFormatError(f"{pickle_path}: {field_name} has no entry for dialogue {short_repr(key)}") from None


def _id_list(value, pickle_path: Path, field_name: str, texts: TextBudget) -> list[str]:
    """The dialogue ids of ``trainVid`` / ``valVid`` / ``testVid`` (a list, tuple, set or 1-D array of ids)."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise DatasetFormatError(
            f"{pickle_path}: {field_name} should be a list of dialogue ids, got {type(value).__name__} "
            f"{short_repr(value, 60)}"
        )
    bad = [v for v in value if not isinstance(v, (str, bytes, np.str_))]
    if bad:
        raise DatasetFormatError(
            f"{pickle_path}: {field_name} should hold dialogue id strings, found {type(bad[0]).__name__} "
            f"{short_repr(bad[0], 60)}"
        )
    return texts.strings(sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value), field_name)


def _parse_label_pickle(spec: CorpusSpec, pickle_path: Path) -> dict[str, list[tuple]]:
    """``{natural split: [(dialog_id, uids, labels, speakers, transcripts, session), ...]}`` in sorted id order."""
    obj = safe_load_pickle(pickle_path)
    texts = TextBudget(pickle_path)  # every string copied out of the pickle is charged, shared ones per use
    expected = 6 if spec.family == "iemocap" else 7
    if not isinstance(obj, (list, tuple)) or len(obj) < expected:
        got = f"a {type(obj).__name__} of length {len(obj)}" if hasattr(obj, "__len__") else type(obj).__name__
        raise DatasetFormatError(
            f"{pickle_path}: expected a list of {expected} entries (videoIDs, videoLabels, videoSpeakers, "
            f"videoSentences, {'trainVid, testVid' if expected == 6 else 'trainVid, valVid, testVid'}), got {got}"
        )
    ids, labels, speakers, sentences = obj[0], obj[1], obj[2], obj[3]
    if spec.family == "iemocap":
        union = set(_id_list(obj[4], pickle_path, "trainVid", texts)) | set(
            _id_list(obj[5], pickle_path, "testVid", texts)
        )
        groups: dict[str, list[str]] = {}
        for vid in union:
            match = _SESSION_RE.match(str(vid))
            if match is None:
                raise DatasetFormatError(
                    f"{pickle_path}: dialogue id {short_repr(vid)} does not start with 'Ses0<session 1-5>' "
                    "(IEMOCAP ids look like 'Ses01F_impro01')"
                )
            groups.setdefault(f"session{match.group(1)}", []).append(str(vid))
        split_names = [f"session{s}" for s in range(1, 6)]
    else:
        groups = {}
        seen: dict[str, str] = {}
        for split, field_name, members in (
            ("train", "trainVid", obj[4]),
            ("validation", "valVid", obj[5]),
            ("test", "testVid", obj[6]),
        ):
            for vid in _id_list(members, pickle_path, field_name, texts):
                vid = str(vid)
                if vid in seen:
                    raise DatasetFormatError(
                        f"{pickle_path}: video {short_repr(vid)} is in both {seen[vid]} and {split}"
                    )
                seen[vid] = split
                groups.setdefault(split, []).append(vid)
        split_names = ["train", "validation", "test"]
    out: dict[str, list[tuple]] = {}
    num_classes = None if spec.label_names is None else len(spec.label_names)
    for split in split_names:
        rows = []
        for vid in sorted(groups.get(split, [])):
            uids = texts.strings(
                _as_list(_field(ids, vid, pickle_path, "videoIDs"), _where(pickle_path, "videoIDs", vid)),
                _where(pickle_path, "videoIDs", vid),
            )
            labs = _as_list(_field(labels, vid, pickle_path, "videoLabels"), _where(pickle_path, "videoLabels", vid))
            spk = texts.strings(
                _as_list(
                    _field(speakers, vid, pickle_path, "videoSpeakers"), _where(pickle_path, "videoSpeakers", vid)
                ),
                _where(pickle_path, "videoSpeakers", vid),
            )
            txt = texts.strings(
                _as_list(
                    _field(sentences, vid, pickle_path, "videoSentences"), _where(pickle_path, "videoSentences", vid)
                ),
                _where(pickle_path, "videoSentences", vid),
            )
            if not uids:
                raise DatasetFormatError(f"{pickle_path}: dialogue {short_repr(vid)} has no utterances in videoIDs")
            for name, values in (("videoLabels", labs), ("videoSpeakers", spk), ("videoSentences", txt)):
                if len(values) != len(uids):
                    raise DatasetFormatError(
                        f"{pickle_path}: {name}[{short_repr(vid)}] has {len(values)} entries but videoIDs[{short_repr(vid)}] has "
                        f"{len(uids)}"
                    )
            clean = []
            for k, value in enumerate(labs):
                if num_classes is not None:
                    ok = isinstance(value, (int, np.integer)) or (
                        isinstance(value, (float, np.floating)) and float(value).is_integer()
                    )
                    if not ok or not 0 <= int(value) < num_classes:
                        raise DatasetFormatError(
                            f"{pickle_path}: videoLabels[{short_repr(vid)}][{k}] = {short_repr(value)} is not a class id in "
                            f"0..{num_classes - 1} for {spec.name}"
                        )
                    clean.append(int(value))
                else:
                    try:
                        number = float(value)
                    except (TypeError, ValueError):
                        number = math.nan
                    if not math.isfinite(number) or not -3.0 <= number <= 3.0:
                        raise DatasetFormatError(
                            f"{pickle_path}: videoLabels[{short_repr(vid)}][{k}] = {short_repr(value)} is not a sentiment score in "
                            f"[-3, 3] for {spec.name}"
                        )
                    clean.append(number)
            if spec.family == "iemocap":
                bad = [s for s in spk if s not in ("F", "M")]
                if bad:
                    raise DatasetFormatError(
                        f"{pickle_path}: videoSpeakers[{short_repr(vid)}] holds {short_repr(bad[0])}; IEMOCAP speakers are 'F' or 'M'"
                    )
            session = int(vid[4]) if spec.family == "iemocap" else 0
            rows.append((vid, uids, clean, spk, txt, session))
        out[split] = rows
    return out


# --------------------------------------------------------------------------------------------- feature files


def _read_npy(path: str, uid: str) -> np.ndarray:
    """Read a ``.npy`` file after checking that its header agrees with the file's size (before allocating)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise DatasetFormatError(
                    f"{path} (utterance {short_repr(uid)}) is empty (0 bytes), not a .npy array; an interrupted copy? "
                    "Copy the file again"
                )
            try:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
            except (ValueError, EOFError) as exc:
                raise DatasetFormatError(
                    f"{path} (utterance {short_repr(uid)}) is not a numeric .npy array ({size} bytes; {exc})"
                ) from None
            if dtype.hasobject:
                raise DatasetFormatError(
                    f"{path} (utterance {short_repr(uid)}) is not a numeric .npy array: dtype {dtype} holds Python objects"
                )
            count = math.prod(shape)
            claimed = count * dtype.itemsize
            available = size - handle.tell()
            if claimed != available:
                raise DatasetFormatError(
                    f"{path} (utterance {short_repr(uid)}): its header announces shape {shape} of {dtype} ({claimed:,} bytes) "
                    f"but the file holds {available:,} bytes of data; the file is truncated or corrupt"
                )
            arr = np.fromfile(handle, dtype=dtype, count=count)
    except OSError as exc:
        raise DatasetFormatError(f"cannot read {path} (utterance {short_repr(uid)}): {exc}") from None
    return arr.reshape(shape[::-1]).transpose() if fortran_order else arr.reshape(shape)


def _load_npy(path: str, uid: str, reader: _FeatureReader | None = None) -> np.ndarray:
    arr = _read_npy(path, uid)
    if arr.dtype.kind not in "fiu":
        raise DatasetFormatError(
            f"{path} (utterance {short_repr(uid)}) holds dtype {arr.dtype}, expected floating point"
        )
    if arr.ndim == 0 or arr.ndim > 2:
        raise DatasetFormatError(
            f"{path} (utterance {short_repr(uid)}) has shape {arr.shape}; expected one vector [D] or frames [T, D]"
        )
    if reader is not None and reader.nan_policy == "zero" and arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            arr = np.where(bad, 0.0, arr).astype(arr.dtype)
            reader.nonfinite_replaced += int(bad.sum())
    return arr


def _rows(arr: np.ndarray) -> np.ndarray:
    return arr[None, :] if arr.ndim == 1 else arr


class _FeatureReader:
    """Reads one modality's ``features/<name>/`` folder into a flat ``[N, D]`` float32 matrix."""

    def __init__(self, folder: Path, modality: str, family: str, nan_policy: str) -> None:
        if not folder.is_dir():
            parent = folder.parent
            available = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
            raise DatasetFormatError(
                f"feature folder {folder} for {modality} does not exist (found {available or 'nothing'} in "
                f"{parent}); pass feature_names={{'{modality}': '<folder name>'}} if yours is named differently"
            )
        self.folder = folder
        self.modality = modality
        self.family = family
        self.nan_policy = nan_policy
        self.entries = {entry.name: entry.is_dir() for entry in os.scandir(folder)}
        self.dim: int | None = None
        self.first_file: str | None = None
        self.nonfinite_replaced = 0

    def _check_dim(self, arr: np.ndarray, path: str, uid: str) -> None:
        dim = int(arr.shape[-1])
        if self.dim is None:
            self.dim, self.first_file = dim, path
        elif dim != self.dim:
            raise DatasetFormatError(
                f"{path} (utterance {short_repr(uid)}) has {self.modality} dimension {dim}, but {self.first_file} has "
                f"{self.dim}; all files of one modality must share one dimension"
            )

    def _locate(self, uid: str, dialog: str) -> tuple[str, bool]:
        name = f"{uid}.npy"
        if name in self.entries and not self.entries[name]:
            return os.path.join(self.folder, name), False
        if self.entries.get(uid):
            return os.path.join(self.folder, uid), True
        raise DatasetFormatError(
            f"no {self.modality} feature for utterance {short_repr(uid)} of dialogue {short_repr(dialog)}: neither "
            f"{self.folder / name} nor a folder {self.folder / uid} exists"
        )

    def vector(self, uid: str, dialog: str, speaker: str) -> tuple[np.ndarray | None, str]:
        """The utterance vector (float64 mean over frames/faces) or ``None`` when empty, plus its source path."""
        path, is_dir = self._locate(uid, dialog)
        if not is_dir:
            arr = _rows(_load_npy(path, uid, self))
            self._check_dim(arr, path, uid)
            return (arr.mean(axis=0, dtype=np.float64) if arr.shape[0] else None), path
        files = sorted(e.name for e in os.scandir(path) if e.name.endswith(".npy") and e.is_file())
        if self.family == "iemocap" and self.modality == VIDEO:
            chosen = []
            for name in files:
                actor = name[:-4][-1:]
                if actor not in ("F", "M"):
                    raise DatasetFormatError(
                        f"cannot tell which actor {os.path.join(path, name)} (utterance {short_repr(uid)}) belongs to; "
                        "IEMOCAP face files are named compress_F.npy / compress_M.npy"
                    )
                if actor == speaker:
                    chosen.append(name)
            files = chosen
        if not files:
            return None, path
        blocks = []
        for name in files:
            file_path = os.path.join(path, name)
            arr = _rows(_load_npy(file_path, uid, self))
            self._check_dim(arr, file_path, uid)
            blocks.append(arr)
        stacked = np.concatenate(blocks, axis=0)
        return (stacked.mean(axis=0, dtype=np.float64) if stacked.shape[0] else None), path


def _read_modality(reader: _FeatureReader, utterances: list[tuple[str, str, str]], progress: bool):
    n = len(utterances)
    present = np.zeros(n, dtype=np.int8)
    sources: list[str] = [""] * n
    matrix: np.ndarray | None = None
    iterator = tqdm(utterances, desc=f"reading {reader.modality} features", unit="utt", disable=not progress)
    for i, (uid, dialog, speaker) in enumerate(iterator):
        vec, sources[i] = reader.vector(uid, dialog, speaker)
        if vec is None:
            continue
        present[i] = 1
        if matrix is None:  # earlier utterances were empty: their rows stay zero
            matrix = np.zeros((n, vec.shape[0]), dtype=np.float32)
        matrix[i] = vec
    if matrix is None:
        raise DatasetFormatError(
            f"every {reader.modality} feature under {reader.folder} is empty, so its dimension is unknown"
        )
    bad = ~np.isfinite(matrix).all(axis=1)  # with nan_policy="zero" the files' values were already replaced
    if bad.any():
        rows = np.flatnonzero(bad)
        listed = ", ".join(f"{sources[j]} (utterance {short_repr(utterances[j][0])})" for j in rows[:3])
        raise DatasetFormatError(
            f"{len(rows)} {reader.modality} feature(s) contain NaN/Inf values: {listed}"
            f"{' ...' if len(rows) > 3 else ''}. Fix the files or pass nan_policy='zero' to replace them by 0."
        )
    bad_value = first_bad_feature(matrix)
    if bad_value is not None:
        row, col, value = bad_value
        raise DatasetFormatError(
            f"{sources[row]} (utterance {short_repr(utterances[row][0])}): {reader.modality} feature {col} averages to "
            f"{value:.6g}, beyond the accepted magnitude {MAX_ABS_FEATURE:g}; the file is corrupt"
        )
    return matrix, present


def read_gcnet(
    spec: CorpusSpec,
    corpus_dir: Path,
    *,
    feature_names: dict[str, str] | None = None,
    nan_policy: str = "error",
    corpus_label: str | None = None,
    progress: bool = True,
) -> tuple[dict[str, CorpusSplit], dict]:
    """Read a GCNet-format corpus into flat splits.

    Args:
        spec: The corpus (:data:`hub_datasets.schema.CORPORA`).
        corpus_dir: The folder holding the label pickle and ``features/``.
        feature_names: Feature folder names per modality (default :data:`~hub_datasets.schema.DEFAULT_FEATURE_NAMES`).
        nan_policy: ``"error"`` or ``"zero"``.
        corpus_label: Value of the ``corpus`` column (defaults to ``spec.name``).
        progress: Show tqdm progress bars.

    Returns:
        ``({natural split: CorpusSplit}, info)``; IEMOCAP splits are ``session1..5`` (dialogues sorted by id,
        utterances in pickle order), CMU splits ``train/validation/test``. ``info`` holds the feature names,
        dims and the count of replaced non-finite values.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    names = _resolve_feature_names(feature_names)
    pickle_path = corpus_dir / spec.label_pickle
    if not pickle_path.is_file():
        raise DatasetFormatError(f"label pickle not found: {pickle_path}")
    parsed = _parse_label_pickle(spec, pickle_path)
    order = [(split, row) for split, rows in parsed.items() for row in rows]
    utterances = [(uid, row[0], spk) for _, row in order for uid, spk in zip(row[1], row[3], strict=True)]
    seen: set[str] = set()
    for uid, dialog, _ in utterances:
        if uid in seen:
            raise DatasetFormatError(
                f"{pickle_path}: utterance id {short_repr(uid)} (dialogue {short_repr(dialog)}) appears twice"
            )
        seen.add(uid)
    matrices, presents, replaced = {}, [], 0
    show = progress and len(utterances) >= 2000
    for modality in MODALITIES:
        reader = _FeatureReader(corpus_dir / "features" / names[modality], modality, spec.family, nan_policy)
        matrices[modality], present = _read_modality(reader, utterances, show)
        presents.append(present)
        replaced += reader.nonfinite_replaced
    present_all = np.stack(presents, axis=1)
    label_dtype = np.float64 if spec.label_names is None else np.int64
    splits: dict[str, CorpusSplit] = {}
    start = 0
    for split, rows in parsed.items():
        lengths = np.array([len(row[1]) for row in rows], dtype=np.int64)
        stop = start + int(lengths.sum())
        splits[split] = CorpusSplit(
            dialog_ids=[row[0] for row in rows],
            lengths=lengths,
            utterance_ids=[u for row in rows for u in row[1]],
            speakers=[s for row in rows for s in row[3]],
            transcripts=[t for row in rows for t in row[4]],
            labels=np.array([v for row in rows for v in row[2]], dtype=label_dtype),
            features={m: matrices[m][start:stop] for m in MODALITIES},
            present=present_all[start:stop],
            sessions=np.array([row[5] for row in rows], dtype=np.int32),
            source_split=split,
            corpus=corpus_label or spec.name,
        )
        start = stop
    info = {
        "feature_names": names,
        "dims": {m: int(matrices[m].shape[1]) for m in MODALITIES},
        "nonfinite_values_replaced": replaced,
    }
    return splits, info
