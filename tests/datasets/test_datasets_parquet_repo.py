"""Parquet repos missing columns or holding nulls, and IEMOCAP-shaped repos used by the recipes."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hub_datasets import DatasetFormatError, load_dataset, write_parquet_repo


CONFIG = "synthetic-iemocap4"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dsd = load_dataset("synthetic", "iemocap4", num_conversations=20, min_utterances=3, max_utterances=5)
    return write_parquet_repo(dsd, tmp_path_factory.mktemp("parquet") / "repo")


def _copy(repo, tmp_path, edit):
    """A copy of the repo with ``edit(table) -> table`` applied to every parquet file."""
    target = tmp_path / "edited"
    shutil.copytree(repo, target)
    for path in sorted((target / CONFIG).glob("*.parquet")):
        pq.write_table(edit(pq.read_table(path)), path)
    return target


def _drop(column):
    return lambda table: table.drop_columns([column]) if column in table.column_names else table


@pytest.mark.parametrize("column", ["num_utterances", "speakers", "transcripts", "feature_present", "session"])
def test_optional_columns_missing_from_the_files_are_rebuilt(repo, tmp_path, column):
    plain = load_dataset(str(repo), CONFIG)
    edited = load_dataset(str(_copy(repo, tmp_path, _drop(column))), CONFIG)
    for name, split in edited.items():
        rows = split.with_format(None)[:]
        lengths = [len(u) for u in rows["utterance_ids"]]
        if column == "num_utterances":
            assert rows[column] == lengths
        elif column in ("speakers", "transcripts"):
            assert rows[column] == [[""] * n for n in lengths]
        elif column == "feature_present":
            assert all(np.asarray(p).tolist() == [[1, 1, 1]] * n for p, n in zip(rows[column], lengths))
        else:  # the session is read back from the IEMOCAP dialogue id
            assert rows[column] == plain[name].with_format(None)[:][column]
        assert rows["labels"] == plain[name].with_format(None)[:]["labels"]


@pytest.mark.parametrize("column", ["dialog_id", "utterance_ids", "labels", "audio", "text", "video", "corpus"])
def test_required_columns_missing_from_the_files_are_named(repo, tmp_path, column):
    edited = _copy(repo, tmp_path, _drop(column))
    with pytest.raises(DatasetFormatError, match=rf"session1-00000-of-00001\.parquet .*required column '{column}'"):
        load_dataset(str(edited), CONFIG)


def test_required_columns_missing_without_a_card_are_named(repo, tmp_path):
    edited = _copy(repo, tmp_path, _drop("labels"))
    (edited / "README.md").unlink()
    with pytest.raises(DatasetFormatError, match=r"lacks the column\(s\) \['labels'\]") as info:
        load_dataset(str(edited))
    assert "\n" not in str(info.value)


def _null_in(column, row, inner=False):
    def edit(table):
        values = table.column(column).to_pylist()
        if inner:
            values[row] = [None, *values[row][1:]]
        else:
            values[row] = None
        index = table.column_names.index(column)
        return table.set_column(
            index, table.schema.field(column), pa.array(values, type=table.schema.field(column).type)
        )

    return edit


@pytest.mark.parametrize(
    ("column", "row", "inner"),
    [("transcripts", 2, False), ("labels", 1, True), ("speakers", 0, True), ("num_utterances", 3, False)],
)
def test_a_null_in_some_rows_is_named_with_its_row(repo, tmp_path, column, row, inner):
    edited = _copy(repo, tmp_path, _null_in(column, row, inner))
    with pytest.raises(
        DatasetFormatError, match=rf"\.parquet .* row {row}: column '{column}' holds a missing"
    ) as info:
        load_dataset(str(edited), CONFIG)
    assert "\n" not in str(info.value)


def _set(column, make):
    def edit(table):
        values = make(table.column(column))
        return table.set_column(table.column_names.index(column), pa.field(column, values.type), values)

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (None, r"session1-00000-of-00001\.parquet \(config .*\) is not a readable parquet file \(Parquet magic"),
        (lambda t: t.slice(0, 0), r"session1-00000-of-00001\.parquet .* holds no rows"),
        (
            lambda t: t.append_column("extra", pa.array([1] * len(t))),
            r"has column\(s\) \['extra'\] that a comp-emotion",
        ),
        (
            _set(
                "audio",
                lambda c: pa.array([[[0.0] * 7 for _ in r] for r in c.to_pylist()], pa.list_(pa.list_(pa.float32()))),
            ),
            r"row 0: column 'audio' has utterance vectors of 7 values, but the repo's schema declares 32",
        ),
        (
            _set("corpus", lambda c: pa.array(["nonsense"] * len(c))),
            r"column 'corpus' holds 'nonsense': unknown corpus",
        ),
    ],
)
def test_malformed_parquet_files_are_named(repo, tmp_path, edit, match):
    if edit is None:  # not parquet at all (a truncated download reads the same)
        edited = tmp_path / "edited"
        shutil.copytree(repo, edited)
        path = sorted((edited / CONFIG).glob("session1-*.parquet"))[0]
        path.write_bytes(path.read_bytes()[:200])
    else:
        edited = _copy(repo, tmp_path, edit)
    with pytest.raises(DatasetFormatError, match=match) as info:
        load_dataset(str(edited), CONFIG)
    assert "\n" not in str(info.value)


def test_an_iemocap_shaped_repo_is_accepted_by_the_recipes(repo):
    from recipes.config import ConfigError, DataConfig

    cfg = DataConfig(dataset=str(repo), dataset_config=CONFIG, fold="1")
    cfg.validate_data()
    assert cfg.is_iemocap and cfg.corpus_shape == "iemocap4"
    cfg = DataConfig(dataset=str(repo), dataset_config=None, fold="2")  # the repo's only config
    cfg.validate_data()
    assert cfg.corpus_shape == "iemocap4"
    with pytest.raises(ConfigError, match=r"needs --fold 1\.\.5"):
        DataConfig(dataset=str(repo), dataset_config=CONFIG).validate_data()
    with pytest.raises(ConfigError, match=r"or a local parquet repo folder"):
        DataConfig(dataset=str(repo / "absent"), dataset_config=CONFIG, fold="1").validate_data()


@pytest.mark.slow
def test_train_recipe_runs_on_a_local_repo_by_absolute_path(repo, tmp_path):
    cmd = [sys.executable, "recipes/train.py", "--dataset", str(repo.resolve()), "--dataset_config", CONFIG]
    cmd += ["--fold", "1", "--epochs", "1", "--stage1_epochs", "0", "--output_dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "model" / "config.json").is_file()
