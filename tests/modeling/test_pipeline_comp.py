"""The multimodal-emotion-recognition pipeline: in process, from a folder and through the Hub stand-in without the
package, and the checkpoint files `save_with_processor_and_pipeline` writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hub_standin import hub_standin
from package_blocker import BLOCK_PACKAGES
from test_processing_comp import DIMS, tiny_config
from transformers import pipeline

from modeling_comp import (
    PIPELINE_TASK,
    ComPForEmotionRecognition,
    ComPProcessor,
    MultimodalEmotionRecognitionPipeline,
    save_with_processor_and_pipeline,
)


LABELS = ("hap", "sad", "neu")


def tiny_model(**overrides) -> ComPForEmotionRecognition:
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
    torch.manual_seed(0)
    return ComPForEmotionRecognition(tiny_config(**{**labels, **overrides})).eval()


def conversations() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "audio": [rng.normal(size=4), None, rng.normal(size=4)],
            "text": rng.normal(size=(3, 5)).tolist(),
            "video": None,
            "utterance_ids": ["u0", "u1", "u2"],
        },
        {m: rng.normal(size=(4, d)) for m, d in DIMS.items()},
    ]


def expected(model: ComPForEmotionRecognition, conversation: dict) -> dict:
    """The model's own outputs for one conversation (what every pipeline route must report)."""
    batch = ComPProcessor.from_model_config(model.config)(conversation)
    with torch.no_grad():
        out = model(**{k: batch[k] for k in ComPProcessor.model_input_names})
    return {
        "mask": batch["modality_mask"][0].numpy(),
        "logits": out.logits[0].numpy(),
        "modality_logits": out.modality_logits[0].numpy(),
        "weights": out.coordinator_weights[0].numpy(),
    }


def check_classification(result: list[dict], reference: dict) -> None:
    probs = torch.softmax(torch.from_numpy(reference["logits"]), -1).numpy()
    head_probs = torch.softmax(torch.from_numpy(reference["modality_logits"]), -1).numpy()
    assert len(result) == probs.shape[0]
    for j, entry in enumerate(result):
        assert entry["label"] == LABELS[int(probs[j].argmax())]
        assert entry["score"] == pytest.approx(float(probs[j].max()), abs=1e-5)
        assert list(entry["scores"]) == list(LABELS) and sum(entry["scores"].values()) == pytest.approx(1, abs=1e-5)
        assert entry["observed"] == [m for i, m in enumerate(DIMS) if reference["mask"][j, i]]
        for i, m in enumerate(DIMS):
            assert entry["modalities"][m]["label"] == LABELS[int(head_probs[j, i].argmax())]
            assert entry["modalities"][m]["score"] == pytest.approx(float(head_probs[j, i].max()), abs=1e-5)
            assert entry["coordinator_weights"][m] == pytest.approx(float(reference["weights"][j, i]), abs=1e-5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("comp-pipeline")
    model = tiny_model()
    files = save_with_processor_and_pipeline(model, None, folder)
    return folder, model, files


def test_saved_checkpoint_declares_processor_and_pipeline(checkpoint):
    folder, model, files = checkpoint
    assert files == [
        "batched_layers.py",
        "checkpoint_layout.py",
        "config.json",
        "configuration_comp.py",
        "model.safetensors",
        "modeling_comp.py",
        "names.py",
        "pipeline_comp.py",
        "preprocessor_config.json",
        "processing_comp.py",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        PIPELINE_TASK: {
            "impl": "pipeline_comp.MultimodalEmotionRecognitionPipeline",
            "pt": ["AutoModel"],
            "type": "multimodal",
        }
    }
    assert config["auto_map"]["AutoModel"] == "modeling_comp.ComPForEmotionRecognition"
    assert json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]["AutoProcessor"] == (
        "processing_comp.ComPProcessor"
    )
    assert getattr(model.config, "custom_pipelines", None) is None  # the in-memory model is left as it was


