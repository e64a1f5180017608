"""Fixtures for the hub_datasets tests: tiny corpora written by hand in the exact GCNet and MMSA formats.

These writers deliberately do not use ``hub_datasets.synthetic`` so the readers are checked against an
independent rendering of the documented formats (docs/datasets.md). Every array is drawn from a seeded generator.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest


AUDIO_DIR, TEXT_DIR, VIDEO_DIR = "wav2vec-large-c-UTT", "deberta-large-4-UTT", "manet_UTT"


def _mean(arr: np.ndarray) -> np.ndarray:
    arr = arr[None, :] if arr.ndim == 1 else arr
    return arr.mean(axis=0, dtype=np.float64).astype(np.float32)


def write_iemocap(root: Path, *, dims=(6, 8, 10), seed=0, six_way=True, four_way=True) -> dict:
    """Write ``root/IEMOCAP`` with both label pickles; return what a reader must produce.

    Two dialogues per session, 3-5 utterances each; some audio files hold frames ``[T, D]``; every video
    folder holds ``compress_F.npy`` and ``compress_M.npy`` (the speaking actor's face is the expected one).
    """
    rng = np.random.default_rng(seed)
    corpus = root / "IEMOCAP"
    folders = {m: corpus / "features" / name for m, name in zip("atv", (AUDIO_DIR, TEXT_DIR, VIDEO_DIR))}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    ids, labels6, speakers, sentences, expected = {}, {}, {}, {}, {}
    for session in range(1, 6):
        for k, kind in enumerate(("impro01", "script02_1")):
            dialog = f"Ses0{session}{'FM'[k]}_{kind}"
            n = int(rng.integers(3, 6))
            spk = [str(s) for s in rng.choice(["F", "M"], size=n)]
            uids = [f"{dialog}_{s}{j:03d}" for j, s in enumerate(spk)]
            ids[dialog], speakers[dialog] = uids, spk
            labels6[dialog] = [int(x) for x in rng.integers(0, 6, size=n)]
            sentences[dialog] = [f"line {j} of {dialog}" for j in range(n)]
            exp = {"a": [], "t": [], "v": []}
            for j, uid in enumerate(uids):
                audio = rng.standard_normal((int(rng.integers(1, 4)), dims[0])).astype(np.float32)
                if j % 2:
                    audio = audio[0]  # a single vector [D]
                np.save(folders["a"] / f"{uid}.npy", audio)
                text = rng.standard_normal(dims[1]).astype(np.float32)
                np.save(folders["t"] / f"{uid}.npy", text)
                (folders["v"] / uid).mkdir()
                faces = {a: rng.standard_normal(dims[2]).astype(np.float32) for a in "FM"}
                for actor, face in faces.items():
                    np.save(folders["v"] / uid / f"compress_{actor}.npy", face)
                exp["a"].append(_mean(audio))
                exp["t"].append(text)
                exp["v"].append(faces[spk[j]])
            expected[dialog] = {m: np.stack(v) for m, v in exp.items()}
    train = {d for d in ids if d[4] != "5"}
    test = {d for d in ids if d[4] == "5"}
    if six_way:
        with open(corpus / "IEMOCAP_features_raw_6way.pkl", "wb") as handle:
            pickle.dump([ids, labels6, speakers, sentences, train, test], handle, protocol=2)
    # 4-way: exc (4) -> hap (0); frustrated (5) -> 2 (neu) here only to keep every utterance (values in range)
    labels4 = {d: [0 if x == 4 else (2 if x == 5 else x) for x in v] for d, v in labels6.items()}
    if four_way:
        with open(corpus / "IEMOCAP_features_raw_4way.pkl", "wb") as handle:
            pickle.dump([ids, labels4, speakers, sentences, train, test], handle, protocol=2)
    return {
        "dir": corpus,
        "ids": ids,
        "labels6": labels6,
        "labels4": labels4,
        "speakers": speakers,
        "sentences": sentences,
        "expected": expected,
        "dims": dims,
    }


def write_cmu(root: Path, name: str = "CMUMOSI", *, dims=(5, 7, 9), seed=1) -> dict:
    """Write a GCNet CMU corpus: numpy-typed pickle, face folders with several faces, one empty face folder."""
    rng = np.random.default_rng(seed)
    corpus = root / name
    folders = {m: corpus / "features" / d for m, d in zip("atv", (AUDIO_DIR, TEXT_DIR, VIDEO_DIR))}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    ids, labels, speakers, sentences, expected = {}, {}, {}, {}, {}
    split_of = {}
    for i in range(9):
        vid = f"vid{i:02d}x{'AbC'[i % 3]}"
        n = int(rng.integers(2, 5))
        uids = [f"{vid}_{k + 1}" for k in range(n)]
        ids[vid] = uids
        labels[vid] = [np.float64(x) for x in np.round(rng.uniform(-3, 3, size=n), 4)]
        speakers[vid] = [""] * n
        sentences[vid] = np.array([f"words {k} of {vid}" for k in range(n)])
        split_of[vid] = ("train", "train", "train", "train", "val", "val", "test", "test", "test")[i]
        exp = {"a": [], "t": [], "v": [], "present": []}
        for k, uid in enumerate(uids):
            a = rng.standard_normal(dims[0]).astype(np.float32)
            t = rng.standard_normal((2, dims[1])).astype(np.float32)
            np.save(folders["a"] / f"{uid}.npy", a)
            np.save(folders["t"] / f"{uid}.npy", t)
            (folders["v"] / uid).mkdir()
            if i == 2 and k == 0:  # no face found: an empty folder
                faces = []
            else:
                faces = [rng.standard_normal(dims[2]).astype(np.float32) for _ in range(int(rng.integers(1, 4)))]
            for f, face in enumerate(faces):
                np.save(folders["v"] / uid / f"{f:03d}.npy", face)
            exp["a"].append(a)
            exp["t"].append(_mean(t))
            exp["v"].append(_mean(np.stack(faces)) if faces else np.zeros(dims[2], np.float32))
            exp["present"].append([1, 1, 1 if faces else 0])
        expected[vid] = {m: np.stack(v) for m, v in exp.items()}
    groups = {s: {v for v, g in split_of.items() if g == s} for s in ("train", "val", "test")}
    obj = [ids, labels, speakers, sentences, groups["train"], groups["val"], groups["test"]]
    pickle_name = f"{name}_features_raw_2way.pkl"
    with open(corpus / pickle_name, "wb") as handle:
        pickle.dump(obj, handle, protocol=4)
    return {
        "dir": corpus,
        "ids": ids,
        "labels": labels,
        "sentences": sentences,
        "expected": expected,
        "split_of": split_of,
        "pickle": corpus / pickle_name,
        "dims": dims,
    }


def write_mmsa(folder: Path, variant: str = "unaligned", *, dims=(4, 3, 5), seed=2) -> dict:
    """Write an MMSA pickle with shuffled clip order, length-masked frames and ``-inf`` in audio."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data, expected = {}, {}
    t_len, a_len, v_len = 6, 7, 5
    for source, videos in (("train", ["vA", "vB"]), ("valid", ["vC"]), ("test", ["vD", "vE"])):
        clips = [(v, c) for v in videos for c in (1, 2, 9, 10)]
        order = rng.permutation(len(clips))
        clips = [clips[i] for i in order]
        n = len(clips)
        text = rng.standard_normal((n, t_len, dims[0])).astype(np.float32)
        audio = rng.standard_normal((n, a_len, dims[1])).astype(np.float32)
        vision = rng.standard_normal((n, v_len, dims[2])).astype(np.float32)
        text_len = rng.integers(1, t_len + 1, size=n)
        a_lens = rng.integers(1, a_len + 1, size=n)
        v_lens = rng.integers(0, v_len + 1, size=n)
        v_lens[0] = 0  # one clip without any valid frame
        text_bert = np.zeros((n, 3, t_len), dtype=np.float32)
        text_bert[:, 1, :] = np.arange(t_len)[None, :] < text_len[:, None]
        audio[0, 0, 0] = -np.inf  # inside the valid frames: replaced by 0 before the mean
        audio[1, a_len - 1, :] = -np.inf  # may be padding
        labels = np.round(rng.uniform(-3, 3, size=n), 3).astype(np.float32)
        data[source] = {
            "id": np.array([f"{v}$_${c}" for v, c in clips], dtype=object),
            "raw_text": np.array([f"clip {c} of {v}" for v, c in clips], dtype=object),
            "text": text,
            "text_bert": text_bert,
            "audio": audio,
            "vision": vision,
            "audio_lengths": a_lens,
            "vision_lengths": v_lens,
            "regression_labels": labels,
            "annotations": np.array(["x"] * n, dtype=object),
        }
        clean_audio = np.where(np.isneginf(audio), 0.0, audio)
        for i, (v, c) in enumerate(clips):

            def masked_mean(arr, length):
                if length == 0:
                    return np.zeros(arr.shape[1], np.float32)
                return arr[:length].astype(np.float64).mean(axis=0).astype(np.float32)

            tmask = text_bert[i, 1] > 0
            expected[f"{v}_{c}"] = {
                "text": text[i][tmask].astype(np.float64).mean(axis=0).astype(np.float32),
                "audio": masked_mean(clean_audio[i], a_lens[i]),
                "video": masked_mean(vision[i], v_lens[i]),
                "label": float(labels[i]),
                "transcript": f"clip {c} of {v}",
                "present": [1, 1, 1 if v_lens[i] else 0],
                "split": source,
            }
    path = folder / f"{variant}_50.pkl"
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=4)
    return {"path": path, "expected": expected, "dims": dims}


@pytest.fixture
def iemocap_corpus(tmp_path):
    """A hand-written GCNet IEMOCAP corpus (both label pickles) under ``tmp_path/raw/IEMOCAP``."""
    return write_iemocap(tmp_path / "raw")


@pytest.fixture
def mosi_corpus(tmp_path):
    """A hand-written GCNet CMU-MOSI corpus under ``tmp_path/raw/CMUMOSI``."""
    return write_cmu(tmp_path / "raw")


@pytest.fixture
def mmsa_corpus(tmp_path):
    """A hand-written MMSA ``unaligned_50.pkl`` under ``tmp_path/mmsa/MOSI/Processed``."""
    return write_mmsa(tmp_path / "mmsa" / "MOSI" / "Processed")


@pytest.fixture
def cache_dir(tmp_path):
    """A fresh Arrow cache root for the test."""
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _no_progress_bars():
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    yield
    if enabled:
        datasets.enable_progress_bars()


@pytest.fixture
def writers():
    """The fixture writers, for tests that need a variant of a corpus (``writers.iemocap(root, ...)``)."""
    from types import SimpleNamespace

    return SimpleNamespace(iemocap=write_iemocap, cmu=write_cmu, mmsa=write_mmsa)
