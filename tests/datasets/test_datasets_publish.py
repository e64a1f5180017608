"""Publishing: parquet repo + dataset card, loading it back, the IEMOCAP refusal, a push to a Hub stand-in."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml

from hub_datasets import (
    IemocapUploadRefusedError,
    add_missing_modality,
    dataset_provenance,
    load_dataset,
    publish_to_hub,
    write_parquet_repo,
)


def _same_rows(a, b):
    pa_, pb = a.with_format(None), b.with_format(None)
    assert list(pa_["dialog_id"]) == list(pb["dialog_id"])
    assert list(pa_["labels"]) == list(pb["labels"])
    assert list(pa_["speakers"]) == list(pb["speakers"])
    for column in ("audio", "text", "video", "modality_mask", "feature_present"):
        xa = a.with_format("numpy", columns=[column])[column]
        xb = b.with_format("numpy", columns=[column])[column]
        assert all(np.array_equal(x, y) for x, y in zip(xa, xb, strict=True)), column


def _front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_parquet_repo_round_trip_and_card(tmp_path):
    dsd = load_dataset("synthetic", "iemocap4", missing_rate=0.4, seed=1)  # a fold: regrouped into sessions
    repo = write_parquet_repo(dsd, tmp_path / "repo", repo_id="org/feats")
    assert sorted(p.name for p in (repo / "synthetic-iemocap4").glob("*.parquet")) == [
        f"session{s}-00000-of-00001.parquet" for s in range(1, 6)
    ]
    back = load_dataset(str(repo), "synthetic-iemocap4", missing_rate=0.4, seed=1, fold=5)
    for name in dsd:
        _same_rows(back[name], dsd[name])  # features, labels and (recomputed) masks identical
    prov = dataset_provenance(back["test"])
    assert prov["source"] == "parquet" and prov["synthetic"] and prov["label_names"] == ["hap", "sad", "neu", "ang"]
    mosi = load_dataset("synthetic", "mosi")
    write_parquet_repo(mosi, repo, repo_id="org/feats")
    meta = _front_matter(repo / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["synthetic-iemocap4", "synthetic-mosi"]
    assert "synthetic" in meta["tags"]
    card = (repo / "README.md").read_text(encoding="utf-8")
    for needle in (
        "## Schema",
        "`feature_present`",
        "| 3 | ang |",
        "leave-one-session-out",
        "0.7 really means 0.667",
        'protocol="subset"',
        "Licence:",
        "Synthetic data",
        'load_dataset("org/feats"',
    ):
        assert needle in card, needle
    _same_rows(load_dataset(str(repo), "synthetic-mosi")["test"], mosi["test"])


def test_iemocap_is_refused_without_opt_in(iemocap_corpus, tmp_path, cache_dir):
    dsd = load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
    with pytest.raises(IemocapUploadRefusedError, match="licence-restricted"):
        write_parquet_repo(dsd, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()

    class RecordingApi:
        """Records calls; publish_to_hub must refuse before calling anything."""

        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            return lambda *args, **kwargs: self.calls.append(name)

    api = RecordingApi()
    for kwargs in ({}, {"allow_iemocap": True}, {"private": True}):
        with pytest.raises(IemocapUploadRefusedError, match="allow_iemocap=True and private=True"):
            publish_to_hub(dsd, "org/iemocap", api=api, **kwargs)
    assert api.calls == []
    repo = write_parquet_repo(dsd, tmp_path / "repo", allow_iemocap=True)
    card = (repo / "README.md").read_text(encoding="utf-8")
    assert "USC SAIL" in card and "**private**" in card and "SYNTHETIC" not in card


def _hub_endpoint(monkeypatch, endpoint: str) -> None:
    """Point huggingface_hub and datasets at the stand-in (both read their endpoint once, at import)."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the stand-in has no Xet
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # tests run offline; this is 127.0.0.1
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", endpoint)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)


