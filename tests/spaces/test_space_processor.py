"""The Space serves a checkpoint with the processor saved beside it (preprocessor_config.json), refuses a malformed
one in one line, says when it falls back to the model's config, and predicts through the library's
ComPProcessor.post_process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from comp_space.inference import load_checkpoint, predict, run_model
from comp_space.inputs import MAX_ABS_FEATURE, InputError, load_examples
from space_testing import make_tiny_model

from modeling_comp import ComPPrediction, ComPProcessor, save_with_processor_and_pipeline


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "with-processor"
    model = make_tiny_model(seed=1)
    processor = ComPProcessor.from_model_config(model.config, max_abs_value=50.0)
    save_with_processor_and_pipeline(model, processor, folder)
    return folder


@pytest.fixture(scope="module")
def conversation(tiny_examples):
    return load_examples(tiny_examples)["synthetic_test_001"]


def test_the_saved_processor_is_served(saved, conversation):
    ckpt = load_checkpoint(str(saved))
    assert ckpt.saved_processor is not None and ckpt.processor_origin == "preprocessor_config.json"
    assert ckpt.processor.max_abs_value == 50.0  # the checkpoint's own bound (tighter than the Space's)
    run = run_model(ckpt, conversation, np.ones((conversation.num_utterances, 3), dtype=bool))
    assert isinstance(run, ComPPrediction) and run.labels == [ckpt.label_names[k] for k in run.scores.argmax(-1)]
    bad = conversation.features["audio"].copy()
    bad[0, 0] = 60.0  # within the Space's bound, beyond the checkpoint's processor's
    conversation.features["audio"], original = bad, conversation.features["audio"]
    try:
        with pytest.raises(InputError, match=r"audio feature 0 of utterance 0 is 60 .*within ±50"):
            predict(ckpt, conversation, np.ones((conversation.num_utterances, 3), dtype=bool))
    finally:
        conversation.features["audio"] = original


def test_the_spaces_bound_applies_when_the_saved_processor_checks_finiteness_only(saved):
    config = json.loads((saved / "preprocessor_config.json").read_text())
    (saved / "preprocessor_config.json").write_text(json.dumps({**config, "max_abs_value": None}))
    ckpt = load_checkpoint(str(saved))
    assert ckpt.saved_processor.max_abs_value is None and ckpt.processor.max_abs_value == MAX_ABS_FEATURE


def test_a_checkpoint_without_a_processor_says_where_its_processor_comes_from(tiny_checkpoint, caplog):
    with caplog.at_level("WARNING", logger="comp_space.inference"):
        ckpt = load_checkpoint(str(tiny_checkpoint), name="tiny")
    assert (
        "checkpoint 'tiny': derived from config.json (the checkpoint has no preprocessor_config.json)" in caplog.text
    )
    assert ckpt.saved_processor is None
    assert ckpt.processor_origin == "derived from config.json (the checkpoint has no preprocessor_config.json)"
    assert ckpt.processor.max_abs_value == MAX_ABS_FEATURE


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"audio_dim": -1}, "audio_dim must be a positive integer"),
        ({"max_utterances": 10**9}, "max_utterances must be a positive integer up to 65536"),
        ({"max_abs_value": -1}, "max_abs_value must be a positive finite number"),
        ({"model_input_names": ["audio", "text", "video", "attention_mask"]}, "unknown field(s) 'model_input_names'"),
        ({"text_dim": 3}, "preprocessor_config.json does not fit its model"),
    ],
)
def test_a_malformed_saved_processor_is_refused_in_one_line(saved, change, needle):
    config = json.loads((saved / "preprocessor_config.json").read_text())
    (saved / "preprocessor_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(InputError) as err:
        load_checkpoint(str(saved), name="tampered")
    message = str(err.value)
    assert "\n" not in message and needle in message and "tampered" in message, message
    assert str(saved) not in message  # visitors never see server paths


def test_a_processor_file_that_is_not_json_is_refused(saved):
    (saved / "preprocessor_config.json").write_text("{oops")
    with pytest.raises(InputError, match="cannot load the processor of checkpoint 'x'") as err:
        load_checkpoint(str(saved), name="x")
    assert str(saved) not in str(err.value)


_LOAD_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
from comp_space.inference import load_checkpoint
ckpt = load_checkpoint(sys.argv[2])
print(ckpt.processor_origin, ckpt.processor.max_abs_value)
"""


def test_a_hub_checkpoints_saved_processor_is_served(saved, tmp_path):
    """Through the Hub stand-in (a subprocess: the endpoint is read when huggingface_hub is imported)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hub_standin import hub_standin

    root = Path(__file__).resolve().parents[2]
    with hub_standin() as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "COMP_"))}
        env.update(
            HF_ENDPOINT=hub.endpoint,
            HF_HUB_DISABLE_XET="1",
            HF_HOME=str(tmp_path / "hf-home"),
            HF_HUB_DISABLE_TELEMETRY="1",
            OMP_NUM_THREADS="1",
            PYTHONPATH=str(root),
        )
        push = (
            "import sys\nfrom huggingface_hub import HfApi\napi = HfApi(token='hf_standin')\n"
            "api.create_repo(sys.argv[1])\napi.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])\n"
        )
        pushed = subprocess.run(
            [sys.executable, "-c", push, "standin-org/with-processor", str(saved)],
            capture_output=True, text=True, env=env, timeout=240,
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        loaded = subprocess.run(
            [sys.executable, "-c", _LOAD_SCRIPT, str(root / "spaces" / "comp-demo"), "standin-org/with-processor"],
            capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path,
        )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "preprocessor_config.json 50.0"
