"""Reader for the MMSA feature pickles ``aligned_50.pkl`` / ``unaligned_50.pkl``.

A pickle is ``{"train" | "valid" | "test": {"id", "raw_text", "text", "text_bert", "audio", "vision",
"audio_lengths", "vision_lengths", "regression_labels", ...}}``. Utterance vectors are means over the valid
(length-masked) frames; ``-inf`` in ``audio`` is replaced by 0 as MMSA's own loader does; clips
(``"<video>$_$<clip>"``) are grouped by video into conversations ordered by clip index, and the utterance id
becomes ``"<video>_<clip>"`` (the GCNet spelling, so an utterance gets the same mask from either backend).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .constants import AUDIO, MODALITIES, TEXT, VIDEO
from .errors import ChecksumMismatchError, DatasetFormatError, short_repr
from .safe_pickle import TextBudget, safe_load_pickle
from .schema import MAX_ABS_FEATURE, CorpusSpec, CorpusSplit, first_bad_feature


__all__ = ["MMSA_FILES", "MMSA_SHA256", "find_mmsa_files", "mmsa_fingerprint", "read_mmsa", "sha256_file"]

#: File name of each MMSA variant.
MMSA_FILES = {"aligned": "aligned_50.pkl", "unaligned": "unaligned_50.pkl"}
#: SHA-256 digests published in MMSA's README for its preprocessed releases.
MMSA_SHA256 = {
    ("mosi", "unaligned"): "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
    ("mosi", "aligned"): "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
    ("mosei", "unaligned"): "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
    ("mosei", "aligned"): "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
}
_SPLITS = (("train", "train"), ("valid", "validation"), ("test", "test"))
_CHUNK = 512


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks.

    Args:
        path: The file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_mmsa_files(spec: CorpusSpec, data_dir: str | os.PathLike) -> dict[str, Path]:
    """MMSA pickles of a corpus under ``data_dir`` (itself, ``Processed/``, ``<MOSI|MOSEI>/Processed/``).

    Args:
        spec: ``mosi`` or ``mosei``.
        data_dir: The user's folder.

    Returns:
        ``{"aligned" | "unaligned": path}`` for the files found in the first folder that holds any.
    """
    root = Path(data_dir).expanduser()
    upper = spec.name.upper()
    for folder in (root, root / "Processed", root / upper / "Processed", root / upper):
        found = {variant: folder / name for variant, name in MMSA_FILES.items() if (folder / name).is_file()}
        if found:
            return found
    return {}


def mmsa_fingerprint(path: Path) -> str:
    """A cheap fingerprint of an MMSA pickle: path, size and modification time.

    Args:
        path: The pickle.

    Returns:
        A hex digest.
    """
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()


def verify_mmsa_checksum(spec: CorpusSpec, variant: str, path: Path, expected: str | None = None) -> str:
    """Compare a pickle's SHA-256 with the published digest (or ``expected``).

    Args:
        spec: ``mosi`` or ``mosei``.
        variant: ``"aligned"`` or ``"unaligned"``.
        path: The pickle.
        expected: A digest to use instead of the published one.

    Returns:
        The file's digest.

    Raises:
        ChecksumMismatchError: If the digests differ.
    """
    want = (expected or MMSA_SHA256.get((spec.name, variant), "")).lower()
    if not want:
        raise ValueError(f"no published SHA-256 for {spec.name} {variant}; pass expected_sha256=...")
    got = sha256_file(path)
    if got != want:
        raise ChecksumMismatchError(
            f"{path}: SHA-256 is {got}, expected {want} (MMSA's published digest for {spec.name} {variant}); "
            "the file is corrupt, truncated or a different release"
        )
    return got


def _frames_mean(frames: np.ndarray, valid: np.ndarray, replace_nonfinite: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean over valid frames (float64 accumulation; padded frames are ignored whatever they hold).

    Returns float32 ``[N, D]`` means, ``present`` ``[N]`` (1 where a clip has a valid frame) and the number of
    non-finite values inside valid frames that were replaced by 0 (only with ``replace_nonfinite``; otherwise
    they propagate into the mean, where the caller reports them).
    """
    n, _, d = frames.shape
    out = np.zeros((n, d), dtype=np.float32)
    counts = valid.sum(axis=1)
    replaced = 0
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        block = np.where(valid[start:stop, :, None], frames[start:stop].astype(np.float64), 0.0)
        if replace_nonfinite:
            bad = ~np.isfinite(block)
            replaced += int(bad.sum())
            block[bad] = 0.0
        total = block.sum(axis=1)
        c = counts[start:stop]
        out[start:stop] = np.where(c[:, None] > 0, total / np.maximum(c, 1)[:, None], 0.0)
    return out, (counts > 0).astype(np.int8), replaced


