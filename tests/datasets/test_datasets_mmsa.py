"""MMSA reader: clip grouping and order, length-masked means, -inf handling, checksums, variant choice."""

from __future__ import annotations

import numpy as np
import pytest

from hub_datasets import ChecksumMismatchError, DatasetFormatError, dataset_provenance, load_dataset
from hub_datasets.mmsa import MMSA_SHA256, sha256_file


def test_mmsa_round_trip(mmsa_corpus, cache_dir):
    dsd = load_dataset("mosi", data_dir=mmsa_corpus["path"].parent.parent.parent, cache_dir=cache_dir)
    names = {"train": "train", "validation": "valid", "test": "test"}
    seen = set()
    for name, ds in dsd.items():
        plain = ds.with_format(None)
        arrays = ds.with_format("numpy", columns=["audio", "text", "video", "feature_present"])
        for i in range(len(ds)):
            row, arr = plain[i], arrays[i]
            clips = [int(u.rsplit("_", 1)[1]) for u in row["utterance_ids"]]
            assert clips == sorted(clips) == [1, 2, 9, 10], "clips ordered numerically, not as strings"
            for k, uid in enumerate(row["utterance_ids"]):
                exp = mmsa_corpus["expected"][uid]
                seen.add(uid)
                assert exp["split"] == names[name]
                assert row["labels"][k] == exp["label"]
                assert row["transcripts"][k] == exp["transcript"]
                np.testing.assert_array_equal(arr["text"][k], exp["text"])
                np.testing.assert_array_equal(arr["audio"][k], exp["audio"])
                np.testing.assert_array_equal(arr["video"][k], exp["video"])
                assert arr["feature_present"][k].tolist() == exp["present"]
    assert seen == set(mmsa_corpus["expected"])
    prov = dataset_provenance(dsd["train"])
    assert prov["source"] == "mmsa" and prov["audio_neg_inf_replaced"] >= 1
    assert prov["dims"] == {"audio": 3, "text": 4, "video": 5}


def test_checksum_verification(mmsa_corpus, mosi_corpus, cache_dir):
    folder = mmsa_corpus["path"].parent
    with pytest.raises(
        ChecksumMismatchError, match=rf"unaligned_50\.pkl: SHA-256 is .*expected {MMSA_SHA256[('mosi', 'unaligned')]}"
    ):
        load_dataset("mosi", data_dir=folder, verify_checksums=True, cache_dir=cache_dir)
    digest = sha256_file(mmsa_corpus["path"])
    ds = load_dataset("mosi", data_dir=folder, expected_sha256=digest, cache_dir=cache_dir)
    assert len(ds["train"]) == 2
    with pytest.raises(ValueError, match="GCNet files have no published digests"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], verify_checksums=True)


def test_both_variants_need_an_explicit_choice(mmsa_corpus, writers, cache_dir):
    folder = mmsa_corpus["path"].parent
    writers.mmsa(folder, "aligned", dims=(4, 3, 2), seed=9)
    with pytest.raises(ValueError, match="mmsa_variant='aligned' or 'unaligned'"):
        load_dataset("mosi", data_dir=folder, cache_dir=cache_dir)
    aligned = load_dataset("mosi", data_dir=folder, mmsa_variant="aligned", cache_dir=cache_dir)
    assert dataset_provenance(aligned["test"])["dims"]["video"] == 2


def test_nan_in_mmsa_names_the_clip(tmp_path, writers, cache_dir):
    import pickle

    info = writers.mmsa(tmp_path / "m")
    with open(info["path"], "rb") as handle:  # our own fixture file
        data = pickle.load(handle)
    data["test"]["vision"][3, 0, 1] = np.nan
    data["test"]["vision_lengths"][3] = 5
    with open(info["path"], "wb") as handle:
        pickle.dump(data, handle, protocol=4)
    clip = data["test"]["id"][3]
    with pytest.raises(DatasetFormatError, match=rf"video features of 1 clip.*{clip.replace('$', '[$]')}"):
        load_dataset("mosi", data_dir=tmp_path / "m", cache_dir=cache_dir)
    ok = load_dataset("mosi", data_dir=tmp_path / "m", cache_dir=cache_dir, nan_policy="zero")
    assert dataset_provenance(ok["test"])["nonfinite_values_replaced"] == 1
    row = ok["test"].with_format(None)
    uid = clip.replace("$_$", "_")
    position = next((i, r["utterance_ids"].index(uid)) for i, r in enumerate(row) if uid in r["utterance_ids"])
    video = ok["test"].with_format("numpy", columns=["video"])[position[0]]["video"][position[1]]
    np.testing.assert_allclose(video[1], data["test"]["vision"][3, 1:, 1].sum() / 5, rtol=1e-6)  # NaN frame -> 0


def test_mmsa_structure_errors(tmp_path, cache_dir):
    import pickle

    folder = tmp_path / "bad"
    folder.mkdir()
    with open(folder / "unaligned_50.pkl", "wb") as handle:
        pickle.dump({"train": {}, "valid": {}}, handle)
    with pytest.raises(DatasetFormatError, match="expected a dict with keys 'train', 'valid', 'test'"):
        load_dataset("mosi", data_dir=folder, cache_dir=cache_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match=r"no CMUMOSEI_features_raw_2way\.pkl .* nor MMSA aligned_50\.pkl"):
        load_dataset("mosei", data_dir=tmp_path / "empty", cache_dir=cache_dir)