def test_pipeline_in_process(checkpoint, tmp_path):
    folder, model, _ = checkpoint
    convs = conversations()
    references = [expected(model, c) for c in convs]
    # A model object: the task is found in this process's registry (importing modeling_comp registered it).
    pipe = pipeline(PIPELINE_TASK, model=model)
    assert isinstance(pipe, MultimodalEmotionRecognitionPipeline)
    results = pipe(convs)
    assert [e["utterance"] for e in results[0]] == ["u0", "u1", "u2"]
    assert [e["utterance"] for e in results[1]] == [0, 1, 2, 3]
    for result, reference in zip(results, references):
        check_classification(result, reference)
    # The saved folder, with the package's own pipeline class (no remote code runs).
    from_folder = pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    check_classification(from_folder(convs[0]), references[0])
    # A checkpoint saved without processor or pipeline (older checkpoints): the processor comes from its config.
    model.save_pretrained(tmp_path / "plain")
    check_classification(pipeline(PIPELINE_TASK, model=str(tmp_path / "plain"))(convs[1]), references[1])
    with pytest.raises(ValueError, match="conversation 'row 0' has 7 utterances, more than .*max_utterances=6"):
        pipe({m: np.zeros((7, d)) for m, d in DIMS.items()})


def test_pipeline_takes_hub_datasets_rows():
    from hub_datasets import load_dataset, model_config_kwargs

    ds = load_dataset("synthetic", "iemocap4", missing_rate=0.5, seed=0, split="test")
    dims = model_config_kwargs(ds)  # the corpus's feature dims, labels and max_utterances
    model = tiny_model(**dims)
    row = ds[0]
    result = pipeline(PIPELINE_TASK, model=model)(row)
    assert [e["utterance"] for e in result] == list(row["utterance_ids"])
    observed = [[m for i, m in enumerate(DIMS) if row["modality_mask"][j, i]] for j in range(len(result))]
    assert [e["observed"] for e in result] == observed
    assert {e["label"] for e in result} <= set(dims["id2label"].values())


def test_regression_pipeline_reports_sentiment():
    model = tiny_model(num_labels=1, problem_type="regression", id2label=None, label2id=None)
    conv = conversations()[1]
    reference = expected(model, conv)
    result = pipeline(PIPELINE_TASK, model=model)(conv)
    for j, entry in enumerate(result):
        assert set(entry) == {"utterance", "observed", "sentiment", "modalities", "coordinator_weights"}
        assert entry["sentiment"] == pytest.approx(float(reference["logits"][j]), abs=1e-5)
        for i, m in enumerate(DIMS):
            assert entry["modalities"][m]["sentiment"] == pytest.approx(float(reference["modality_logits"][j, i]))


def test_text_pipelines_say_comp_has_no_tokenizer(checkpoint):
    folder, _, _ = checkpoint
    with pytest.raises(ValueError, match="is a ComP checkpoint: it has no tokenizer.*multimodal-emotion-recognition"):
        pipeline("token-classification", model=str(folder))


REMOTE = r"""
import json, sys
import numpy as np
try:
    import modeling_comp  # must not be importable here
    raise SystemExit("modeling_comp is importable: the test would not prove anything")
except ImportError:
    pass
from huggingface_hub import HfApi
from transformers import AutoFeatureExtractor, AutoProcessor, pipeline

folder, conversation = sys.argv[1], json.loads(sys.argv[2])
conversation["audio"] = [None if v is None else np.asarray(v) for v in conversation["audio"]]
api = HfApi()
api.create_repo("org/comp-tiny")
api.upload_folder(repo_id="org/comp-tiny", folder_path=folder)
out = {}
for source in (folder, "org/comp-tiny"):
    processors = [auto.from_pretrained(source, trust_remote_code=True) for auto in (AutoProcessor, AutoFeatureExtractor)]
    assert all(type(p).__name__ == "ComPProcessor" for p in processors), processors
    assert not type(processors[0]).__module__.startswith("modeling_comp"), type(processors[0]).__module__
    pipe = pipeline("multimodal-emotion-recognition", model=source, trust_remote_code=True)
    assert type(pipe).__name__ == "MultimodalEmotionRecognitionPipeline"
    assert type(pipe.feature_extractor).__name__ == "ComPProcessor"
    out[source] = pipe(conversation)
    try:
        pipe({"audio": np.full((2, 4), np.nan), "text": None, "video": None})
    except ValueError as err:
        out[source + ":error"] = str(err)
print("RESULT" + json.dumps(out))
"""