def _lengths_mask(part: dict, key: str, num_frames: int, n: int, where: str) -> np.ndarray:
    if part.get(key) is None:
        return np.ones((n, num_frames), dtype=bool)
    lengths = _numbers(part, key, where, count=n, integer=True)
    negative = np.flatnonzero(lengths < 0)
    if negative.size:
        raise DatasetFormatError(
            f"{where}[{key!r}][{negative[0]}] = {lengths[negative[0]]} is negative; expected a frame count in "
            f"0..{num_frames}"
        )
    lengths = np.minimum(lengths, num_frames)
    return np.arange(num_frames)[None, :] < lengths[:, None]


#: Per-clip fields of an MMSA split: each has one entry (or row) per clip.
_PER_CLIP_FIELDS = (
    "id",
    "regression_labels",
    "raw_text",
    "text",
    "text_bert",
    "audio",
    "vision",
    "audio_lengths",
    "vision_lengths",
)


def _entry_count(value) -> int | None:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else None
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


def _check_clip_counts(part: dict, where: str) -> None:
    """All per-clip fields must have the same number of clips; blame the field(s) that disagree with the rest."""
    counts = {key: _entry_count(part[key]) for key in _PER_CLIP_FIELDS if part.get(key) is not None}
    known = {key: count for key, count in counts.items() if count is not None}
    if len(set(known.values())) <= 1:
        return
    tally: dict[int, list[str]] = {}
    for key, count in known.items():
        tally.setdefault(count, []).append(key)
    majority = max(tally, key=lambda c: (len(tally[c]), "id" in tally[c]))
    odd = [key for key in known if known[key] != majority]
    agreeing = ", ".join(repr(k) for k in tally[majority])
    details = "; ".join(f"{key!r} has {known[key]}" for key in odd)
    raise DatasetFormatError(
        f"{where}: {details} entries, but {agreeing} {'has' if len(tally[majority]) == 1 else 'have'} {majority} "
        "(one per clip); the pickle is inconsistent"
    )


def _numbers(part: dict, key: str, where: str, *, count: int, integer: bool) -> np.ndarray:
    """A flat numeric per-clip field (``int64`` frame counts or ``float64`` labels) with a one-line error."""
    raw = part[key]
    expected = "integer frame counts" if integer else "numbers"
    if isinstance(raw, (list, tuple)):  # checked before numpy copies it (a list of strings would widen to text)
        for position, value in enumerate(raw):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise DatasetFormatError(
                    f"{where}[{key!r}][{position}] = {short_repr(value)} is not a number; expected {expected}"
                )
        if any(isinstance(value, int) and not -(2**62) < value < 2**62 for value in raw):
            raise DatasetFormatError(f"{where}[{key!r}] holds an integer too large for {expected}")
    elif not isinstance(raw, np.ndarray):
        raise DatasetFormatError(f"{where}[{key!r}] should be an array of {expected}, got {type(raw).__name__}")
    arr = np.asarray(raw).reshape(-1)
    if arr.shape[0] != count:
        raise DatasetFormatError(f"{where}[{key!r}] has {arr.shape[0]} entries, expected {count} (one per clip)")
    if arr.dtype == object:
        for position, value in enumerate(arr.tolist()):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise DatasetFormatError(
                    f"{where}[{key!r}][{position}] = {short_repr(value)} is not a number; expected {expected}"
                )
    elif arr.dtype.kind not in "iuf":
        first = arr[0].item() if arr.size else None
        raise DatasetFormatError(
            f"{where}[{key!r}] holds {arr.dtype} values such as {short_repr(first)}, expected {expected}"
        )
    values = arr.astype(np.float64)
    if integer:
        broken = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if broken.size:
            raise DatasetFormatError(
                f"{where}[{key!r}][{broken[0]}] = {short_repr(arr[broken[0]].item())} is not a whole frame count"
            )
        return values.astype(np.int64)
    return values


