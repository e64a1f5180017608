"""GCNet-format reader: exact round trips, speaker streams, folds, CMU numpy pickles, the Arrow cache."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hub_datasets
from hub_datasets import dataset_provenance, load_dataset


def _rows(ds):
    """Rows with exact stored values (python format) plus numpy features."""
    plain = ds.with_format(None)
    arrays = ds.with_format("numpy", columns=["audio", "text", "video", "feature_present", "modality_mask"])
    return [{**plain[i], **arrays[i]} for i in range(len(ds))]


def test_iemocap_sessions_round_trip_exactly(iemocap_corpus, cache_dir):
    dsd = load_dataset("iemocap6", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    assert list(dsd) == [f"session{s}" for s in range(1, 6)]
    assert dsd["session1"].features["labels"].feature.names == ["hap", "sad", "neu", "ang", "exc", "fru"]
    seen = set()
    for name, ds in dsd.items():
        for row in _rows(ds):
            dialog = row["dialog_id"]
            seen.add(dialog)
            assert name == f"session{dialog[4]}" and row["session"] == int(dialog[4])
            assert row["utterance_ids"] == iemocap_corpus["ids"][dialog]
            assert row["labels"] == iemocap_corpus["labels6"][dialog]
            assert row["speakers"] == iemocap_corpus["speakers"][dialog]
            assert row["transcripts"] == iemocap_corpus["sentences"][dialog]
            assert row["num_utterances"] == len(row["utterance_ids"])
            expected = iemocap_corpus["expected"][dialog]
            np.testing.assert_array_equal(row["audio"], expected["a"])  # frames averaged, vectors kept
            np.testing.assert_array_equal(row["text"], expected["t"])
            np.testing.assert_array_equal(row["video"], expected["v"])  # the speaking actor's face
            assert row["audio"].dtype == np.float32
            assert (row["feature_present"] == 1).all()
            assert (row["modality_mask"] == 1).all()  # missing_rate 0
    assert seen == set(iemocap_corpus["ids"])
    prov = dataset_provenance(dsd["session3"])
    assert prov["corpus"] == "iemocap6" and not prov["synthetic"] and prov["source"] == "gcnet"
    assert prov["dims"] == {"audio": 6, "text": 8, "video": 10}
    assert prov["max_utterances"] == 150 and prov["fold"] is None


def test_iemocap4_and_6_share_the_feature_tree(iemocap_corpus, cache_dir):
    four = load_dataset("iemocap4", data_dir=iemocap_corpus["dir"].parent, cache_dir=cache_dir)  # root also works
    assert four["session2"].features["labels"].feature.names == ["hap", "sad", "neu", "ang"]
    row = four["session2"].with_format(None)[0]
    assert row["labels"] == iemocap_corpus["labels4"][row["dialog_id"]]
    assert hub_datasets.model_config_kwargs(four["session2"])["num_labels"] == 4


def test_iemocap_fold_splits_and_recorded_validation(iemocap_corpus, cache_dir):
    dsd = load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], fold=2, cache_dir=cache_dir, seed=3)
    assert list(dsd) == ["train", "validation", "test"]
    ids = {name: set(ds.with_format(None)["dialog_id"]) for name, ds in dsd.items()}
    assert ids["test"] == {d for d in iemocap_corpus["ids"] if d[4] == "2"}
    assert ids["train"].isdisjoint(ids["validation"])
    assert ids["train"] | ids["validation"] == {d for d in iemocap_corpus["ids"] if d[4] != "2"}
    assert len(ids["validation"]) == 4  # one of the two dialogues of each training session
    for name, ds in dsd.items():
        prov = dataset_provenance(ds)
        assert prov["split"] == name and prov["fold"] == 2 and str(ds.split) == name
        assert sorted(prov["validation_dialogs"]) == sorted(ids["validation"])
        assert prov["validation_seed"] == 3
        assert list(ds.with_format(None)["conversation_index"]) == list(range(len(ds)))
    again = load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], fold=2, cache_dir=cache_dir, seed=3)
    assert set(again["validation"].with_format(None)["dialog_id"]) == ids["validation"]
    test_session = load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], split="test", fold=2, cache_dir=cache_dir)
    assert set(test_session.with_format(None)["dialog_id"]) == ids["test"]


def test_cmu_numpy_typed_pickle_round_trip(mosi_corpus, cache_dir):
    dsd = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert list(dsd) == ["train", "validation", "test"]
    names = {"train": "train", "validation": "val", "test": "test"}
    for name, ds in dsd.items():
        for row in _rows(ds):
            vid = row["dialog_id"]
            assert mosi_corpus["split_of"][vid] == names[name]
            assert row["utterance_ids"] == mosi_corpus["ids"][vid]
            assert row["labels"] == [float(x) for x in mosi_corpus["labels"][vid]]  # float64, exact
            assert row["transcripts"] == list(mosi_corpus["sentences"][vid])
            assert row["speakers"] == [""] * len(row["utterance_ids"])
            exp = mosi_corpus["expected"][vid]
            np.testing.assert_array_equal(row["audio"], exp["a"])
            np.testing.assert_array_equal(row["text"], exp["t"])
            np.testing.assert_array_equal(row["video"], exp["v"])  # faces averaged; empty folder -> zeros
            np.testing.assert_array_equal(row["feature_present"], exp["present"])
    prov = dataset_provenance(dsd["train"])
    assert prov["task"] == "regression" and prov["max_utterances"] == 65 and prov["label_names"] is None


def test_absent_faces_can_be_masked(mosi_corpus, cache_dir):
    dsd = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir, mask_absent_features=True)
    row = _rows(dsd["train"].filter(lambda r: r["dialog_id"].startswith("vid02")))[0]
    assert row["modality_mask"][0].tolist() == [1, 1, 0]
    assert dataset_provenance(dsd["train"])["mask_absent_features"] is True


def test_cache_is_reused_and_invalidated_when_a_file_changes(mosi_corpus, cache_dir):
    first = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert dataset_provenance(first["train"])["cache"]["hit"] is False
    second = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert dataset_provenance(second["train"])["cache"]["hit"] is True
    assert second["train"].cache_files, "a cached split is memory-mapped from the cache"
    uid = mosi_corpus["ids"]["vid00xA"][0]
    path = mosi_corpus["dir"] / "features" / "wav2vec-large-c-UTT" / f"{uid}.npy"
    np.save(path, np.full(mosi_corpus["dims"][0], 7.0, dtype=np.float32))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    third = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert dataset_provenance(third["train"])["cache"]["hit"] is False
    row = third["train"].with_format("numpy", columns=["audio"])[0]
    assert (row["audio"][0] == 7.0).all()


def test_interrupted_preparation_never_looks_complete(mosi_corpus, cache_dir, monkeypatch):
    import hub_datasets.cache as cache_module

    def boom(*args, **kwargs):
        raise KeyboardInterrupt("simulated interruption while finishing the cache")

    monkeypatch.setattr(cache_module, "_write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    leftovers = list(cache_dir.iterdir())
    assert leftovers == [], f"an interrupted preparation left {leftovers}"
    monkeypatch.undo()
    # A process killed mid-write leaves a temporary folder; a half-copied entry may sit under the final name.
    dead = cache_dir / ".tmp-0123456789abcdef-999999999-deadbeef"
    dead.mkdir(parents=True)
    (dead / "junk.arrow").write_bytes(b"partial")
    ds = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert dataset_provenance(ds["train"])["cache"]["hit"] is False
    entry = next(p for p in cache_dir.iterdir() if p.name.startswith("mosi-"))
    (entry / "comp_cache.json").unlink()  # now incomplete: must be prepared again, not loaded
    again = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert dataset_provenance(again["train"])["cache"]["hit"] is False
    assert (
        dataset_provenance(load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)["train"])["cache"][
            "hit"
        ]
        is True
    )
    assert dead.exists()  # the key differs from this corpus's key: not ours to remove


def test_stale_temporary_of_a_dead_process_is_removed(mosi_corpus, cache_dir):
    load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    entry = next(p for p in cache_dir.iterdir() if p.name.startswith("mosi-"))
    key = entry.name.split("-", 1)[1]
    stale = cache_dir / f".tmp-{key}-999999999-cafecafe"
    stale.mkdir()
    shutil.rmtree(entry)
    load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert not stale.exists()


def test_gcnet_is_preferred_and_mmsa_selectable(mosi_corpus, writers, cache_dir):
    writers.mmsa(mosi_corpus["dir"])  # both formats in one folder
    auto = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert dataset_provenance(auto["train"])["source"] == "gcnet"
    mmsa = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir, source_format="mmsa")
    assert dataset_provenance(mmsa["train"])["source"] == "mmsa"
    assert dataset_provenance(mmsa["train"])["dims"] == {"audio": 3, "text": 4, "video": 5}
