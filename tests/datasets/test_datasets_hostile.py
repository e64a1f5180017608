"""Hostile and malformed inputs: each gets a one-line error naming the file, field or value."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hub_datasets import DatasetFormatError, load_dataset, write_parquet_repo


def _load_pickle(path):
    with open(path, "rb") as handle:  # our own fixture file: the default unpickler is fine here
        return pickle.load(handle)


def _dump(obj, path, protocol=4):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=protocol)


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------------------------- GCNet


def test_empty_and_oversized_npy_files_name_the_file(mosi_corpus, cache_dir):
    uid = mosi_corpus["ids"]["vid01xb"][0]
    path = mosi_corpus["dir"] / "features" / "wav2vec-large-c-UTT" / f"{uid}.npy"
    path.write_bytes(b"")  # an interrupted copy
    with pytest.raises(DatasetFormatError, match=rf"{uid}\.npy \(utterance '{uid}'\) is empty \(0 bytes\)") as info:
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    _one_line(info)
    # A valid header announcing 745 GiB of float32 followed by a few bytes: refused before allocating.
    header = {"descr": "<f4", "fortran_order": False, "shape": (200_000_000_000,)}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 16)
    with pytest.raises(DatasetFormatError, match=rf"{uid}\.npy.*announces shape \(200000000000,\).*holds 16 bytes"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    np.save(path, np.arange(6, dtype=np.float32).reshape(2, 3)[:, :2].T)  # Fortran-ordered data still reads
    with pytest.raises(DatasetFormatError, match="audio dimension 2, but"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (4, 7, r"trainVid should be a list of dialogue ids, got int 7"),
        (5, None, r"valVid should be a list of dialogue ids, got NoneType None"),
        (6, [3], r"testVid should hold dialogue id strings, found int 3"),
    ],
)
def test_gcnet_split_lists_of_the_wrong_type(mosi_corpus, cache_dir, index, value, message):
    obj = _load_pickle(mosi_corpus["pickle"])
    obj[index] = value
    _dump(obj, mosi_corpus["pickle"])
    with pytest.raises(DatasetFormatError, match=rf"CMUMOSI_features_raw_2way\.pkl: {message}") as info:
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    _one_line(info)


def test_iemocap_train_ids_none(iemocap_corpus, cache_dir):
    pkl = iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl"
    obj = _load_pickle(pkl)
    obj[4] = None
    _dump(obj, pkl)
    with pytest.raises(DatasetFormatError, match=r"IEMOCAP_features_raw_4way\.pkl: trainVid should be a list"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fold": 1.0}, r"fold must be 1\.\.5 \(an integer.*got 1\.0"),
        ({"fold": "1"}, r"fold must be 1\.\.5 \(an integer.*got '1'"),
        ({"validation_fraction": "x"}, r"validation_fraction must be a number in \(0, 1\), got 'x'"),
        ({"missing_rate": "0.5"}, r"missing_rate must be a number in \[0, 1\), got str '0\.5'"),
        ({"missing_rate": False}, r"missing_rate must be a number in \[0, 1\), got bool False"),
        ({"validation_seed": 1.5}, r"validation_seed must be an integer, got 1\.5"),
    ],
)
def test_loader_arguments_of_the_wrong_type(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("synthetic", "iemocap4", num_conversations=10, **kwargs)


def test_data_dir_of_the_wrong_type():
    with pytest.raises(ValueError, match=r"data_dir must be a folder path .*got int 123"):
        load_dataset("iemocap4", data_dir=123)


def test_features_out_of_range_name_the_file_and_position(mosi_corpus, cache_dir):
    uid = mosi_corpus["ids"]["vid06xA"][1]
    path = mosi_corpus["dir"] / "features" / "wav2vec-large-c-UTT" / f"{uid}.npy"
    bad = np.zeros(mosi_corpus["dims"][0], np.float32)
    bad[3] = 1e30
    np.save(path, bad)
    with pytest.raises(DatasetFormatError, match=rf"{uid}\.npy \(utterance '{uid}'\): audio feature 3 .*1e\+30"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    bad[3] = np.inf
    np.save(path, bad)
    with pytest.raises(DatasetFormatError, match=rf"NaN/Inf.*{uid}\.npy"):
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)


def test_fractional_class_labels_are_refused(iemocap_corpus, cache_dir):
    pkl = iemocap_corpus["dir"] / "IEMOCAP_features_raw_4way.pkl"
    obj = _load_pickle(pkl)
    obj[1]["Ses01F_impro01"][1] = 1.5
    _dump(obj, pkl, protocol=2)
    with pytest.raises(DatasetFormatError, match=r"videoLabels\['Ses01F_impro01'\]\[1\] = 1\.5 is not a class id"):
        load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)


# --------------------------------------------------------------------------------------------- MMSA


def _mmsa_with(mmsa_corpus, edit):
    data = _load_pickle(mmsa_corpus["path"])
    edit(data["train"])
    _dump(data, mmsa_corpus["path"])
    return mmsa_corpus["path"].parent


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p.update(id=p["id"][:-1]),
            r"\['train'\]: 'id' has 7 entries, but 'regression_labels', 'raw_text', .* have 8",
        ),
        (lambda p: p.update(text_bert=p["text_bert"][:-1]), r"'text_bert' has 7 entries, but 'id', .* have 8"),
        (
            lambda p: p.update(regression_labels=np.array([str(x) for x in p["regression_labels"]])),
            r"\['regression_labels'\] holds <U\d+ values such as '.*', expected numbers",
        ),
        (
            lambda p: p.update(audio_lengths=[str(x) for x in p["audio_lengths"]]),
            r"\['audio_lengths'\]\[0\] = '\d+' is not a number; expected integer frame counts",
        ),
        (
            lambda p: p.update(vision_lengths=np.array([3, "x", 2, 1, 1, 1, 1, 1], dtype=object)),
            r"\['vision_lengths'\]\[1\] = 'x' is not a number",
        ),
        (lambda p: p["audio_lengths"].__setitem__(2, -4), r"\['audio_lengths'\]\[2\] = -4 is negative"),
        (
            lambda p: p["audio"].__setitem__((0, 0, 1), 1e30),
            r"audio feature 1 of clip '.*' averages to [\d.]+e\+\d\d over its valid frames",
        ),
    ],
)
def test_mmsa_inconsistent_fields(mmsa_corpus, cache_dir, edit, message):
    folder = _mmsa_with(mmsa_corpus, edit)
    with pytest.raises(DatasetFormatError, match=rf"unaligned_50\.pkl.*{message}") as info:
        load_dataset("mosi", data_dir=folder, cache_dir=cache_dir)
    _one_line(info)


# --------------------------------------------------------------------------------------------- parquet


def _parquet_repo(tmp_path, config="iemocap4", **kwargs):
    dsd = load_dataset("synthetic", config, num_conversations=40, min_utterances=8, max_utterances=10, **kwargs)
    repo = write_parquet_repo(dsd, tmp_path / "repo")
    return repo, max((repo / f"synthetic-{config}").glob("*.parquet"), key=lambda p: p.stat().st_size)


def _rewrite(parquet_path, edit):
    import pyarrow.parquet as pq

    table = pq.read_table(parquet_path)
    rows = table.to_pylist()
    edit(rows)
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), parquet_path)


def test_parquet_row_with_disagreeing_lengths(tmp_path, cache_dir):
    repo, path = _parquet_repo(tmp_path)

    def edit(rows):
        row = rows[0]
        row["utterance_ids"] = row["utterance_ids"][:5]
        row["labels"] = row["labels"][:4]
        row["audio"] = row["audio"][:6]

    _rewrite(path, edit)
    with pytest.raises(
        DatasetFormatError, match=r"row 0 \(dialog_id '.*'\): labels has 4 entries but utterance_ids has 5"
    ):
        load_dataset(str(repo), "synthetic-iemocap4")


def test_parquet_label_outside_the_classes_is_caught_at_load(tmp_path):
    repo, path = _parquet_repo(tmp_path)
    _rewrite(path, lambda rows: rows[2]["labels"].__setitem__(1, 9))
    with pytest.raises(DatasetFormatError, match=r"row 2 .* utterance 1: label 9 is not a class id in 0\.\.3"):
        load_dataset(str(repo), "synthetic-iemocap4")


def test_parquet_nan_regression_label_and_huge_feature(tmp_path):
    repo, path = _parquet_repo(tmp_path, "mosi")
    _rewrite(path, lambda rows: rows[1]["labels"].__setitem__(0, float("nan")))
    with pytest.raises(DatasetFormatError, match=r"row 1 .* utterance 0: label nan is not a sentiment score"):
        load_dataset(str(repo), "synthetic-mosi")
    repo, path = _parquet_repo(tmp_path / "again", "mosi")
    _rewrite(path, lambda rows: rows[3]["video"][2].__setitem__(5, 1e30))
    with pytest.raises(DatasetFormatError, match=r"row 3 .* utterance 2: video feature 5 is 1e\+30"):
        load_dataset(str(repo), "synthetic-mosi")


# --------------------------------------------------------------------------------------------- cache


def test_a_live_writers_temporary_folder_is_kept_whatever_its_name(mosi_corpus, cache_dir):
    """Liveness comes from the temporary folder's flock, not from a PID (which another namespace cannot see)."""
    load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    entry = next(p for p in cache_dir.iterdir() if p.name.startswith("mosi-"))
    key = entry.name.split("-", 1)[1]
    live = cache_dir / f".tmp-{key}-1-livewriter"  # PID 1: 'alive' here, but nothing to do with the writer
    live.mkdir()
    from filelock import FileLock

    writer = FileLock(str(live.with_name(live.name + ".lock")), timeout=0)
    writer.acquire()  # the writer, busy
    dead = cache_dir / f".tmp-{key}-999999999-gone"
    dead.mkdir()
    import shutil

    shutil.rmtree(entry)
    try:
        load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
        assert live.exists(), "a live writer's folder was removed"
        assert not dead.exists(), "an abandoned folder was kept"
    finally:
        writer.release()  # the writer ends (a killed process releases its lock the same way)
    shutil.rmtree(next(p for p in cache_dir.iterdir() if p.name.startswith("mosi-")))
    load_dataset("mosi", data_dir=mosi_corpus["dir"], cache_dir=cache_dir)
    assert not live.exists()
    assert [p.name for p in cache_dir.iterdir() if p.name.startswith(".tmp-")] == []
