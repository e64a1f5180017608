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
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(
            HF_ENDPOINT=hub.endpoint,
            HF_HUB_DISABLE_XET="1",
            HF_HUB_OFFLINE="0",
            HF_HOME=str(tmp_path / "hf"),
            HF_MODULES_CACHE=str(tmp_path / "modules"),
            HF_TOKEN="hf_standin",
        )
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
