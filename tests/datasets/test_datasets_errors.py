"""Bad input gets a clear error naming the file / field / value, never a deep traceback or silent garbage."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from hub_datasets import ComPDataCollator, DatasetFormatError, load_dataset


def _load_pickle(path):
    with open(path, "rb") as handle:  # our own fixture file: the default unpickler is fine here
        return pickle.load(handle)


def _dump(obj, path, protocol=2):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)


def test_missing_data_dir_and_label_pickle(tmp_path, iemocap_corpus, cache_dir):
    with pytest.raises(ValueError, match=r"needs data_dir=.*IEMOCAP_features_raw_4way.pkl"):
        load_dataset("iemocap4")
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load_dataset("iemocap4", data_dir=tmp_path / "nowhere")
    (iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl").unlink()
    with pytest.raises(DatasetFormatError, match=r"label pickle not found: no IEMOCAP_features_raw_4way\.pkl"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)


def test_missing_feature_file_names_the_file_and_utterance(iemocap_corpus, cache_dir):
    uid = iemocap_corpus["ids"]["Ses03F_impro01"][1]
    (iemocap_corpus["dir"] / "features" / "deberta-large-4-UTT" / f"{uid}.npy").unlink()
    with pytest.raises(DatasetFormatError, match=rf"no text feature for utterance '{uid}'.*{uid}\.npy"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    assert not any(p.name.startswith("iemocap4-") for p in cache_dir.glob("*")), "nothing cached on failure"


def test_missing_feature_folder_lists_what_exists(iemocap_corpus, cache_dir):
    shutil.rmtree(iemocap_corpus["dir"] / "features" / "manet_UTT")
    with pytest.raises(DatasetFormatError, match=r"feature folder .*manet_UTT for video does not exist"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)


def test_dimension_mismatch_names_both_files(mosi_corpus, cache_dir):
    uid = mosi_corpus["ids"]["vid05xC"][0]
    np.save(mosi_corpus["dir"] / "features" / "wav2vec-large-c-UTT" / f"{uid}.npy", np.zeros(3, np.float32))
    with pytest.raises(DatasetFormatError, match=rf"{uid}\.npy.*audio dimension 3, but .* has 5"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)


def test_nan_features_error_or_opt_in_zero(mosi_corpus, cache_dir):
    uid = mosi_corpus["ids"]["vid04xb"][1]
    path = mosi_corpus["dir"] / "features" / "deberta-large-4-UTT" / f"{uid}.npy"
    bad = np.ones((2, mosi_corpus["dims"][1]), np.float32)
    bad[1, 2] = np.nan
    np.save(path, bad)
    with pytest.raises(DatasetFormatError, match=rf"NaN/Inf.*{uid}\.npy.*nan_policy='zero'"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    dsd = load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir, nan_policy="zero")
    from hub_datasets import dataset_provenance

    assert dataset_provenance(dsd["validation"])["nonfinite_values_replaced"] == 1
    for row in dsd["validation"].with_format("numpy", columns=["text"]):
        assert np.isfinite(row["text"]).all()
    with pytest.raises(ValueError, match="nan_policy"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], nan_policy="ignore")


def test_object_arrays_in_npy_files_are_refused(mosi_corpus, cache_dir):
    uid = mosi_corpus["ids"]["vid00xA"][0]
    np.save(
        mosi_corpus["dir"] / "features" / "wav2vec-large-c-UTT" / f"{uid}.npy", np.array([{"x": 1}]), allow_pickle=True
    )
    with pytest.raises(DatasetFormatError, match=rf"{uid}\.npy.*not a numeric \.npy"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)


def test_labels_outside_the_corpus_range(iemocap_corpus, mosi_corpus, cache_dir):
    pkl = iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl"
    obj = _load_pickle(pkl)
    obj[1]["Ses02M_script02_1"][0] = 5
    _dump(obj, pkl)
    with pytest.raises(DatasetFormatError, match=r"videoLabels\['Ses02M_script02_1'\]\[0\] = 5 .* 0\.\.3"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    obj = _load_pickle(mosi_corpus["pickle"])
    obj[1]["vid01xb"][1] = np.float64(3.5)
    _dump(obj, mosi_corpus["pickle"], protocol=4)
    with pytest.raises(DatasetFormatError, match=r"videoLabels\['vid01xb'\]\[1\] = .*3\.5.*\[-3, 3\]"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)


def test_inconsistent_label_pickle(iemocap_corpus, cache_dir):
    pkl = iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl"
    obj = _load_pickle(pkl)
    obj[2]["Ses01F_impro01"] = obj[2]["Ses01F_impro01"][:-1]
    _dump(obj, pkl)
    with pytest.raises(DatasetFormatError, match=r"videoSpeakers\['Ses01F_impro01'\] has \d+ entries"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    _dump({"not": "a list"}, pkl)
    with pytest.raises(DatasetFormatError, match="expected a list of 6 entries"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)


def test_face_files_must_name_their_actor(iemocap_corpus, cache_dir):
    uid = iemocap_corpus["ids"]["Ses04F_impro01"][0]
    folder = iemocap_corpus["dir"] / "features" / "manet_UTT" / uid
    (folder / "compress_F.npy").rename(folder / "face.npy")
    with pytest.raises(DatasetFormatError, match=r"cannot tell which actor .*face\.npy"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)


def test_unknown_config_split_fold_and_arguments(iemocap_corpus, cache_dir):
    with pytest.raises(ValueError, match=r"unknown dataset 'iemocap5'"):
        load_dataset("iemocap5")
    with pytest.raises(ValueError, match="unknown synthetic config 'meld'"):
        load_dataset("synthetic", "meld")
    with pytest.raises(ValueError, match=r"unknown split 'dev'.*\['train', 'validation', 'test'\]"):
        load_dataset("synthetic", "mosi", split="dev")
    with pytest.raises(ValueError, match="fold must be 1..5"):
        load_dataset("synthetic", fold=6)
    with pytest.raises(ValueError, match="fold= applies to IEMOCAP only"):
        load_dataset("synthetic", "mosei", fold=1)
    with pytest.raises(ValueError, match="takes no config"):
        load_dataset("iemocap4", "iemocap6", data_dir=iemocap_corpus["dir"])
    with pytest.raises(TypeError, match="num_conversations"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], num_conversations=3)
    with pytest.raises(ValueError, match="protocol must be one of"):
        load_dataset("synthetic", protocol="random")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        load_dataset("synthetic", seed=-1)
    with pytest.raises(ValueError, match="validation_fraction"):
        load_dataset("synthetic", validation_fraction=1.0)


def test_collator_refuses_conversations_longer_than_max_utterances():
    ds = load_dataset("synthetic", "iemocap4", split="test", min_utterances=8, max_utterances=12)
    rows = [ds[i] for i in range(3)]
    longest = max(len(r["utterance_ids"]) for r in rows)
    collate = ComPDataCollator(max_utterances=longest - 1)
    name = next(r["dialog_id"] for r in rows if len(r["utterance_ids"]) == longest)
    with pytest.raises(
        ValueError, match=rf"conversation '{name}' has {longest} utterances, more than .*={longest - 1}"
    ):
        collate(rows)
    with pytest.raises(ValueError, match="conversation_index"):
        ComPDataCollator()([{k: v for k, v in rows[0].items() if k != "conversation_index"}])
    with pytest.raises(ValueError, match="max_utterances"):
        ComPDataCollator(max_utterances=0)
