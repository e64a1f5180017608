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


# -- hostile values, bounded sizes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"audio": np.ones((2, 4), dtype=np.complex64)}, r"'row 0': audio holds complex values, expected real numbers"),
        ({"text": torch.ones(2, 5, dtype=torch.complex64)}, r"text holds complex values"),
        ({"video": [np.ones(3) * 1j, None]}, r"video of utterance 0 holds complex values"),
        ({"audio": [np.array(["a", "b", "c", "d"]), None]}, r"audio of utterance 0 holds <U1 values"),
        ({"audio": np.array([["a"] * 4] * 2)}, r"audio is not a numeric \[utterances, dim\] array"),
        ({"audio": [[1, 2, 3, 4], [1, 2]]}, r"audio is not a numeric \[utterances, dim\] array"),
        ({"modality_mask": np.ones((2, 3), dtype=complex)}, r"modality_mask holds complex values"),
        ({"modality_mask": [["1", "1", "1"]] * 2}, r"modality_mask holds <U1 values"),
        ({"labels": np.array([1 + 0j, 2])}, r"labels holds complex values"),
        ({"conversation_index": 1.7}, r"conversation_index is 1.7, expected an integer from 0 to 2\*\*63 - 1"),
        ({"conversation_index": 2.0}, r"conversation_index is 2.0, expected an integer"),
        ({"conversation_index": 10**30}, r"conversation_index is 1000000000000000000000000000000, expected"),
        ({"conversation_index": -1}, r"conversation_index is -1, expected"),
        ({"conversation_index": True}, r"conversation_index is True, expected"),
        ({"conversation_index": "3"}, r"conversation_index is '3', expected"),
        ({"conversation_index": torch.tensor(1.5)}, r"conversation_index is 1.5, expected"),
        ({"conversation_index": np.array([1, 2])}, r"conversation_index has shape \(2,\), expected one integer"),
        ({"audio": [None] * 7 + [np.ones(4)]}, r"has 8 utterances, more than the model's max_utterances=6"),
    ],
)  # fmt: skip
def test_hostile_values_are_refused_not_cast(processor, fields, message):
    with pytest.raises(ValueError, match=message) as err:
        processor(conversation(2, **fields))
    assert "\n" not in str(err.value)


def test_integer_conversation_index_of_any_integer_type_is_kept(processor):
    for value in (0, np.int32(5), np.uint8(7), torch.tensor(9), np.array(11), 2**63 - 1):
        batch = processor(conversation(2, conversation_index=value))
        assert batch["conversation_index"].tolist() == [int(value)]


def test_sizes_are_bounded_before_anything_is_allocated():
    from modeling_comp.processing_comp import MAX_BATCH_VALUES, MAX_FEATURE_DIM, MAX_UTTERANCES

    for kwargs, message in [
        ({"audio_dim": MAX_FEATURE_DIM + 1}, "audio_dim must be a positive integer up to 65536"),
        ({"video_dim": 10**9}, "video_dim must be a positive integer up to 65536"),
        ({"max_utterances": 10**9}, "max_utterances must be a positive integer up to 65536"),
        ({"max_utterances": 2.5}, "max_utterances must be a positive integer"),
        (
            {"max_utterances": MAX_UTTERANCES, "audio_dim": MAX_FEATURE_DIM, "pad_to": "max_utterances"},
            "would hold more than 268435456 values per conversation",
        ),
        ({"model_input_names": ["audio"]}, "unknown field\\(s\\) 'model_input_names'"),
    ]:
        with pytest.raises(ValueError, match=message):
            ComPProcessor(**kwargs)
    # a batch of many short conversations padded to one long one: refused before the padded arrays exist
    wide = ComPProcessor(audio_dim=4096, text_dim=1, video_dim=1)
    short = {"audio": np.zeros((1, 4096), dtype=np.float32), "text": None, "video": None}
    long = {"audio": np.zeros((4096, 4096), dtype=np.float32), "text": None, "video": None}
    assert MAX_BATCH_VALUES < 16 * 4096 * (4096 + 2)
    with pytest.raises(ValueError, match=r"the padded batch would hold 16 x 4096 x 4098 feature values"):
        wide([long] + [short] * 15)
    # a list of per-utterance vectors that would expand to a huge matrix is refused before it is built
    with pytest.raises(ValueError, match=r"audio would hold 70000 x 4096 values, more than 268435456"):
        wide({"audio": [None] * 69999 + [np.zeros(4096)], "text": None, "video": None})


