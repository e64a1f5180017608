"""ComPProcessor: conversations with missing modalities -> padded model inputs; validation; save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoProcessor

from modeling_comp import ComPConfig, ComPForEmotionRecognition, ComPProcessor


DIMS = {"audio": 4, "text": 5, "video": 3}


def tiny_config(**overrides) -> ComPConfig:
    kwargs = {
        **{f"{m}_dim": d for m, d in DIMS.items()},
        "hidden_size": 8,
        "num_attention_heads": 2,
        "prompt_dim": 4,
        "num_prototypes": 2,
        "max_utterances": 6,
        "num_labels": 3,
        "hidden_dropout_prob": 0.0,
    }
    kwargs.update(overrides)
    return ComPConfig(**kwargs)


def conversation(n: int, seed: int = 0, **fields) -> dict:
    rng = np.random.default_rng(seed)
    conv = {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in DIMS.items()}
    conv.update(fields)
    return conv


@pytest.fixture
def processor() -> ComPProcessor:
    return ComPProcessor.from_model_config(tiny_config())


def test_single_conversation_with_missing_utterances_and_modalities(processor):
    rng = np.random.default_rng(0)
    audio = [rng.normal(size=4), None, rng.normal(size=4)]
    text = torch.randn(3, 5)
    batch = processor({"audio": audio, "text": text, "video": None})
    assert batch["audio"].shape == (1, 3, 4) and batch["video"].shape == (1, 3, 3)
    assert batch["audio"].dtype == torch.float32 and batch["attention_mask"].dtype == torch.long
    assert batch["modality_mask"][0].tolist() == [[1, 1, 0], [0, 1, 0], [1, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1]]
    np.testing.assert_allclose(batch["audio"][0, 0].numpy(), audio[0].astype(np.float32))
    assert (batch["audio"][0, 1] == 0).all() and (batch["video"] == 0).all()
    torch.testing.assert_close(batch["text"][0], text)
    assert "labels" not in batch and "conversation_index" not in batch


def test_batch_padding_labels_and_explicit_mask(processor):
    mask = np.array([[1, 0, 1], [0, 1, 1]])
    nan_where_masked = conversation(2, seed=1, modality_mask=mask, labels=[2, 0], conversation_index=7)
    nan_where_masked["text"][0, 1] = np.nan  # masked: never read, must come out as zeros
    rows = [conversation(4, labels=np.array([0, 1, 2, 1]), conversation_index=3), nan_where_masked]
    batch = processor(rows)
    assert batch["text"].shape == (2, 4, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[0, 1, 2, 1], [2, 0, -100, -100]]
    assert batch["conversation_index"].tolist() == [3, 7]
    np.testing.assert_array_equal(batch["modality_mask"][1, :2].numpy(), mask)
    assert (batch["text"][1, 0] == 0).all() and torch.isfinite(batch["text"]).all()
    assert (batch["modality_mask"][1, 2:] == 0).all() and (batch["audio"][1, 2:] == 0).all()
    fixed = processor(rows, pad_to="max_utterances")
    assert fixed["audio"].shape == (2, 6, 4) and fixed["labels"][0, 4:].tolist() == [-100, -100]
    regression = ComPProcessor.from_model_config(tiny_config(num_labels=1, problem_type="regression"))
    labels = regression(conversation(2, labels=[0.5, -1.25]), return_tensors="np")["labels"]
    assert labels.dtype == np.float32 and labels.tolist() == [[0.5, -1.25]]


def test_outputs_feed_the_model(processor):
    torch.manual_seed(0)
    model = ComPForEmotionRecognition(tiny_config()).eval()
    batch = processor([conversation(3, seed=2, video=None), conversation(5, seed=3)])
    with torch.no_grad():
        out = model(**{k: batch[k] for k in processor.model_input_names})
    assert out.logits.shape == (2, 5, 3) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize(
    ("conversations", "message"),
    [
        ([conversation(7, dialog_id="Ses01_long")], r"conversation 'Ses01_long' has 7 utterances.*max_utterances=6"),
        ([conversation(2, audio=np.zeros((2, 9)))], r"conversation 'row 0': audio features have dimension 9.*audio_dim=4"),
        ([conversation(2, text=np.zeros((3, 5)))], r"'row 0': the modalities have different numbers of utterances"),
        ([conversation(2, audio=np.zeros(4))], r"audio has shape \(4,\), expected \[utterances, dim\]"),
        ([conversation(2, audio=None, text=None, video=None)], "has no features"),
        ([conversation(2, modality_mask=np.ones((3, 3)))], r"modality_mask has shape \(3, 3\), expected \(2, 3\)"),
        ([conversation(2, modality_mask=[[1, 0, 2], [1, 1, 1]])], r"modality_mask\[0, 2\] is .*2.*expected 0 or 1"),
        ([conversation(2, video=[None, np.ones(3)], modality_mask=np.ones((2, 3)))], "marks video observed at utterance 0 but its features are None"),
        ([conversation(2, labels=[1])], "1 labels for 2 utterances"),
        ([conversation(2, labels=[1, 1.5])], "label of utterance 1 is 1.5.*integer class ids"),
        ([conversation(3), conversation(2, dialog_id="d2", labels=[1, np.nan])][1:], "'d2': label of utterance 1 is nan; not finite"),
        ([conversation(2, labels=[1, 0]), conversation(2, seed=1)], "has no labels but other conversations"),
        ([42], "conversation at index 0 is a int"),
        ([], "empty list"),
    ],
)  # fmt: skip
def test_one_line_errors(processor, conversations, message):
    with pytest.raises(ValueError, match=message) as err:
        processor(conversations)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("value", "what"), [(np.nan, "nan"), (np.inf, "inf"), (-1e30, "-1e\\+30")])
def test_observed_features_must_be_finite_and_sane(processor, value, what):
    conv = conversation(3, dialog_id="d1")
    conv["video"][2, 1] = value
    with pytest.raises(ValueError, match=rf"conversation 'd1': video feature 1 of utterance 2 is {what}") as err:
        processor(conv)
    assert "\n" not in str(err.value)
    conv["modality_mask"] = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]])  # the bad value is now masked out
    assert torch.isfinite(processor(conv)["video"]).all()


def test_constructor_validation():
    for kwargs, message in [
        ({"audio_dim": 0}, "audio_dim must be a positive integer"),
        ({"pad_to": "max_utterances"}, "needs max_utterances"),
        ({"pad_to": "left"}, "pad_to must be one of"),
        ({"problem_type": "multi_label_classification"}, "problem_type must be one of"),
        ({"max_abs_value": float("nan")}, "max_abs_value must be a positive finite number"),
    ]:
        with pytest.raises(ValueError, match=message):
            ComPProcessor(**kwargs)
    with pytest.raises(ValueError, match="the processor has text_dim=5 but the model's config has text_dim=6"):
        ComPProcessor.from_model_config(tiny_config()).check_model_config(tiny_config(text_dim=6))


def test_save_and_load_with_the_auto_classes(tmp_path, processor):
    torch.manual_seed(0)
    ComPForEmotionRecognition(tiny_config()).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "ComPProcessor" and saved["max_utterances"] == 6
    assert saved["auto_map"] == {
        "AutoFeatureExtractor": "processing_comp.ComPProcessor",
        "AutoProcessor": "processing_comp.ComPProcessor",
    }
    assert (tmp_path / "processing_comp.py").is_file() and (tmp_path / "configuration_comp.py").is_file()
    for auto in (AutoProcessor, AutoFeatureExtractor):
        loaded = auto.from_pretrained(tmp_path)
        assert type(loaded) is ComPProcessor and loaded.to_dict() == processor.to_dict()
    conv = conversation(3, video=None)
    for key, value in processor(conv).items():
        torch.testing.assert_close(loaded(conv)[key], value)
