"""The synthetic corpus: determinism, the planted imbalanced signal, labelling, and the real-format writers."""

from __future__ import annotations

import numpy as np
import pytest

from hub_datasets import dataset_provenance, generate_synthetic_corpus, load_dataset, write_synthetic_corpus


def _flat(dsd, splits, column):
    parts = []
    for name in splits:
        ds = dsd[name]
        if column == "labels":
            parts.extend(np.asarray(v) for v in ds.with_format(None)["labels"])
        else:
            parts.extend(ds.with_format("numpy", columns=[column])[column])
    return np.concatenate(parts)


def test_generation_is_deterministic_by_seed():
    a = generate_synthetic_corpus("iemocap6", seed=4)
    b = generate_synthetic_corpus("iemocap6", seed=4)
    c = generate_synthetic_corpus("iemocap6", seed=5)
    for name in a.splits:
        for m in ("audio", "text", "video"):
            assert a.splits[name].features[m].tobytes() == b.splits[name].features[m].tobytes()
        assert a.splits[name].labels.tolist() == b.splits[name].labels.tolist()
        assert a.splits[name].utterance_ids == b.splits[name].utterance_ids
    assert any(
        a.splits[n].features["text"].shape != c.splits[n].features["text"].shape
        or not np.array_equal(a.splits[n].features["text"], c.splits[n].features["text"])
        for n in a.splits
    )


def test_default_corpus_is_small_and_says_synthetic_everywhere():
    dsd = load_dataset("synthetic")  # iemocap4, fold 5
    prov = dataset_provenance(dsd["train"])
    assert prov["synthetic"] and prov["display_name"].startswith("synthetic ")
    assert prov["corpus_label"] == "synthetic-iemocap4" and prov["dims"] == {"audio": 32, "text": 64, "video": 64}
    assert sum(len(ds) for ds in dsd.values()) == 120
    assert prov["max_utterances"] <= 20
    for ds in dsd.values():
        plain = ds.with_format(None)
        assert set(plain["corpus"]) == {"synthetic-iemocap4"}
        assert all("synth" in d for d in plain["dialog_id"])
        assert all("synthetic" in t for row in plain["transcripts"] for t in row)
        assert all(5 <= n <= 20 for n in plain["num_utterances"])
    assert "synthetic" in dsd["test"].info.description


def test_labels_persist_within_conversations():
    corpus = generate_synthetic_corpus("iemocap4", num_conversations=300, label_persistence=0.75, seed=2)
    same = total = 0
    for split in corpus.splits.values():
        start = 0
        for n in split.lengths:
            labels = split.labels[start : start + n]
            same += int((labels[1:] == labels[:-1]).sum())
            total += n - 1
            start += n
    # P(next == previous) = persistence + (1 - persistence) / classes = 0.8125
    assert abs(same / total - 0.8125) < 0.03


def test_planted_signal_is_modality_imbalanced_and_fusion_helps():
    from sklearn.linear_model import LogisticRegression

    dsd = load_dataset("synthetic", "iemocap4", fold=5)
    train, test = ["train", "validation"], ["test"]
    y_train, y_test = _flat(dsd, train, "labels"), _flat(dsd, test, "labels")
    accuracy = {}
    for combo in (("audio",), ("text",), ("video",), ("audio", "text", "video")):
        x_train = np.concatenate([_flat(dsd, train, m) for m in combo], axis=1)
        x_test = np.concatenate([_flat(dsd, test, m) for m in combo], axis=1)
        clf = LogisticRegression(C=0.01, max_iter=2000).fit(x_train, y_train)
        accuracy["+".join(combo)] = float((clf.predict(x_test) == y_test).mean())
    chance = 0.25
    assert accuracy["text"] > accuracy["audio"] > accuracy["video"] > chance + 0.1, accuracy
    assert accuracy["audio+text+video"] > accuracy["text"] + 0.03, accuracy


