"""What a request may cost the Space is bounded by what it serves, checked before the work is done.

Uploads are bounded from headers and footers (rows against the checkpoint's ``max_utterances``, feature values,
widths) before any data is decoded; typed text is bounded in utterances and sentences before it is encoded;
lines an English encoder cannot read are refused naming the line; accents are folded, and said so; predictions
and uploads run in bounded queues.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from comp_space import inputs as space_inputs
from comp_space.inputs import InputError, parse_feature_files
from comp_space.text import MAX_SENTENCES, normalise_for_encoder, parse_conversation_text
from space_testing import TINY_DIMS, TINY_MAX_UTTERANCES


def _rle_parquet(path, rows: int, width: int, *, nested: bool = False, column: str = "audio"):
    """Zeros, run-length encoded: a tiny file that declares ``rows * width`` values."""
    values = pa.array(np.zeros(rows * width, dtype=np.float32))
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    array = pa.ListArray.from_arrays(offsets, values)
    if nested:
        array = pa.ListArray.from_arrays(pa.array([0, rows], type=pa.int32()), array)
    pq.write_table(pa.table({column: array}), path, compression="zstd")
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if a parquet file's data is read (the checks must come from the footer alone)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the parquet data was decoded")

    monkeypatch.setattr(pq.ParquetFile, "read", refuse)


def test_parquet_sizes_are_refused_from_the_footer(tmp_path, no_decoding):
    cases = [
        # more rows than the checkpoint's max_utterances (a tiny file declaring 10,000 x 1,600 values)
        (
            _rle_parquet(tmp_path / "rows.parquet", 10_000, 1_600),
            r"^rows\.parquet: declares 10,000 utterances \(rows\), more than the checkpoint's max_utterances = 24$",
        ),
        # a few rows, absurdly wide
        (
            _rle_parquet(tmp_path / "wide.parquet", 3, 50_000),
            r"^wide\.parquet\['audio'\]: about 50,000 features per utterance, over the limit of 4,096$",
        ),
        # one conversation row (the hub_datasets layout) holding 20 x 150,000 values
        (
            _rle_parquet(tmp_path / "nested.parquet", 20, 150_000, nested=True),
            r"^nested\.parquet\['audio'\]: the upload holds 3,000,000 feature values or more, over the limit",
        ),
    ]
    two = pa.concat_tables([pq.read_table(_rle_parquet(tmp_path / "one.parquet", 2, 4, nested=True))] * 2)
    pq.write_table(two, tmp_path / "two.parquet")
    cases.append((tmp_path / "two.parquet", r"^two\.parquet: holds 2 conversations \(one per row\)"))
    for path, message in cases:
        assert path.stat().st_size < 50_000
        with pytest.raises(InputError, match=message):
            parse_feature_files([path], max_utterances=TINY_MAX_UTTERANCES)


def test_npy_and_npz_sizes_are_refused_before_reading(tmp_path, monkeypatch):
    np.save(tmp_path / "audio.npy", np.zeros((TINY_MAX_UTTERANCES + 6, TINY_DIMS["audio"]), np.float32))
    with pytest.raises(
        InputError, match=r"^audio\.npy: 30 utterances, more than the checkpoint's max_utterances = 24$"
    ):
        parse_feature_files([tmp_path / "audio.npy"], max_utterances=TINY_MAX_UTTERANCES)
    np.save(tmp_path / "text.npy", np.zeros((2, 5_000), np.float32))
    with pytest.raises(InputError, match=r"^text\.npy: 5,000 features per utterance, over the limit of 4,096$"):
        parse_feature_files([tmp_path / "text.npy"])
    # The value budget counts every file of the request together, and names the file that crosses it.
    monkeypatch.setattr(space_inputs, "MAX_UPLOAD_VALUES", 1_000)
    np.save(tmp_path / "audio.npy", np.zeros((20, 30), np.float32))
    np.save(tmp_path / "video.npy", np.zeros((20, 30), np.float32))
    with pytest.raises(InputError, match=r"^video\.npy: the upload holds 1,200 feature values or more"):
        parse_feature_files([tmp_path / "audio.npy", tmp_path / "video.npy"])
    np.savez(tmp_path / "all.npz", audio=np.zeros((20, 30), np.float32), video=np.zeros((20, 30), np.float32))
    with pytest.raises(InputError, match=r"^all\.npz\['video'\]: the upload holds 1,200 feature values or more"):
        parse_feature_files([tmp_path / "all.npz"])


def test_upload_too_long_for_the_checkpoint_is_refused_when_loaded(space_app_module, tiny_settings, tmp_path):
    app = space_app_module.SpaceApp(tiny_settings)
    (label,) = tiny_settings.checkpoints
    path = _rle_parquet(tmp_path / "long.parquet", TINY_MAX_UTTERANCES + 1, TINY_DIMS["audio"])
    with pytest.raises(InputError, match=r"declares 25 utterances \(rows\), more than the checkpoint's"):
        app.load(label, space_app_module.SOURCE_FILES, None, [str(path)])
    fits = _rle_parquet(tmp_path / "fits.parquet", TINY_MAX_UTTERANCES, TINY_DIMS["audio"])
    grid, text = app.load(label, space_app_module.SOURCE_FILES, None, [str(fits)])
    assert len(grid) == TINY_MAX_UTTERANCES and "24 utterances" in text


def test_typed_text_is_bounded_before_encoding():
    flood = "\n".join(" ".join(["ok."] * 30) for _ in range(10))  # 300 one-word sentences in 10 lines
    with pytest.raises(InputError, match=rf"^the conversation has 300 sentences, more than the {MAX_SENTENCES}"):
        parse_conversation_text(flood, max_utterances=32)
    # Utterances are counted before any line is processed.
    with pytest.raises(InputError, match=r"^the conversation has 40 utterances, more than the checkpoint's"):
        parse_conversation_text("hello\n" * 40, max_utterances=32)
    ordinary = "\n".join(["I thought we would make it on time. The traffic was awful."] * 20)
    assert len(parse_conversation_text(ordinary, max_utterances=32).texts) == 20


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("我今天很高兴", "我今天很高兴"),  # Chinese only
        ("😢😢😢", "😢😢😢"),  # emoji only
        ("?!... --- ***", "?!... --- ***"),  # punctuation and symbols only
        ("Привет, как дела", "Привет, как дела"),  # another script
    ],
)
def test_lines_without_readable_text_are_refused_naming_the_line(line, shown):
    with pytest.raises(InputError) as info:
        parse_conversation_text(f"A: I am fine.\nB: {line}\nA: ok", max_utterances=32)
    message = str(info.value)
    assert message.startswith(f"line 2 ({shown}") and "no letters or digits the text encoder can read" in message
    assert "\n" not in message


def test_accents_are_folded_and_doubtful_lines_noted():
    typed = parse_conversation_text(
        "Je suis très fâché.\nI am fine 👍\nＦｕｌｌ ｗｉｄｔｈ ﬁne\nPlain text", max_utterances=32
    )
    assert typed.encoder_texts[0] == "Je suis tres fache." and typed.texts[0] == "Je suis très fâché."
    assert typed.encoder_texts[2] == "Full width fine"
    assert typed.notes[0] == "line 1: accented letters read without their accents (é → e)"
    assert re.match(r"^line 2: characters the encoder cannot read \(👍\) carry no meaning", typed.notes[1])
    assert len(typed.notes) == 2  # full-width letters and ligatures fold without doubt; plain text needs no note
    assert normalise_for_encoder("naïve café")[0:2] == ("naive cafe", True)


def test_accented_and_plain_lines_get_the_same_features(space_app_module, tiny_text_settings):
    app = space_app_module.SpaceApp(tiny_text_settings)
    label = "tiny with text encoder"
    accented, _ = app.predict_text(label, "A: hélló thère\nB: i am so sörry", None, None)
    plain, _ = app.predict_text(label, "A: hello there\nB: i am so sorry", None, None)
    np.testing.assert_allclose(accented.masked.scores, plain.masked.scores, atol=1e-6)
    summary, _, _ = app.typed_outputs(label, "A: hélló thère\nB: i am so sörry", None, None)
    assert "lines 1, 2: accented letters read without their accents" in summary


def test_heavy_events_run_in_bounded_queues(space_app_module, tiny_settings):
    demo = space_app_module.build_demo(tiny_settings)
    by_name = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    for name in ("predict", "predict_text"):
        assert by_name[name].concurrency_id == "model" and by_name[name].concurrency_limit == tiny_settings.concurrency
    for name in ("load", "draw_mask", "all_present"):
        assert by_name[name].concurrency_id == "read" and by_name[name].concurrency_limit == tiny_settings.concurrency
    unbounded = [fn.name for fn in demo.fns.values() if fn.concurrency_limit is None]
    assert not unbounded, unbounded
