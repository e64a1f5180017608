"""The converter from the authors' released state_dict, and reference-compatible parity with an independent
re-statement of the released forward (tests/modeling/comp_released_reference.py)."""

import subprocess
import sys

import pytest
import torch
from comp_released_reference import released_forward

from modeling_comp import ComPConfig, ComPForEmotionRecognition
from modeling_comp.convert_original_checkpoint import (
    ConversionError,
    config_from_state_dict,
    convert_state_dict,
    load_original_state_dict,
    main,
    released_state_dict_keys,
)


def released_state_dict(seed=0, **overrides):
    cfg = {
        "audio_dim": 6,
        "text_dim": 10,
        "video_dim": 8,
        "hidden_size": 16,
        "num_layers": 4,
        "num_attention_heads": 2,
        "prompt_dim": 4,
        "num_prototypes": 5,
        "max_utterances": 12,
        "num_labels": 4,
    }
    cfg.update(overrides)
    shapes = released_state_dict_keys(ComPConfig(**cfg))
    g = torch.Generator().manual_seed(seed)
    # PyTorch-default-like scale (1/sqrt(fan_in)), so activations stay in the range of a real model
    return {k: torch.randn(s, generator=g) / s[-1] ** 0.5 for k, s in shapes.items()}, cfg


def test_released_parameter_count_matches_the_spec():
    # the released model has 8,112,627 parameters for MOSI (hidden 256, depth 4, L 65, C 1), 8,122,347 for IEMOCAP-4
    mosi = released_state_dict_keys(
        ComPConfig(
            audio_dim=512, text_dim=1024, video_dim=1024, max_utterances=65, num_labels=1, problem_type="regression"
        )
    )
    iemocap = released_state_dict_keys(ComPConfig(max_utterances=150, num_labels=4))
    count = lambda shapes: sum(torch.Size(s).numel() for s in shapes.values())  # noqa: E731
    assert count(mosi) == 8_112_627
    assert count(iemocap) == 8_122_347


def test_config_read_from_shapes():
    state, cfg = released_state_dict()
    config = config_from_state_dict(state, num_attention_heads=2)
    for key in (
        "audio_dim",
        "text_dim",
        "video_dim",
        "hidden_size",
        "num_layers",
        "prompt_dim",
        "num_prototypes",
        "max_utterances",
        "num_labels",
    ):
        assert getattr(config, key) == cfg[key], key
    assert config.reference_compat and config.problem_type == "single_label_classification"


@pytest.mark.parametrize("stage", [2, 1])
def test_converted_model_matches_the_released_forward(stage):
    state, cfg = released_state_dict(seed=stage)
    model = convert_state_dict(state, num_attention_heads=2, prompt_momentum=0.3)
    model.set_training_stage(stage)
    g = torch.Generator().manual_seed(10)
    batch, length, padded = 3, 7, cfg["max_utterances"]
    feats = {m: torch.randn(batch, length, cfg[f"{m}_dim"], generator=g) for m in ("audio", "text", "video")}
    mask = (torch.rand(batch, length, 3, generator=g) < 0.6).float()
    mask[..., 0] = torch.maximum(mask[..., 0], 1 - mask.amax(-1))
    attention = torch.ones(batch, length)
    attention[1, 5:] = 0
    # what the released collate produces: zeros for missing modalities and for padded utterances
    feats = {m: x * mask[..., i : i + 1] * attention[..., None] for i, (m, x) in enumerate(feats.items())}
    with torch.no_grad():
        ours = model(**feats, modality_mask=mask, attention_mask=attention)

        def pad(x):
            return torch.nn.functional.pad(x, (0, 0, 0, padded - length) if x.dim() == 3 else (0, padded - length))

        ref = released_forward(
            state,
            pad(feats["audio"]),
            pad(feats["text"]),
            pad(feats["video"]),
            pad(mask),
            pad(attention),
            num_heads=2,
            lam=0.3,
            first_stage=stage == 1,
        )
    real = attention > 0
    assert (ours.logits[real] - ref[0][:, :length][real]).abs().max() <= 1e-5
    for i in range(3):
        assert (ours.modality_logits[:, :, i][real] - ref[1 + i][:, :length][real]).abs().max() <= 1e-5