def test_pipeline_with_remote_code_from_folder_and_hub_without_the_package(checkpoint, tmp_path):
    folder, model, _ = checkpoint
    conv = conversations()[0]
    reference = expected(model, conv)
    payload = {**conv, "audio": [None if v is None else v.tolist() for v in conv["audio"]]}
    with hub_standin() as hub:
        env = hub.client_env(tmp_path)
        proc = subprocess.run(
            [sys.executable, "-c", BLOCK_PACKAGES + textwrap.dedent(REMOTE), str(folder), json.dumps(payload)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "pipeline_comp.py" in hub.list_files("org/comp-tiny")
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    for source in (str(folder), "org/comp-tiny"):
        check_classification(result[source], reference)
        assert [e["utterance"] for e in result[source]] == ["u0", "u1", "u2"]
        assert result[source + ":error"] == (
            "conversation 'row 0': audio feature 0 of utterance 0 is nan (not finite); observed features must be "
            "finite and within ±1e+06"
        )


# -- the README's snippet, the Trainer, and hostile inputs ---------------------------------------------------------
README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def readme_pipeline_snippet() -> str:
    """The README's Python block that runs the pipeline, exactly as a user copies it."""
    import re

    with open(README, encoding="utf-8") as handle:
        blocks = re.findall(r"```python\n(.*?)```", handle.read(), re.S)
    snippets = [b for b in blocks if PIPELINE_TASK in b and "pipeline(" in b]
    assert len(snippets) == 1, "the README should hold one pipeline snippet"
    return snippets[0]


def synthetic_sized_model(folder, num_labels: int = 4):
    """A tiny model with the feature sizes of the synthetic IEMOCAP-shaped corpus, saved as a training run saves it."""
    from hub_datasets import load_dataset, model_config_kwargs

    kwargs = model_config_kwargs(load_dataset("synthetic", "iemocap4", split="test"))
    sizes = {k: kwargs[k] for k in ("audio_dim", "text_dim", "video_dim", "max_utterances", "num_labels")}
    if "id2label" in kwargs:
        sizes["id2label"] = kwargs["id2label"]
    torch.manual_seed(0)
    model = ComPForEmotionRecognition(tiny_config(**sizes)).eval()
    save_with_processor_and_pipeline(model, None, folder)
    return model


def test_readme_pipeline_snippet_runs_as_written(tmp_path):
    snippet = readme_pipeline_snippet()
    assert "audio_features =" in snippet or "audio_features, text_features =" in snippet  # defined, not assumed
    folder = tmp_path / "model"
    model = synthetic_sized_model(folder)
    code = snippet.replace("runs/<run>/model", str(folder))
    assert code != snippet, "the snippet no longer names runs/<run>/model"
    lines = code.rstrip().splitlines()
    lines[-1] = "result = " + lines[-1]  # keep what the last line shows
    namespace: dict = {}
    exec(compile("\n".join(lines), "README.md", "exec"), namespace)  # noqa: S102 -- the README's own code
    result = namespace["result"]
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    n = len(namespace["conversation"]["audio"])
    assert len(result) == n and [e["utterance"] for e in result] == list(range(n))
    assert all(e["observed"] == ["audio", "text"] and e["label"] in names for e in result)
    assert all(np.isfinite(e["score"]) for e in result)


def _trainer(model, data, tmp_path, remove_unused_columns: bool):
    from transformers import Trainer, TrainingArguments

    from modeling_comp import ComPDataCollator

    args = TrainingArguments(
        output_dir=str(tmp_path / f"trainer-{remove_unused_columns}"),
        use_cpu=True,
        max_steps=1,
        per_device_train_batch_size=2,
        remove_unused_columns=remove_unused_columns,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    collator = ComPDataCollator(processor=ComPProcessor.from_model_config(model.config))
    return Trainer(model=model, args=args, train_dataset=data, data_collator=collator)


def test_trainer_trains_one_step_with_remove_unused_columns_false(tmp_path):
    """What docs/processor.md says: Trainer works with remove_unused_columns=False, and fails without it."""
    from hub_datasets import load_dataset

    data = load_dataset("synthetic", "iemocap4", split="train", num_conversations=10)
    model = synthetic_sized_model(tmp_path / "m").train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = _trainer(model, data, tmp_path, remove_unused_columns=False).train()
    assert result.global_step == 1 and np.isfinite(result.training_loss)
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters()), "no weight changed"
    with pytest.raises(ValueError, match="has no 'conversation_index' field"):
        _trainer(model, data, tmp_path, remove_unused_columns=True).train()
    with open(os.path.join(os.path.dirname(README), "docs", "processor.md"), encoding="utf-8") as handle:
        assert "remove_unused_columns=False" in handle.read()


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "ckpt"
    model = tiny_model()
    save_with_processor_and_pipeline(model, None, folder)
    return folder, model


def _rewrite_processor(folder, **changes):
    path = folder / "preprocessor_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"audio_dim": -1}, "audio_dim must be a positive integer up to 65536 or None, got -1"),
        ({"audio_dim": 10**9}, "audio_dim must be a positive integer up to 65536"),
        ({"audio_dim": "4"}, "audio_dim must be a positive integer"),
        ({"audio_dim": 4.0}, "audio_dim must be a positive integer"),
        ({"text_dim": True}, "text_dim must be a positive integer"),
        ({"max_utterances": 10**9}, "max_utterances must be a positive integer up to 65536"),
        ({"max_utterances": 0}, "max_utterances must be a positive integer"),
        ({"max_abs_value": -1}, "max_abs_value must be a positive finite number or None, got -1"),
        ({"max_abs_value": float("nan")}, "max_abs_value must be a positive finite number"),
        ({"max_abs_value": float("inf")}, "max_abs_value must be a positive finite number"),
        ({"max_abs_value": "1e6"}, "max_abs_value must be a positive finite number"),
        ({"pad_to": "both"}, "pad_to must be one of"),
        ({"label_pad_value": 1.5}, "label_pad_value must be an integer"),
        ({"problem_type": "multi_label_classification"}, "problem_type must be one of"),
        ({"model_input_names": ["audio", "text", "video", "attention_mask"]}, "unknown field(s) 'model_input_names'"),
        ({"return_attention_mask": False, "sampling_rate": 16000}, "unknown field(s) 'return_attention_mask', 'sampl"),
        ({"feature_extractor_type": "WhisperFeatureExtractor"}, "feature_extractor_type='WhisperFeatureExtractor'"),
        ({"auto_map": ["processing_comp.ComPProcessor"]}, "auto_map must map Auto class names to class paths"),
        (
            {"pad_to": "max_utterances", "max_utterances": 65536, "audio_dim": 65536},
            "padding to max_utterances=65536 with features of total dimension 65544",
        ),
    ],
)
def test_tampered_preprocessor_config_is_refused_in_one_line(saved, changes, needle):
    folder, _ = saved
    _rewrite_processor(folder, **changes)
    expected = f"{folder / 'preprocessor_config.json'}: ComPProcessor"
    with pytest.raises(ValueError) as info:
        ComPProcessor.from_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message and message.startswith(expected) and needle in message, message
    if "feature_extractor_type" in changes:
        # AutoFeatureExtractor builds the class the file names; the pipeline refuses anything but a ComPProcessor
        needle = "needs a ComPProcessor, got WhisperFeatureExtractor"
    else:
        from transformers import AutoFeatureExtractor

        with pytest.raises(ValueError, match=r"^(.*/)?preprocessor_config\.json: ComPProcessor") as info:
            AutoFeatureExtractor.from_pretrained(folder)
        assert needle in str(info.value)
    # the pipeline does not fall back to a processor of its own making: it refuses the checkpoint
    with pytest.raises(ValueError) as info:
        pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    assert "\n" not in str(info.value) and needle in str(info.value)


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2, 3]", '"a string"', "null"])
def test_preprocessor_config_that_is_not_a_json_object_is_refused(saved, content):
    folder, _ = saved
    (folder / "preprocessor_config.json").write_text(content)
    with pytest.raises((ValueError, OSError)) as info:
        ComPProcessor.from_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message and "preprocessor_config.json" in message, message
    with pytest.raises((ValueError, OSError)) as info:
        pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    assert "preprocessor_config.json" in str(info.value)