def test_regression_signal_and_label_range():
    from sklearn.linear_model import Ridge

    dsd = load_dataset("synthetic", "mosi")
    y_train, y_test = _flat(dsd, ["train"], "labels"), _flat(dsd, ["test"], "labels")
    assert y_train.min() >= -3 and y_train.max() <= 3
    assert np.allclose(y_train * 3, np.round(y_train * 3))  # thirds, like three annotators' means
    corr = {}
    for combo in (("audio",), ("text",), ("video",), ("audio", "text", "video")):
        x_train = np.concatenate([_flat(dsd, ["train"], m) for m in combo], axis=1)
        x_test = np.concatenate([_flat(dsd, ["test"], m) for m in combo], axis=1)
        pred = Ridge(alpha=30.0).fit(x_train, y_train).predict(x_test)
        corr["+".join(combo)] = float(np.corrcoef(pred, y_test)[0, 1])
    assert corr["text"] > corr["audio"] > corr["video"] > 0.1, corr
    assert corr["audio+text+video"] > corr["text"], corr


@pytest.mark.parametrize("config", ["iemocap6", "mosei"])
def test_gcnet_writer_round_trips_through_the_real_reader(tmp_path, config):
    kwargs = {"num_conversations": 15, "dims": {"audio": 3, "text": 4, "video": 5}, "missing_face_fraction": 0.2}
    corpus = generate_synthetic_corpus(config, **kwargs, seed=8)
    folder = write_synthetic_corpus(tmp_path / "raw", config, format="gcnet", **kwargs, seed=8)
    dsd = load_dataset(config, data_dir=folder, cache_dir=tmp_path / "cache")
    assert dataset_provenance(next(iter(dsd.values())))["corpus_label"] == f"synthetic-{config}"
    for name, split in corpus.splits.items():
        ds = dsd[name]
        plain = ds.with_format(None)
        assert list(plain["dialog_id"]) == split.dialog_ids
        assert sum(plain["utterance_ids"], []) == split.utterance_ids
        assert sum(plain["speakers"], []) == split.speakers
        assert sum(plain["labels"], []) == split.labels.tolist()
        for m in ("audio", "text", "video"):
            np.testing.assert_array_equal(np.concatenate(list(ds.with_format("numpy")[m])), split.features[m])
        np.testing.assert_array_equal(np.concatenate(list(ds.with_format("numpy")["feature_present"])), split.present)


def test_mmsa_writer_round_trips(tmp_path):
    kwargs = {"num_conversations": 12, "dims": {"audio": 3, "text": 4, "video": 2}, "missing_face_fraction": 0.2}
    corpus = generate_synthetic_corpus("mosi", **kwargs)
    folder = write_synthetic_corpus(tmp_path, "mosi", format="mmsa", mmsa_variant="aligned", **kwargs)
    assert folder.name == "Processed" and (folder / "aligned_50.pkl").is_file()
    dsd = load_dataset("mosi", data_dir=tmp_path / "MOSI", cache_dir=tmp_path / "cache")
    assert dataset_provenance(dsd["test"])["synthetic"]
    for name, split in corpus.splits.items():
        plain = dsd[name].with_format(None)
        assert sum(plain["utterance_ids"], []) == split.utterance_ids
        assert sum(plain["labels"], []) == split.labels.tolist()
        for m in ("audio", "text", "video"):
            np.testing.assert_array_equal(np.concatenate(list(dsd[name].with_format("numpy")[m])), split.features[m])


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    import hub_datasets.synthetic as synthetic

    write_synthetic_corpus(tmp_path, "mosi", num_conversations=6)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic_corpus(tmp_path, "mosi", num_conversations=6)

    def crash(corpus, folder, **kwargs):
        (folder / "features").mkdir()
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_gcnet", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_synthetic_corpus(tmp_path / "other", "iemocap4")
    assert list((tmp_path / "other").iterdir()) == []


def test_exact_total_utterances():
    corpus = generate_synthetic_corpus(
        "mosei", num_conversations=40, min_utterances=1, max_utterances=9, total_utterances=200
    )
    assert sum(s.num_utterances for s in corpus.splits.values()) == 200
    assert all(1 <= n <= 9 for s in corpus.splits.values() for n in s.lengths)
    with pytest.raises(ValueError, match="cannot be reached"):
        generate_synthetic_corpus("mosei", num_conversations=10, max_utterances=5, total_utterances=60)
