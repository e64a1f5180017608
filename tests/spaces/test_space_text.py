"""The "type a conversation" path: typed text -> the checkpoint's recorded text extractor -> predictions."""

from __future__ import annotations

import re

import gradio as gr
import numpy as np
import pytest
from comp_space.inference import load_checkpoint, predict
from comp_space.inputs import InputError
from comp_space.text import ExtractorStore, conversation_from_text, parse_conversation_text

from hub_datasets.featurize import TextExtractor


CONVERSATION = "A: hello there\nB: i am so sorry\nA: what? really!\nB: okay, fine"


def test_typed_conversation_is_featurized_with_the_recorded_extractor(
    space_app_module, tiny_text_settings, tiny_text_checkpoint, tiny_text_encoder, tmp_path
):
    app = space_app_module.SpaceApp(tiny_text_settings)
    label = "tiny with text encoder"
    status = app.text_status(label)
    assert "Text features: `local encoder encoder`" in status and "gcnet" in status
    assert str(tiny_text_encoder.parent) not in status  # no server-side path
    prediction, added = app.predict_text(label, CONVERSATION, None, None)
    assert not added and prediction.conversation.num_utterances == 4
    # Independently: featurize with hub_datasets, text only, predict.
    ckpt = load_checkpoint(str(tiny_text_checkpoint))
    extractor = TextExtractor.from_pretrained(ckpt.text_extractor, device="cpu", local_files_only=True)
    typed = parse_conversation_text(CONVERSATION)
    features = extractor(typed.texts)
    mask = np.zeros((4, 3), dtype=bool)
    mask[:, 1] = True
    expected = predict(ckpt, conversation_from_text(typed, features), mask)
    np.testing.assert_allclose(prediction.masked.scores, expected.masked.scores, atol=1e-6)
    assert not prediction.masked.modality_mask[:, [0, 2]].any()  # audio and video missing
    summary, table, weights = app.typed_outputs(label, CONVERSATION, None, None)
    assert list(table["utterance"]) == ["1 A", "2 B", "3 A", "4 B"]
    assert (
        table["audio head"].str.endswith("(missing)").all() and not table["text head"].str.endswith("(missing)").any()
    )
    assert {"weight audio", "weight text", "weight video"} <= set(table.columns) and len(weights) == 4 * 6
    assert "4 typed utterances, text only" in summary

    # Adding audio back from an uploaded file changes the prediction of the same conversation.
    rng = np.random.default_rng(0)
    np.save(tmp_path / "audio.npy", (3 * rng.normal(size=(4, 12))).astype(np.float32))
    prediction, added = app.predict_text(label, CONVERSATION, None, [str(tmp_path / "audio.npy")])
    assert added and prediction.full.modality_mask[:, 0].all() and not prediction.full.modality_mask[:, 2].any()
    assert np.abs(prediction.full.scores - prediction.masked.scores).max() > 1e-4
    _, table, _ = app.typed_outputs(label, CONVERSATION, None, [str(tmp_path / "audio.npy")])
    assert "prediction + audio" in table.columns

    # A transcript upload works like typed text; what the visitor wrote is escaped wherever it is shown.
    (tmp_path / "t.txt").write_text("<b>x</b>: hello\nyes", encoding="utf-8")
    _, table, _ = app.typed_outputs(label, None, str(tmp_path / "t.txt"), None)
    assert list(table["utterance"]) == ["1", "2"] and table["text"][0] == "&lt;b&gt;x&lt;/b&gt;: hello"


def test_typed_conversation_errors_are_one_line(space_app_module, tiny_text_settings, tmp_path):
    app = space_app_module.SpaceApp(tiny_text_settings)
    guarded = space_app_module._guard(app.typed_outputs)
    cases = [
        (("tiny with text encoder", "hi\n\nyes", None, None), r"^line 2 is empty"),
        (("tiny with text encoder", "hi\n" * 25, None, None), r"25 utterances, more than the checkpoint's max"),
        (("tiny without", "hello", None, None), r"^checkpoint 'tiny without' records no text extractor"),
    ]
    np.save(tmp_path / "audio.npy", np.zeros((3, 12), dtype=np.float32))
    cases.append(
        (("tiny with text encoder", "a\nb", None, [str(tmp_path / "audio.npy")]), r"have 3 utterances but the typed")
    )
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    cases.append((("tiny with text encoder", None, str(tmp_path / "notes.pdf"), None), r"expected a plain-text"))
    for args, message in cases:
        with pytest.raises(gr.Error) as info:
            guarded(*args)
        assert re.search(message, info.value.message), info.value.message
        assert "\n" not in info.value.message and str(tmp_path) not in info.value.message


def test_unloadable_extractor_is_one_line_and_cached():
    store = ExtractorStore(local_files_only=True)
    record = {"model_id": "microsoft/deberta-large", "layers": [-4, -3, -2, -1], "pooling": "gcnet"}
    with pytest.raises(
        InputError,
        match=r"^typing a conversation is unavailable: the text encoder "
        r"microsoft/deberta-large cannot be loaded on this server \(offline or not found\)$",
    ):
        store.get(record)
    with pytest.raises(InputError, match="unavailable"):  # answered from memory, no second attempt
        store.get(record)