def _array(part: dict, key: str, where: str, ndim: int | None = None) -> np.ndarray:
    if key not in part:
        raise DatasetFormatError(f"{where} has no {key!r} array (keys: {short_repr(sorted(map(str, part)), 200)})")
    arr = part[key]
    if not isinstance(arr, np.ndarray):
        raise DatasetFormatError(f"{where}[{key!r}] should be a numpy array, got {type(arr).__name__}")
    if ndim is not None and arr.ndim != ndim:
        raise DatasetFormatError(f"{where}[{key!r}] has shape {arr.shape}, expected {ndim} dimensions")
    return arr


def read_mmsa(
    spec: CorpusSpec,
    path: Path,
    *,
    nan_policy: str = "error",
    corpus_label: str | None = None,
) -> tuple[dict[str, CorpusSplit], dict]:
    """Read an MMSA pickle into flat ``train/validation/test`` splits.

    Args:
        spec: ``mosi`` or ``mosei``.
        path: ``aligned_50.pkl`` or ``unaligned_50.pkl``.
        nan_policy: ``"error"`` (default) or ``"zero"`` for NaN/Inf other than ``-inf`` in ``audio``.
        corpus_label: Value of the ``corpus`` column (defaults to ``spec.name``).

    Returns:
        ``({split: CorpusSplit}, info)`` with dims and the counts of replaced values.
    """
    data = safe_load_pickle(path)
    if not isinstance(data, dict) or not all(key in data for key, _ in _SPLITS):
        keys = short_repr(sorted(map(str, data)), 200) if isinstance(data, dict) else type(data).__name__
        raise DatasetFormatError(f"{path}: expected a dict with keys 'train', 'valid', 'test', got {keys}")
    splits: dict[str, CorpusSplit] = {}
    dims: dict[str, int] = {}
    neg_inf_replaced = 0
    nonfinite_replaced = 0
    seen: dict[str, str] = {}
    texts = TextBudget(path)  # every string copied out of the pickle is charged, shared ones per use
    for source, name in _SPLITS:
        part = data[source]
        where = f"{path}[{source!r}]"
        if not isinstance(part, dict):
            raise DatasetFormatError(f"{where} should be a dict of arrays, got {type(part).__name__}")
        _check_clip_counts(part, where)
        if "id" not in part:
            raise DatasetFormatError(f"{where} has no 'id' array (keys: {short_repr(sorted(map(str, part)), 200)})")
        ids = texts.strings(part["id"], f"{where}['id']")
        n = len(ids)
        labels = _numbers(part, "regression_labels", where, count=n, integer=False)
        bad = np.flatnonzero(~np.isfinite(labels) | (np.abs(labels) > 3.0))
        if bad.size:
            raise DatasetFormatError(
                f"{where}['regression_labels'][{bad[0]}] = {labels[bad[0]]!r} (id {short_repr(ids[bad[0]])}) is not a "
                "sentiment score in [-3, 3]"
            )
        raw_text = part.get("raw_text")
        transcripts = texts.strings(raw_text, f"{where}['raw_text']") if raw_text is not None else [""] * n
        if len(transcripts) != n:
            raise DatasetFormatError(f"{where}['raw_text'] has {len(transcripts)} entries, expected {n}")
        arrays = {
            TEXT: _array(part, "text", where, 3),
            AUDIO: _array(part, "audio", where, 3),
            VIDEO: _array(part, "vision", where, 3),
        }
        for modality, arr in arrays.items():
            if arr.shape[0] != n:
                raise DatasetFormatError(f"{where}: {modality} has {arr.shape[0]} rows, expected {n}")
            if arr.dtype.kind != "f":
                raise DatasetFormatError(f"{where}: {modality} has dtype {arr.dtype}, expected floating point")
            if modality in dims and dims[modality] != arr.shape[2]:
                raise DatasetFormatError(
                    f"{where}: {modality} dimension {arr.shape[2]} differs from {dims[modality]} in another split"
                )
            dims[modality] = int(arr.shape[2])
        audio = arrays[AUDIO]
        neg = np.isneginf(audio)
        if neg.any():
            if not audio.flags.writeable:
                audio = arrays[AUDIO] = audio.copy()
            neg_inf_replaced += int(neg.sum())
            audio[neg] = 0.0
        text_bert = part.get("text_bert")
        text = arrays[TEXT]
        if text_bert is not None and not isinstance(text_bert, np.ndarray):
            raise DatasetFormatError(f"{where}['text_bert'] should be a numpy array, got {type(text_bert).__name__}")
        if text_bert is not None and text_bert.ndim == 3 and text_bert.shape[1:] == (3, text.shape[1]):
            text_valid = text_bert[:, 1, :] > 0
        else:
            text_valid = np.abs(text).sum(axis=2) > 0
        valid = {
            TEXT: text_valid,
            AUDIO: _lengths_mask(part, "audio_lengths", audio.shape[1], n, where),
            VIDEO: _lengths_mask(part, "vision_lengths", arrays[VIDEO].shape[1], n, where),
        }
        vectors, present = {}, []
        for modality in MODALITIES:
            vec, pres, replaced = _frames_mean(arrays[modality], valid[modality], nan_policy == "zero")
            nonfinite_replaced += replaced
            finite = np.isfinite(vec).all(axis=1)
            if not finite.all():
                rows = np.flatnonzero(~finite)
                raise DatasetFormatError(
                    f"{where}: {modality} features of {len(rows)} clip(s) contain NaN/Inf in valid frames, first "
                    f"id {short_repr(ids[rows[0]])}; pass nan_policy='zero' to replace those values by 0"
                )
            bad_value = first_bad_feature(vec)
            if bad_value is not None:
                row, col, value = bad_value
                raise DatasetFormatError(
                    f"{where}: {modality} feature {col} of clip {short_repr(ids[row])} averages to {value:.6g} over its valid "
                    f"frames, beyond the accepted magnitude {MAX_ABS_FEATURE:g}; the pickle is corrupt"
                )
            vectors[modality] = vec
            present.append(pres)
        groups: dict[str, list[tuple]] = {}
        for i, clip_id in enumerate(ids):
            if "$_$" not in clip_id:
                raise DatasetFormatError(f"{where}['id'][{i}] = {short_repr(clip_id)} is not '<video>$_$<clip>'")
            video, clip = clip_id.split("$_$", 1)
            uid = f"{video}_{clip}"
            if uid in seen:
                raise DatasetFormatError(
                    f"{path}: clip {short_repr(clip_id)} appears in both {seen[uid]} and {source}"
                )
            seen[uid] = source
            order = (0, int(clip), "") if clip.isascii() and clip.isdigit() and len(clip) < 19 else (1, 0, clip)
            groups.setdefault(video, []).append((order, i, uid))
        index, dialog_ids, lengths, uids = [], [], [], []
        for video in sorted(groups):
            members = sorted(groups[video])
            dialog_ids.append(video)
            lengths.append(len(members))
            index.extend(i for _, i, _ in members)
            uids.extend(uid for _, _, uid in members)
        index_arr = np.array(index, dtype=np.int64)
        present_all = np.stack(present, axis=1)
        splits[name] = CorpusSplit(
            dialog_ids=dialog_ids,
            lengths=np.array(lengths, dtype=np.int64),
            utterance_ids=uids,
            speakers=[""] * n,
            transcripts=[transcripts[i] for i in index],
            labels=labels[index_arr],
            features={m: vectors[m][index_arr] for m in MODALITIES},
            present=present_all[index_arr],
            sessions=np.zeros(len(dialog_ids), dtype=np.int32),
            source_split=source,
            corpus=corpus_label or spec.name,
        )
    info = {
        "dims": dims,
        "audio_neg_inf_replaced": neg_inf_replaced,
        "nonfinite_values_replaced": nonfinite_replaced,
        "mmsa_file": path.name,
    }
    return splits, info