def test_converter_drops_never_used_modules_and_round_trips(tmp_path):
    state, _ = released_state_dict()
    path = tmp_path / "released.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert main(["--checkpoint", str(path), "--output", str(tmp_path / "out"), "--num_attention_heads", "2"]) == 0
    model = ComPForEmotionRecognition.from_pretrained(tmp_path / "out")
    assert model.config.reference_compat
    n_ours = sum(p.numel() for p in model.parameters())
    dropped = sum(
        v.numel()
        for k, v in state.items()
        if "_2.proj_n" in k or "prop_proj_rev" in k and k.split(".")[0].endswith("_2")
    )
    assert n_ours == sum(v.numel() for v in state.values()) - dropped
    torch.testing.assert_close(model.fusion.weight, state["proj1.weight"])
    torch.testing.assert_close(
        model.comp.propagation_stacks[1].layers[1].mlp.fc2.bias[2, 0],  # [modality, 1, out]
        state["block2.blocks.1.Transformer_v.mlp.fc2.bias"],
    )


def test_converter_errors_list_the_keys(tmp_path):
    state, _ = released_state_dict()
    bad = dict(state)
    bad["mystery.weight"] = torch.zeros(2)
    del bad["router.fc2.bias"]
    bad["proj1.weight"] = torch.zeros(3, 3)
    with pytest.raises(ConversionError) as err:
        convert_state_dict(bad)
    message = str(err.value)
    assert "unmapped keys: mystery.weight" in message
    assert "proj1.weight: (3, 3), expected (48, 48)" in message
    assert "comp.coordinator.fc2.bias" in message


class EvilPayload:
    """Stands for any pickled object that is not a tensor (a whole model, custom classes, ...)."""


def test_converter_refuses_pickled_objects_and_reports_cli_errors(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"obj": EvilPayload()}, path)
    with pytest.raises(ConversionError, match="weights_only=True"):
        load_original_state_dict(path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modeling_comp.convert_original_checkpoint",
            "--checkpoint",
            str(tmp_path / "missing.pth"),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert result.returncode == 2
    assert "checkpoint file not found" in result.stderr and "Traceback" not in result.stderr


def test_converter_refuses_a_1d_input_projection_in_one_line():
    state, _ = released_state_dict()
    state["a_in_proj.0.weight"] = torch.zeros(16)
    with pytest.raises(ConversionError, match=r"^`a_in_proj.0.weight` has shape \(16,\); a 2-D tensor was expected$"):
        convert_state_dict(state)


def test_converter_checks_claimed_shapes_before_allocating(tmp_path):
    """A small .pth of stride-0 expanded tensors claiming 60000 x 60000 is refused before any allocation."""
    state, _ = released_state_dict()
    huge = torch.zeros(1).expand(60_000, 60_000)
    state["a_in_proj.0.weight"] = huge
    state["t_in_proj.0.weight"] = huge
    path = tmp_path / "bomb.pth"
    torch.save(state, path)
    assert path.stat().st_size < 1_000_000
    loaded = load_original_state_dict(path)
    with pytest.raises(ConversionError, match=r"ComPConfig.audio_dim must be an integer in \[1, 16384\], got 60000$"):
        convert_state_dict(loaded)
    state["a_in_proj.0.weight"] = torch.zeros(1).expand(16, 70_000)  # one dimension beyond the bound
    with pytest.raises(ConversionError, match=r"`a_in_proj.0.weight` has shape \(16, 70000\): every size must be in"):
        convert_state_dict(state)


def test_converter_records_the_input_features():
    state, _ = released_state_dict()
    assert convert_state_dict(state).config.modality_features is None  # tiny dims: not the paper's features
    from modeling_comp import CORPUS_MODALITY_FEATURES

    converted = convert_state_dict(state, corpus="iemocap4")
    assert converted.config.modality_features == CORPUS_MODALITY_FEATURES["iemocap4"]
    config = config_from_state_dict(
        {**state, **released_dims_state(512, 1024, 1024)}, num_attention_heads=2
    ).modality_features
    assert config == CORPUS_MODALITY_FEATURES["mosi"]


def released_dims_state(audio, text, video):
    """Input projections with the paper's feature dimensions (only their shapes are read)."""
    return {
        f"{m}_in_proj.0.weight": torch.zeros(1).expand(16, d) for m, d in (("a", audio), ("t", text), ("v", video))
    }
