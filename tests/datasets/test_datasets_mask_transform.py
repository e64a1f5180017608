"""The masks as a batch function (``.map(batched=True)``, ``with_transform``) and on streaming datasets: the same
masks as :func:`add_missing_modality`; and ``import hub_datasets`` where ``fcntl`` does not exist."""

from __future__ import annotations

import os
import subprocess
import sys

import datasets
import numpy as np
import pytest

from hub_datasets import MissingModalityTransform, add_missing_modality, load_dataset, write_parquet_repo


CONFIG = "synthetic-iemocap4"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dsd = load_dataset(
        "synthetic", "iemocap4", num_conversations=20, min_utterances=2, max_utterances=6, missing_face_fraction=0.3
    )
    return write_parquet_repo(dsd, tmp_path_factory.mktemp("masks") / "repo")


@pytest.fixture(scope="module")
def plain(repo):
    """The repo loaded by ``datasets`` alone (a fold is not needed: sessions play train/eval roles below)."""
    return datasets.load_dataset(str(repo), CONFIG)


def _masks_of(rows) -> list[list[list[int]]]:
    return [np.asarray(m, dtype=np.int64).reshape(-1, 3).tolist() for m in rows]


CONDITIONS = [
    {"missing_rate": 0.5, "seed": 3},
    {"missing_rate": 0.7, "seed": 0, "mask_absent_features": True},
    {"protocol": "subset", "modalities": "at", "seed": 1},
    {"missing_rate": 0.3, "seed": 2, "role": "train", "epoch": 4},
]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_batch_function_gives_the_masks_of_the_whole_dataset_form(plain, condition):
    split = plain["session2"]
    role = condition.get("role", "eval")
    kwargs = {k: v for k, v in condition.items() if k != "role"}
    reference = _masks_of(add_missing_modality(split, role=role, **kwargs).with_format(None)["modality_mask"])
    transform = MissingModalityTransform(role=role, **kwargs)
    for batch_size in (1, 3, 1000):
        mapped = split.map(transform, batched=True, batch_size=batch_size)
        assert _masks_of(mapped["modality_mask"]) == reference
    lazy = split.with_transform(transform)
    assert _masks_of(lazy[:]["modality_mask"]) == reference
    assert _masks_of([lazy[2]["modality_mask"]]) == [reference[2]]  # one row through the transform
    assert _masks_of([transform(split.with_format(None)[3])["modality_mask"]]) == [reference[3]]  # one example
    assert sum(np.asarray(m).size for m in reference) > 0


@pytest.mark.parametrize("condition", CONDITIONS[:3])
def test_streaming_datasets_get_the_same_masks(repo, plain, condition):
    streamed = datasets.load_dataset(str(repo), CONFIG, streaming=True)
    assert isinstance(streamed, datasets.IterableDatasetDict)
    masked = add_missing_modality(streamed, **condition)
    reference = add_missing_modality(plain, **condition)
    for name in ("session1", "session5"):
        got = [row["modality_mask"] for row in masked[name]]
        assert _masks_of(got) == _masks_of(reference[name].with_format(None)["modality_mask"])
    one = add_missing_modality(streamed["session3"], **condition)
    assert isinstance(one, datasets.IterableDataset)
    assert _masks_of([r["modality_mask"] for r in one]) == _masks_of(
        reference["session3"].with_format(None)["modality_mask"]
    )


def test_the_train_split_of_a_stream_gets_training_masks(repo, plain):
    files = [str(p) for p in sorted((repo / CONFIG).glob("session1-*.parquet"))]
    streamed = datasets.load_dataset("parquet", data_files={"train": files}, split="train", streaming=True)
    got = _masks_of([r["modality_mask"] for r in add_missing_modality(streamed, 0.5, seed=1)])
    train = _masks_of(add_missing_modality(plain["session1"], 0.5, seed=1, role="train")["modality_mask"])
    evaluation = _masks_of(add_missing_modality(plain["session1"], 0.5, seed=1, role="eval")["modality_mask"])
    assert got == train and got != evaluation


@pytest.mark.parametrize(
    ("kwargs", "batch", "match"),
    [
        ({"missing_rate": 1.5, "role": "eval"}, None, r"missing_rate"),
        ({"role": "validation"}, None, r"role must be 'train' or 'eval'"),
        ({"role": "eval", "epoch": 2}, None, r"do not depend on the epoch"),
        ({"role": "eval"}, {"dialog_id": ["a"]}, r"no 'utterance_ids' column"),
        ({"role": "eval"}, {"utterance_ids": [["a", 3]]}, r"must hold strings, found int 3"),
        ({"role": "eval", "mask_absent_features": True}, {"utterance_ids": [["a"]]}, r"needs the 'feature_present'"),
    ],
)
def test_bad_arguments_and_batches_are_named(kwargs, batch, match):
    with pytest.raises(ValueError, match=match):
        MissingModalityTransform(**kwargs)(batch or {"utterance_ids": [["x"]]})


def test_the_role_must_be_said():
    with pytest.raises(TypeError, match="role"):
        MissingModalityTransform(0.5)


def test_the_dataset_card_says_how_masks_are_added(repo):
    card = (repo / "README.md").read_text(encoding="utf-8")
    assert "has no `missing_rate` option" in card and "MissingModalityTransform" in card


def test_import_and_cache_work_without_fcntl(tmp_path):
    """Where ``fcntl`` does not exist (Windows), the package imports and the Arrow cache still locks and works."""
    code = (
        "import sys, warnings; sys.modules['fcntl'] = None; warnings.simplefilter('ignore')\n"
        "import hub_datasets\n"
        "from hub_datasets.synthetic import write_synthetic_corpus\n"
        f"root = write_synthetic_corpus({str(tmp_path / 'raw')!r}, 'mosi', num_conversations=6, min_utterances=2,"
        " max_utterances=3)\n"
        "for _ in range(2):\n"
        f"    dsd = hub_datasets.load_dataset('mosi', data_dir=root, cache_dir={str(tmp_path / 'cache')!r})\n"
        "print('splits', sorted(dsd))\n"
    )
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "splits ['test', 'train', 'validation']" in proc.stdout
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 1 and entries[0].startswith("mosi-")  # no lock or temporary left behind
