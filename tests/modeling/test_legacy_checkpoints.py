"""Checkpoints written by the model code before the conventional-API rewrite (config field `num_layers`,
`training_stage` stored in config.json) keep loading, with identical outputs and losses
(artefacts written once by tests/modeling/make_legacy_checkpoints.py with the old code)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_comp import ComPForEmotionRecognition


ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.mark.parametrize("name", ["saved", "converted"])
def test_legacy_checkpoint_loads_with_identical_outputs(name):
    data = load_file(ARTIFACTS / "legacy_outputs.safetensors")
    batch = {k.removeprefix("input."): v for k, v in data.items() if k.startswith("input.") and k != "input.labels"}
    labels = data["input.labels"]
    model = ComPForEmotionRecognition.from_pretrained(ARTIFACTS / f"legacy_{name}").eval()
    config = model.config
    assert config.num_hidden_layers == (2 if name == "saved" else 4)
    assert "training_stage" not in config.to_dict()
    # the old code stored the stage in the config ("saved" holds training_stage=1): it is read as the weights'
    # provenance (`trained_stage`), so such a model starts in the stage it was saved in
    assert config.trained_stage == model.training_stage == (1 if name == "saved" else 2)
    model.set_training_stage(2)  # the recorded outputs are stage-2 (inference) outputs
    with torch.no_grad():
        out = model(**batch)
        tol = {"atol": 1e-5, "rtol": 1e-5}
        torch.testing.assert_close(out.logits, data[f"{name}.logits"], **tol)
        torch.testing.assert_close(out.modality_logits, data[f"{name}.modality_logits"], **tol)
        torch.testing.assert_close(out.coordinator_weights, data[f"{name}.coordinator_weights"], **tol)
        torch.testing.assert_close(model.comp(**batch).last_hidden_state, data[f"{name}.fused_hidden_state"], **tol)
        for stage in (1, 2):
            model.set_training_stage(stage)
            loss = model(**batch, labels=labels).loss
            torch.testing.assert_close(loss.reshape(1), data[f"{name}.stage{stage}_loss"], **tol)