def test_checkpoint_without_processor_derives_it_and_says_so(saved, caplog):
    folder, model = saved
    os.remove(folder / "preprocessor_config.json")
    import logging

    with caplog.at_level(logging.WARNING):
        pipe = pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    assert "has no preprocessor_config.json" in caplog.text
    assert pipe.feature_extractor.audio_dim == model.config.audio_dim


def test_pipeline_refuses_a_checkpoint_whose_weights_do_not_match(saved):
    from safetensors.torch import load_file, save_file

    folder, _ = saved
    weights = load_file(folder / "model.safetensors")
    dropped = sorted(weights)[0]
    save_file(
        {k: v for k, v in weights.items() if k != dropped}, folder / "model.safetensors", metadata={"format": "pt"}
    )
    with pytest.raises(ValueError) as info:
        pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    message = str(info.value)
    assert "\n" not in message and "missing keys" in message and "does not match" in message, message
    save_file({**weights, "extra.weight": torch.zeros(2)}, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="unexpected keys: extra.weight"):
        pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})  # intact again: served
    pipe = pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    assert len(pipe(conversations()[1])) == 4


def test_no_nan_is_ever_served(saved):
    """max_abs_value=None (settable from a checkpoint) lets 1e30 through the processor; whatever the model then
    computes, the pipeline serves finite numbers or refuses in one line naming the utterance, alone or batched."""
    folder, _ = saved
    _rewrite_processor(folder, max_abs_value=None)
    pipe = pipeline(PIPELINE_TASK, model=str(folder), pipeline_class=MultimodalEmotionRecognitionPipeline)
    normal = conversations()[1]
    huge = {m: np.array(v, copy=True) for m, v in normal.items()}
    huge["audio"][1, 0] = 1e30
    for batch_size in (1, 2):
        try:
            results = pipe([normal, huge], batch_size=batch_size)
        except ValueError as err:
            assert "\n" not in str(err) and "utterance" in str(err) and "not finite" in str(err), str(err)
            continue
        for result in results:
            for entry in result:
                assert np.isfinite(entry["score"]) and all(np.isfinite(list(entry["scores"].values())))
                assert all(np.isfinite(v) for v in entry["coordinator_weights"].values())