def _outputs(model, batch):
    with torch.no_grad():
        return model(**{k: batch[k] for k in ComPProcessor.model_input_names})


def test_post_process_matches_the_model_and_drops_padding(processor):
    torch.manual_seed(0)
    labels = {0: "hap", 1: "sad", 2: "neu"}
    model = ComPForEmotionRecognition(tiny_config(id2label=labels)).eval()
    batch = processor([conversation(2, seed=4, video=None), conversation(4, seed=5)])
    out = _outputs(model, batch)
    first, second = processor.post_process(out, batch["attention_mask"], batch["modality_mask"], config=model.config)
    assert first.num_utterances == 2 and second.num_utterances == 4
    assert first.modality_mask.tolist() == [[True, True, False]] * 2 and first.label_names == ["hap", "sad", "neu"]
    np.testing.assert_allclose(second.scores, out.logits[1].softmax(-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(first.modality_scores, out.modality_logits[0, :2].softmax(-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(first.coordinator_weights, out.coordinator_weights[0, :2].numpy(), atol=1e-6)
    assert first.labels == [labels[int(k)] for k in out.logits[0, :2].argmax(-1)]
    records = second.records(["a", "b", "c", "d"])
    assert [r["utterance"] for r in records] == ["a", "b", "c", "d"]
    assert records[0]["label"] == second.labels[0] and records[0]["score"] == pytest.approx(second.scores[0].max())
    with pytest.raises(ValueError, match="3 utterance ids for 4 utterances"):
        second.records(["a", "b", "c"])
    # what padded positions hold is never read: NaN there changes nothing
    poisoned = {k: getattr(out, k).clone() for k in ("logits", "modality_logits", "coordinator_weights")}
    for value in poisoned.values():
        value[0, 2:] = float("nan")
    again = processor.post_process(poisoned, batch["attention_mask"], batch["modality_mask"], config=model.config)
    np.testing.assert_array_equal(again[0].scores, first.scores)


@pytest.mark.parametrize("key", ["logits", "modality_logits", "coordinator_weights"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_post_process_never_returns_non_finite_numbers(processor, key, value):
    torch.manual_seed(0)
    model = ComPForEmotionRecognition(tiny_config()).eval()
    batch = processor([conversation(2, seed=4), conversation(3, seed=5, dialog_id="d9")])
    out = _outputs(model, batch)
    tensor = getattr(out, key).clone()
    tensor[1, 2] = value
    outputs = {
        "logits": out.logits,
        "modality_logits": out.modality_logits,
        "coordinator_weights": out.coordinator_weights,
    }
    outputs[key] = tensor
    with pytest.raises(
        ValueError, match=r"^conversation 1 \('d9'\), utterance 2: the model's .* output is not finite"
    ) as err:
        processor.post_process(
            outputs,
            batch["attention_mask"],
            batch["modality_mask"],
            config=model.config,
            conversation_names=["d8", "d9"],
        )
    assert "\n" not in str(err.value)


def test_post_process_regression_stage_one_and_shape_errors(processor):
    torch.manual_seed(0)
    model = ComPForEmotionRecognition(tiny_config(num_labels=1, problem_type="regression")).eval()
    model.set_training_stage(1)
    batch = processor(conversation(3, seed=6))
    out = _outputs(model, batch)
    (prediction,) = processor.post_process(out, batch["attention_mask"], batch["modality_mask"], config=model.config)
    assert prediction.label_names is None and prediction.labels is None and prediction.coordinator_weights is None
    assert prediction.scores.shape == (3,) and prediction.modality_scores.shape == (3, 3)
    np.testing.assert_allclose(prediction.scores, out.logits[0].reshape(3).numpy(), atol=1e-6)
    record = prediction.records()[1]
    assert set(record) == {"utterance", "observed", "sentiment", "modalities", "coordinator_weights"}
    assert record["coordinator_weights"] is None and record["sentiment"] == pytest.approx(float(prediction.scores[1]))
    with pytest.raises(ValueError, match=r"modality_mask has shape \(1, 2, 3\), expected \(1, 3, 3\)"):
        processor.post_process(out, batch["attention_mask"], batch["modality_mask"][:, :2], config=model.config)
    with pytest.raises(ValueError, match="needs the model's logits and modality_logits"):
        processor.post_process(
            {"logits": out.logits}, batch["attention_mask"], batch["modality_mask"], config=model.config
        )
    with pytest.raises(ValueError, match="attention_mask of conversation 0 is not left-aligned"):
        processor.post_process(out, torch.tensor([[0, 1, 1]]), batch["modality_mask"], config=model.config)
