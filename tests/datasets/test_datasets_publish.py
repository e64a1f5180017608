"""Publishing: parquet repo + dataset card, loading it back, the IEMOCAP refusal, a push to a Hub stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hub_datasets import (
    IemocapUploadRefusedError,
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


def test_publish_to_a_hub_stand_in(tmp_path, monkeypatch, iemocap_corpus, cache_dir):
    """A real ``huggingface_hub`` upload against tests/hub_standin.py (the few Hub endpoints a push and a
    download use); not the real Hub."""
    standin = pytest.importorskip("hub_standin")  # tests/ is on sys.path (tests/conftest.py)
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the stand-in has no Xet
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # tests run offline; this is 127.0.0.1
    mosi = load_dataset("synthetic", "mosi")
    six = load_dataset("synthetic", "iemocap6")
    with standin.hub_standin(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.endpoint, token="test-token")
        publish_to_hub(mosi, "org/feats", api=api, private=True)
        publish_to_hub(six, "org/feats", api=api, output_dir=tmp_path / "second")
        files = set(api.list_repo_files("org/feats", repo_type="dataset"))
        assert {
            "README.md",
            "synthetic-mosi/train-00000-of-00001.parquet",
            "synthetic-iemocap6/session5-00000-of-00001.parquet",
        } <= files
        assert api.repo_info("org/feats", repo_type="dataset").private
        local = api.snapshot_download("org/feats", repo_type="dataset", local_dir=str(tmp_path / "snapshot"))
        meta = _front_matter(Path(local) / "README.md")
        assert [c["config_name"] for c in meta["configs"]] == ["synthetic-iemocap6", "synthetic-mosi"]
        _same_rows(load_dataset(local, "synthetic-mosi")["validation"], mosi["validation"])
        # IEMOCAP with the opt-in still refuses a repository that exists and is public.
        api.create_repo("org/public", repo_type="dataset", private=False)
        real = load_dataset("iemocap4", data_dir=iemocap_corpus["dir"], cache_dir=cache_dir)
        with pytest.raises(IemocapUploadRefusedError, match="public repo org/public"):
            publish_to_hub(real, "org/public", api=api, allow_iemocap=True, private=True)
        assert "README.md" not in set(api.list_repo_files("org/public", repo_type="dataset"))
