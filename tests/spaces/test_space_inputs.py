"""The Space's input parsing and validation: every bad input gives a clear message naming what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from comp_space.inputs import (
    GRID_COLUMNS,
    InputError,
    grid_from_mask,
    load_examples,
    mask_from_grid,
    parse_feature_files,
    validate_for_model,
)
from space_testing import TINY_DIMS, TINY_MAX_UTTERANCES


def _features(n: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in TINY_DIMS.items()}


def _save_npy(tmp_path, arrays: dict[str, np.ndarray], prefix: str = "dialog7_") -> list:
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for modality, arr in arrays.items():
        path = tmp_path / f"{prefix}{modality}.npy"
        np.save(path, arr)
        paths.append(path)
    return paths


def _validate(conv, mask=None):
    validate_for_model(
        conv,
        conv.initial_mask if mask is None else mask,
        dims=TINY_DIMS,
        max_utterances=TINY_MAX_UTTERANCES,
        checkpoint="checkpoint 'tiny'",
    )


# ---------------------------------------------------------------------------------------------- good inputs
def test_npy_per_modality(tmp_path):
    arrays = _features()
    conv = parse_feature_files(_save_npy(tmp_path, arrays))
    assert conv.num_utterances == 5
    for modality, arr in arrays.items():
        np.testing.assert_array_equal(conv.features[modality], arr)
        assert conv.features[modality].dtype == np.float32
    assert conv.available.all() and conv.initial_mask.all()
    assert conv.source == "uploaded: dialog7_audio.npy, dialog7_text.npy, dialog7_video.npy"
    assert not conv.synthetic
    _validate(conv)


def test_single_npz_with_mask_labels_and_float64(tmp_path):
    arrays = {m: a.astype(np.float64) for m, a in _features().items()}
    mask = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=np.int8)
    path = tmp_path / "conversation.npz"
    np.savez(
        path,
        **arrays,
        modality_mask=mask,
        labels=np.array([0, 1, 2, 3, 0]),
        utterance_ids=np.array([f"u{i}" for i in range(5)]),
    )
    conv = parse_feature_files([path])
    np.testing.assert_array_equal(conv.initial_mask, mask.astype(bool))
    assert conv.available.all()
    assert conv.labels == [0, 1, 2, 3, 0]
    assert conv.utterance_ids == ["u0", "u1", "u2", "u3", "u4"]
    np.testing.assert_allclose(conv.features["text"], arrays["text"].astype(np.float32))
    _validate(conv)


def test_npz_single_array_named_by_file(tmp_path):
    arrays = _features()
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for modality, arr in arrays.items():
        paths.append(tmp_path / f"{modality}.npz")
        np.savez_compressed(paths[-1], arr_0=arr)
    conv = parse_feature_files(paths)
    np.testing.assert_array_equal(conv.features["video"], arrays["video"])


def test_missing_modality_file_means_missing_everywhere(tmp_path):
    arrays = _features()
    del arrays["video"]
    conv = parse_feature_files(_save_npy(tmp_path, arrays))
    assert conv.features["video"] is None and conv.dims["video"] is None
    np.testing.assert_array_equal(conv.available, np.array([[True, True, False]] * 5))
    _validate(conv)
    with pytest.raises(InputError, match=r"utterance 1: video is marked present but the data has no video"):
        _validate(conv, np.ones((5, 3), dtype=bool))


def test_parquet_one_row_per_utterance_with_null_cells(tmp_path):
    arrays = _features(4)
    table = {m: [row.tolist() for row in arrays[m]] for m in arrays}
    table["video"][2] = None  # no face found for utterance 3
    table["label"] = [3, 2, 1, 0]
    table["utterance_id"] = ["a", "b", "c", "d"]
    path = tmp_path / "talk.parquet"
    pq.write_table(pa.table(table), path)
    conv = parse_feature_files([path])
    assert conv.labels == [3, 2, 1, 0] and conv.utterance_ids == ["a", "b", "c", "d"]
    assert not conv.available[2, 2] and conv.available.sum() == 11
    assert not conv.initial_mask[2, 2]
    np.testing.assert_allclose(conv.features["audio"], arrays["audio"], rtol=1e-6)
    _validate(conv)


def test_parquet_one_conversation_row(tmp_path):
    arrays = _features(3)
    row = {m: arrays[m].tolist() for m in arrays}
    row.update(dialog_id="d1", labels=[1, 2, 3], modality_mask=[[1, 1, 1], [1, 0, 1], [0, 1, 0]])
    path = tmp_path / "dialog.parquet"
    pq.write_table(pa.Table.from_pylist([row]), path)
    conv = parse_feature_files(path)
    np.testing.assert_array_equal(conv.initial_mask, np.array([[1, 1, 1], [1, 0, 1], [0, 1, 0]], dtype=bool))
    pq.write_table(pa.Table.from_pylist([row, row]), path)
    with pytest.raises(InputError, match=r"dialog\.parquet: holds 2 conversations"):
        parse_feature_files(path)


def test_examples_file_roundtrip(tiny_examples):
    examples = load_examples(tiny_examples)
    assert list(examples) == ["synthetic_test_000", "synthetic_test_001", "synthetic_test_002"]
    conv = examples["synthetic_test_001"]
    assert conv.num_utterances == 20 and conv.synthetic and "synthetic" in conv.source
    assert conv.dims == TINY_DIMS
    assert conv.utterance_ids[0] == "synthetic_test_001_u000"
    _validate(conv)


# ------------------------------------------------------------------------------------------------ bad files
def _bad_inputs(tmp_path):
    arrays = _features()
    cases = {}

    nan = {**arrays, "audio": arrays["audio"].copy()}
    nan["audio"][3, 4] = np.nan
    cases["nan"] = (
        _save_npy(tmp_path / "nan", nan),
        r"dialog7_audio\.npy: 1 value\(s\) are NaN or infinite "
        r"\(first at utterance 4, dim 4",
    )
    inf = {**arrays, "text": arrays["text"].copy()}
    inf["text"][0, 1] = -np.inf
    cases["inf"] = (_save_npy(tmp_path / "inf", inf), r"dialog7_text\.npy: .*NaN or infinite")
    overflow = {**arrays, "video": arrays["video"].astype(np.float64) * 1e300}
    cases["float32 overflow"] = (_save_npy(tmp_path / "ovf", overflow), r"video\.npy \(after conversion to float32\)")
    cases["1-d"] = (
        _save_npy(tmp_path / "oned", {**arrays, "audio": arrays["audio"][0]}),
        r"audio\.npy: has shape \(12,\), expected 2 dimensions \[utterances, dim\]",
    )
    cases["3-d"] = (
        _save_npy(tmp_path / "threed", {**arrays, "text": arrays["text"][None]}),
        r"text\.npy: has shape \(1, 5, 16\), expected 2 dimensions",
    )
    cases["strings"] = (
        _save_npy(tmp_path / "str", {**arrays, "text": np.array([["a", "b"]] * 5)}),
        r"text\.npy: has dtype <U1, expected real numbers",
    )
    cases["counts"] = (
        _save_npy(tmp_path / "cnt", {**arrays, "video": arrays["video"][:3]}),
        r"different numbers of utterances .*video\.npy: 3",
    )
    twice = _save_npy(tmp_path / "tw1", {"audio": arrays["audio"]})
    twice += _save_npy(tmp_path / "tw2", {"audio": arrays["audio"]}, prefix="other_")
    cases["twice"] = (twice, r"audio features are given twice \(dialog7_audio\.npy and other_audio\.npy\)")
    (tmp_path / "unnamed").mkdir()
    np.save(tmp_path / "unnamed" / "features.npy", arrays["audio"])
    cases["unnamed"] = ([tmp_path / "unnamed" / "features.npy"], r"features\.npy: cannot tell which modality")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "audio.npy").write_bytes(b"this is not numpy at all")
    cases["garbage npy"] = ([tmp_path / "garbage" / "audio.npy"], r"audio\.npy: (unreadable|not a plain)")
    (tmp_path / "garbage" / "all.npz").write_bytes(b"PK\x03\x04 broken zip")
    cases["garbage npz"] = ([tmp_path / "garbage" / "all.npz"], r"all\.npz: unreadable as a NumPy \.npz file")
    (tmp_path / "garbage" / "all.parquet").write_bytes(b"PAR1 nope")
    cases["garbage parquet"] = ([tmp_path / "garbage" / "all.parquet"], r"all\.parquet: unreadable as a parquet")
    (tmp_path / "garbage" / "empty.npy").write_bytes(b"")
    cases["empty"] = ([tmp_path / "garbage" / "empty.npy"], r"empty\.npy: file is empty")
    (tmp_path / "garbage" / "audio.txt").write_text("1 2 3")
    cases["suffix"] = ([tmp_path / "garbage" / "audio.txt"], r"audio\.txt: unsupported file type '\.txt'")
    np.savez(tmp_path / "garbage" / "keys.npz", foo=arrays["audio"], bar=arrays["text"])
    cases["npz keys"] = ([tmp_path / "garbage" / "keys.npz"], r"keys\.npz: none of its arrays \('foo', 'bar'\)")
    cases["none"] = (None, r"no files uploaded")
    cases["too many"] = (_save_npy(tmp_path / "many", arrays) + [tmp_path / "garbage" / "keys.npz"], r"4 files")
    return cases


BAD_CASES = (
    "nan", "inf", "float32 overflow", "1-d", "3-d", "strings", "counts", "twice", "unnamed", "garbage npy",
    "garbage npz", "garbage parquet", "empty", "suffix", "npz keys", "none", "too many",
)  # fmt: skip


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_files_give_clear_errors(tmp_path, case):
    cases = _bad_inputs(tmp_path)
    assert set(cases) == set(BAD_CASES)
    paths, pattern = cases[case]
    with pytest.raises(InputError, match=pattern):
        parse_feature_files(paths)


def test_pickled_npy_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "audio.npy"
    np.save(path, np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"audio\.npy: not a plain numeric \.npy array"):
        parse_feature_files([path])
    npz = tmp_path / "all.npz"
    np.savez(npz, audio=np.array([Evil()], dtype=object))
    with pytest.raises(InputError, match=r"all\.npz: holds something other than plain numeric"):
        parse_feature_files([npz])
    assert not marker.exists()


def test_size_limits(tmp_path):
    arrays = _features(40)
    paths = _save_npy(tmp_path, arrays)
    with pytest.raises(InputError, match=r"dialog7_audio\.npy: file is 2\.0 KiB, over the 1000 bytes limit per file"):
        parse_feature_files(paths, max_file_bytes=1000)
    # A zip bomb in miniature: 4 MiB of zeros compress to a few KiB, under the file limit but over 4x of it.
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, audio=np.zeros((1024, 1024), dtype=np.float32))
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(InputError, match=r"bomb\.npz: decompresses to 4\.0 MiB, over the 256\.0 KiB limit"):
        parse_feature_files([bomb], max_file_bytes=64 * 1024)


def test_validation_against_checkpoint(tmp_path):
    arrays = _features()
    conv = parse_feature_files(_save_npy(tmp_path, {**arrays, "audio": arrays["audio"][:, :10]}))
    with pytest.raises(
        InputError,
        match=r"feature dims per utterance do not fit checkpoint 'tiny': audio has 10 \(expected 12\)",
    ):
        _validate(conv)
    long = _features(TINY_MAX_UTTERANCES + 1)
    conv = parse_feature_files(_save_npy(tmp_path / "long", long))
    with pytest.raises(InputError, match=r"25 utterances, more than checkpoint 'tiny''s max_utterances = 24"):
        _validate(conv)
    conv = parse_feature_files(_save_npy(tmp_path, arrays, prefix="ok_"))
    mask = np.ones((5, 3), dtype=bool)
    mask[[1, 3]] = False
    with pytest.raises(InputError, match=r"utterance\(s\) 2, 4 have no modality marked present"):
        _validate(conv, mask)
    with pytest.raises(InputError, match=r"mask has shape \(4, 3\), expected \(5, 3\)"):
        _validate(conv, mask[:4])


# ------------------------------------------------------------------------------------------------------ grid
def test_grid_roundtrip_and_client_formats(tiny_examples):
    conv = load_examples(tiny_examples)["synthetic_test_000"]
    mask = np.random.default_rng(3).random((conv.num_utterances, 3)) < 0.5
    grid = grid_from_mask(conv, mask)
    assert list(grid.columns) == list(GRID_COLUMNS)
    np.testing.assert_array_equal(mask_from_grid(grid, conv.num_utterances), mask)
    payload = {"headers": list(grid.columns), "data": grid.values.tolist()}
    np.testing.assert_array_equal(mask_from_grid(payload, conv.num_utterances), mask)
    as_words = grid.copy()
    for m in ("audio", "text", "video"):
        as_words[m] = ["present" if v else "missing" for v in grid[m]]
    np.testing.assert_array_equal(mask_from_grid(as_words, conv.num_utterances), mask)


def test_grid_errors():
    grid = pd.DataFrame(
        {"#": [1, 2], "utterance": ["a", "b"], "audio": [True, "maybe"], "text": [1, 0], "video": [False, True]}
    )
    with pytest.raises(InputError, match=r"utterance 2, column 'audio': value 'maybe' is not a yes/no value"):
        mask_from_grid(grid, 2)
    with pytest.raises(InputError, match=r"grid has 2 rows but the conversation has 3 utterances"):
        mask_from_grid(grid.assign(audio=[True, False]), 3)
    with pytest.raises(InputError, match=r"lacks the column\(s\) \['video'\]"):
        mask_from_grid(grid.drop(columns="video"), 2)
    with pytest.raises(InputError, match=r"grid is empty"):
        mask_from_grid(None, 2)


# ------------------------------------------------------------------------------------------- hostile uploads
def test_parquet_bomb_is_refused_from_its_footer(tmp_path):
    """A few KB of dictionary/RLE-encoded parquet that would decode to millions of rows or values."""
    rows = pa.table({"audio": pa.array([[0.0] * 12] * 200_000, type=pa.list_(pa.float32()))})
    pq.write_table(rows, tmp_path / "rows.parquet", compression="zstd", use_dictionary=True)
    assert (tmp_path / "rows.parquet").stat().st_size < 200_000
    with pytest.raises(InputError, match=r"rows\.parquet: declares 200,000 rows, over the limit"):
        parse_feature_files([tmp_path / "rows.parquet"])
    wide = pa.table({"audio": pa.array([[[1.0] * 4000] * 2000], type=pa.list_(pa.list_(pa.float32())))})
    pq.write_table(wide, tmp_path / "wide.parquet", compression="zstd", use_dictionary=True)
    assert (tmp_path / "wide.parquet").stat().st_size < 100_000
    with pytest.raises(InputError, match=r"wide\.parquet: would decode to at least 30\.5 MiB, over the 4\.0 MiB"):
        parse_feature_files([tmp_path / "wide.parquet"], max_file_bytes=1 << 20)


@pytest.mark.parametrize("value", [1e30, 3e38, -2e4])
def test_huge_finite_values_are_refused(tmp_path, value):
    arrays = _features(4)
    arrays["video"][2, 5] = value
    with pytest.raises(
        InputError,
        match=r"dialog7_video\.npy: 1 value\(s\) exceed 10000 in magnitude \(first at "
        r"utterance 3, dim 5",
    ):
        parse_feature_files(_save_npy(tmp_path, arrays))


def test_uploaded_ids_are_escaped(tmp_path):
    arrays = _features(2)
    np.savez(tmp_path / "conv.npz", **arrays, utterance_ids=np.array(["<img src=x onerror=alert(1)>", "ok"]))
    conv = parse_feature_files([tmp_path / "conv.npz"])
    assert conv.utterance_ids == ["&lt;img src=x onerror=alert(1)&gt;", "ok"]


def test_wrong_dims_are_all_named_in_one_message(tmp_path):
    arrays = _features(3)
    arrays["audio"] = arrays["audio"][:, :5]
    arrays["video"] = arrays["video"][:, :3]
    conv = parse_feature_files(_save_npy(tmp_path, arrays))
    with pytest.raises(InputError, match=r"audio has 5 \(expected 12\); video has 3 \(expected 8\)"):
        _validate(conv)


# --------------------------------------------------------------------------------------------- typed text
def test_typed_conversation_parsing(tmp_path):
    from comp_space.text import parse_conversation_text, read_transcript_file

    typed = parse_conversation_text("\n A: Hello there.\nB:   I'm fine: really\nno speaker here\n\n", max_utterances=3)
    assert typed.texts == ["Hello there.", "I'm fine: really", "no speaker here"]
    assert typed.speakers == ["A", "B", ""]
    for text, message in [
        ("", "type a conversation first"),
        ("a\n\nb", "line 2 is empty"),
        ("A: hi\nB:   ", r"line 2 \(B:\) has a speaker but no words"),
        ("x\n" * 4, r"4 utterances, more than the checkpoint's max_utterances = 3"),
        ("x" * 1001, "line 1 has 1,001 characters"),
    ]:
        with pytest.raises(InputError, match=message):
            parse_conversation_text(text, max_utterances=3)
    (tmp_path / "t.txt").write_bytes(b"A: hi\x00there")
    with pytest.raises(InputError, match=r"t\.txt: holds binary data"):
        read_transcript_file(tmp_path / "t.txt")
    (tmp_path / "u.txt").write_bytes(b"A: caf\xe9")
    with pytest.raises(InputError, match=r"u\.txt: not UTF-8 text"):
        read_transcript_file(tmp_path / "u.txt")
    (tmp_path / "a.npy").write_bytes(b"x")
    with pytest.raises(InputError, match=r"a\.npy: expected a plain-text transcript"):
        read_transcript_file(tmp_path / "a.npy")