def test_publish_to_a_hub_stand_in(tmp_path, monkeypatch, iemocap_corpus, cache_dir):
    """``DatasetDict.push_to_hub`` and plain ``datasets.load_dataset`` against tests/hub_standin.py (the few Hub
    endpoints a push and a download use); not the real Hub."""
    standin = pytest.importorskip("hub_standin")  # tests/ is on sys.path (tests/conftest.py)
    import datasets
    from huggingface_hub import HfApi

    mosi = load_dataset("synthetic", "mosi", num_conversations=24, missing_rate=0.5, seed=3)
    six = load_dataset("synthetic", "iemocap6", num_conversations=15)
    with standin.hub_standin(tmp_path / "hub") as hub:
        _hub_endpoint(monkeypatch, hub.endpoint)
        api = HfApi(endpoint=hub.endpoint, token="test-token")
        publish_to_hub(mosi, "org/feats", api=api, private=True)
        publish_to_hub(six, "org/feats", api=api)
        files = set(api.list_repo_files("org/feats", repo_type="dataset"))
        assert {
            "README.md",
            "synthetic-mosi/comp_emotion.json",
            "synthetic-iemocap6/session5-00000-of-00001.parquet",
        } <= files
        assert any(f.startswith("synthetic-mosi/train-") and f.endswith(".parquet") for f in files), files
        assert api.repo_info("org/feats", repo_type="dataset").private
        card = hub.read_file("org/feats", "README.md", repo_type="dataset").decode("utf-8")
        meta = yaml.safe_load(card.split("---\n")[1])
        assert [c["config_name"] for c in meta["configs"]] == ["synthetic-iemocap6", "synthetic-mosi"]
        assert {i["config_name"] for i in meta["dataset_info"]} == {"synthetic-iemocap6", "synthetic-mosi"}
        info = next(i for i in meta["dataset_info"] if i["config_name"] == "synthetic-mosi")
        assert {s["name"]: s["num_examples"] for s in info["splits"]} == {n: len(d) for n, d in mosi.items()}
        assert "text-classification" in meta["task_categories"] and meta["license"] == "apache-2.0"
        assert "Licence:" in card and "add_missing_modality" in card
        # Plain datasets, no comp-emotion loader: then the datasets-native masks equal load_dataset's.
        plain = datasets.load_dataset("org/feats", "synthetic-mosi", cache_dir=str(tmp_path / "hf-cache"))
        masked = add_missing_modality(plain, missing_rate=0.5, seed=3)
        for name in mosi:
            assert masked[name]["dialog_id"] == mosi[name]["dialog_id"]
            assert masked[name].with_format(None)["modality_mask"] == mosi[name].with_format(None)["modality_mask"]
        # comp-emotion's own loader reads the pushed repo back (a local snapshot), rows and masks identical.
        local = api.snapshot_download("org/feats", repo_type="dataset", local_dir=str(tmp_path / "snapshot"))
        back = load_dataset(local, "synthetic-mosi", missing_rate=0.5, seed=3)
        for name in mosi:
            _same_rows(back[name], mosi[name])
        # IEMOCAP with the opt-in still refuses a repository that exists and is public.
        api.create_repo("org/public", repo_type="dataset", private=False)
        real = load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
        with pytest.raises(IemocapUploadRefusedError, match="public repo org/public"):
            publish_to_hub(real, "org/public", api=api, allow_iemocap=True, private=True)
        assert "README.md" not in set(api.list_repo_files("org/public", repo_type="dataset"))


def test_add_missing_modality_on_plain_parquet_equals_load_dataset(tmp_path):
    dsd = load_dataset("synthetic", "iemocap4", num_conversations=20, missing_rate=0.6, seed=11)
    repo = write_parquet_repo(dsd, tmp_path / "repo")
    files = {s: str(next((repo / "synthetic-iemocap4").glob(f"{s}-*.parquet"))) for s in ("session1", "session5")}
    plain = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    masked = add_missing_modality(plain, 0.6, seed=11)
    ours = load_dataset(str(repo), "synthetic-iemocap4", missing_rate=0.6, seed=11)
    for name in files:
        assert masked[name].with_format(None)["modality_mask"] == ours[name].with_format(None)["modality_mask"]
        assert masked[name].column_names == [*plain[name].column_names, "modality_mask"]
    train = add_missing_modality(plain["session1"], 0.6, seed=11, role="train", epoch=2)
    assert train.with_format(None)["modality_mask"] != masked["session1"].with_format(None)["modality_mask"]
    subset = add_missing_modality(plain, protocol="subset", modalities="tv")
    assert all(m == [0, 1, 1] for row in subset["session5"]["modality_mask"] for m in row)
    with pytest.raises(ValueError, match=r"missing_rate must be a number in \[0, 1\), got str '0.5'"):
        add_missing_modality(plain, "0.5")
    with pytest.raises(ValueError, match="neither 'utterance_keys' nor 'utterance_ids'"):
        add_missing_modality(plain["session1"].remove_columns(["utterance_ids"]), 0.5)