def test_non_finite_model_output_is_refused_naming_the_utterance(monkeypatch):
    model = tiny_model()
    pipe = pipeline(PIPELINE_TASK, model=model)
    original = model.forward

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        out.modality_logits[0, 2, 1, 0] = float("inf")
        return out

    monkeypatch.setattr(model, "forward", poisoned)
    conversation = {**conversations()[1], "dialog_id": "d7"}
    with pytest.raises(
        ValueError, match=r"^conversation 0 \('d7'\), utterance 2: the model's modality heads output is not finite"
    ):
        pipe(conversation)


@pytest.mark.parametrize(
    "ids, needle",
    [
        ("abcd", "utterance_ids must be a list with one id per utterance, got str"),
        (b"abcd", "got bytes"),
        (7, "got int"),
        ({"a": 1}, "got dict"),
        (["a", "b", "c"], "utterance_ids has 3 entries for 4 utterances"),
        ([], "utterance_ids has 0 entries for 4 utterances"),
        (["a", None, "c", "d"], r"utterance_ids\[1\] is None, expected a string or an integer"),
        (["a", ["b"], "c", "d"], r"utterance_ids\[1\] is \['b'\]"),
        ([True, False, 1, 2], r"utterance_ids\[0\] is True"),
        (["a", "b", "a", "d"], "utterance_ids names utterance 'a' more than once"),
        ([1, "1", 2, 3], "utterance_ids names utterance '1' more than once"),
    ],
)
def test_bad_utterance_ids_are_refused_in_one_line(ids, needle):
    pipe = pipeline(PIPELINE_TASK, model=tiny_model())
    with pytest.raises(ValueError, match=needle) as info:
        pipe({**conversations()[1], "utterance_ids": ids})
    assert "\n" not in str(info.value)


def test_a_generator_of_conversations_is_streamed():
    pipe = pipeline(PIPELINE_TASK, model=tiny_model())
    rows = [{m: np.random.default_rng(i).normal(size=(3, d)).tolist() for m, d in DIMS.items()} for i in range(3)]
    expected_labels = [[e["label"] for e in pipe(row)] for row in rows]
    assert [[e["label"] for e in result] for result in pipe(row for row in rows)] == expected_labels


def test_utterance_ids_as_an_array_are_accepted():
    pipe = pipeline(PIPELINE_TASK, model=tiny_model())
    result = pipe({**conversations()[1], "utterance_ids": np.array(["a", "b", "c", "d"])})
    assert [e["utterance"] for e in result] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "inputs, needle",
    [
        ([], "got an empty list of conversations"),
        ((), "got an empty list of conversations"),
        ("abc", "takes a conversation .* got str"),
        (None, "takes a conversation .* got NoneType"),
        (5, "got int"),
        (2.5, "got float"),
        ([{"audio": None, "text": None, "video": None}], "has no features"),
        ([{**conversations()[1], "dialog_id": "ok"}, "abc"], "takes a conversation .* got str"),
        ([["not", "a", "mapping"]], "got list"),
    ],
)
def test_pipeline_refuses_what_is_not_a_conversation(inputs, needle):
    pipe = pipeline(PIPELINE_TASK, model=tiny_model())
    with pytest.raises(ValueError, match=needle) as info:
        pipe(inputs)
    assert "\n" not in str(info.value)
