"""Tests of the ComP model: shapes, masking, batch/padding invariance, losses, modulator, ablations, learning,
serialisation (incl. trust_remote_code without the package), golden tensors and config validation."""

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hub_standin import hub_standin
from package_blocker import BLOCK_PACKAGES
from safetensors.torch import load_file

from modeling_comp import MODALITIES, ComPConfig, ComPForEmotionRecognition, ComPModel, checkpoint_layout_state_dict
from modeling_comp.modeling_comp import _modulation_from_errors


ARTIFACTS = Path(__file__).parent / "artifacts"
DIMS = {"audio": 6, "text": 10, "video": 8}


def tiny_config(**overrides) -> ComPConfig:
    kwargs = {
        "audio_dim": DIMS["audio"],
        "text_dim": DIMS["text"],
        "video_dim": DIMS["video"],
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "prompt_dim": 4,
        "num_prototypes": 3,
        "max_utterances": 12,
        "num_labels": 4,
        "hidden_dropout_prob": 0.0,
    }
    kwargs.update(overrides)
    return ComPConfig(**kwargs)


def make_model(seed: int = 0, **overrides) -> ComPForEmotionRecognition:
    torch.manual_seed(seed)
    return ComPForEmotionRecognition(tiny_config(**overrides)).eval()


def make_batch(batch=3, length=7, seed=1, regression=False, p_observed=0.6):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(batch, length, d, generator=g) for m, d in DIMS.items()}
    mask = (torch.rand(batch, length, 3, generator=g) < p_observed).float()
    mask[..., 1] = torch.maximum(mask[..., 1], 1 - mask.amax(-1))  # every utterance keeps a modality
    attention = torch.ones(batch, length)
    attention[0, length - 2 :] = 0
    if regression:
        labels = torch.rand(batch, length, generator=g) * 6 - 3
    else:
        labels = torch.randint(0, 4, (batch, length), generator=g)
    return dict(**feats, modality_mask=mask, attention_mask=attention, labels=labels)


def without_labels(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def pad_batch(batch, extra):
    def pad(x):
        return torch.nn.functional.pad(x, (0, 0, 0, extra)) if x.dim() == 3 else torch.nn.functional.pad(x, (0, extra))

    return {k: pad(v) for k, v in batch.items()}


# -- shapes, masking -------------------------------------------------------------------------------------------
PATTERNS = [p for p in itertools.product([0, 1], repeat=3) if any(p)]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: "".join(m[0] for m, b in zip(MODALITIES, p) if b))
@pytest.mark.parametrize("stage", [1, 2])
def test_every_observed_pattern_gives_finite_outputs(pattern, stage):
    model = make_model()
    model.set_training_stage(stage)
    batch = make_batch()
    batch["modality_mask"] = torch.tensor(pattern, dtype=torch.float32).expand(3, 7, 3).clone()
    out = model(**batch)
    assert out.logits.shape == (3, 7, 4)
    assert out.modality_logits.shape == (3, 7, 3, 4)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.modality_logits).all()
    assert torch.isfinite(out.loss)
    if stage == 2:
        assert out.coordinator_weights.shape == (3, 7, 3)
        real = batch["attention_mask"] > 0
        torch.testing.assert_close(out.coordinator_weights.sum(-1)[real], torch.ones(int(real.sum())))
        assert (out.coordinator_weights[~real] == 0).all()  # padded positions are not computed
    else:
        assert out.coordinator_weights is None


def test_regression_shapes():
    model = make_model(num_labels=1, problem_type="regression")
    out = model(**make_batch(regression=True))
    assert out.logits.shape == (3, 7) and out.modality_logits.shape == (3, 7, 3)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("reference_compat", [False, True])
def test_model_zeroes_masked_features_itself(reference_compat):
    model = make_model(reference_compat=reference_compat)
    batch = without_labels(make_batch())
    zeroed = dict(batch)
    for i, m in enumerate(MODALITIES):
        zeroed[m] = batch[m] * batch["modality_mask"][..., i : i + 1]
    noisy = dict(batch)
    for i, m in enumerate(MODALITIES):  # garbage (large values) where the mask says "missing"
        noisy[m] = torch.where(batch["modality_mask"][..., i : i + 1] > 0, batch[m], torch.full_like(batch[m], 1e3))
    torch.testing.assert_close(model(**zeroed).logits, model(**noisy).logits, rtol=0, atol=0)


def test_defaults_for_masks_are_all_observed():
    model = make_model()
    batch = make_batch()
    explicit = model(
        audio=batch["audio"],
        text=batch["text"],
        video=batch["video"],
        modality_mask=torch.ones(3, 7, 3),
        attention_mask=torch.ones(3, 7),
    )
    implicit = model(audio=batch["audio"], text=batch["text"], video=batch["video"])
    torch.testing.assert_close(explicit.logits, implicit.logits)


# -- invariances ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", [1, 2])
def test_conversation_output_independent_of_batch_and_padding(stage):
    model = make_model()
    model.set_training_stage(stage)
    batch = without_labels(make_batch(batch=4, length=7))
    full = model(**batch)
    alone = model(**{k: v[2:3] for k, v in batch.items()})
    torch.testing.assert_close(full.logits[2:3], alone.logits, atol=1e-6, rtol=0)
    padded = model(**pad_batch(batch, 5))  # T=12 = max_utterances
    real = batch["attention_mask"] > 0
    torch.testing.assert_close(full.logits[real], padded.logits[:, :7][real], atol=1e-6, rtol=0)
    torch.testing.assert_close(full.modality_logits[real], padded.modality_logits[:, :7][real], atol=1e-6, rtol=0)


def test_losses_identical_under_dynamic_padding():
    model = make_model()
    batch = make_batch(batch=4, length=7)
    padded = pad_batch(batch, 5)
    torch.testing.assert_close(model(**batch).loss, model(**padded).loss, atol=1e-6, rtol=0)


def test_reference_mode_depends_on_batch_composition():
    """The released prompt generator softmaxes over every conversation's prototypes (documented defect)."""
    model = make_model(reference_compat=True)
    batch = without_labels(make_batch(batch=4, length=7))
    full = model(**batch).logits[2:3]
    alone = model(**{k: v[2:3] for k, v in batch.items()}).logits
    assert (full - alone).abs().max() > 1e-5


def test_rejects_too_long_conversations_and_wrong_dims():
    model = make_model()
    batch = without_labels(make_batch(length=13))
    with pytest.raises(ValueError, match="max_utterances=12"):
        model(**batch)
    batch = without_labels(make_batch())
    batch["text"] = torch.randn(3, 7, 11)
    with pytest.raises(ValueError, match="text_dim=10"):
        model(**batch)
    batch = make_batch()
    batch["labels"][0, 0] = 9
    # checked on the device without a host synchronisation (torch._assert_async: on CPU it raises at once)
    with pytest.raises(ValueError, match="class ids in \\[0, 4\\)"):
        model(**batch)


# -- losses, modulator, ablations -----------------------------------------------------------------------------
def test_stage_losses_have_the_released_terms():
    model = make_model()
    batch = make_batch()
    model.set_training_stage(1)
    terms1 = model(**batch).loss_terms
    assert set(terms1) == {
        "audio_task",
        "text_task",
        "video_task",
        "audio_private",
        "text_private",
        "video_private",
        "disentanglement",
    }
    model.set_training_stage(2)
    terms2 = model(**batch).loss_terms
    assert set(terms2) == {"fused_task", "audio_task", "text_task", "video_task", "reconstruction", "disentanglement"}
    # the released stage 2 counts the unimodal losses twice: weight 2 by default
    half = make_model(modality_loss_weight=1.0)
    half.set_training_stage(2)
    torch.testing.assert_close(model(**batch).loss_terms["text_task"], 2 * half(**batch).loss_terms["text_task"])


def test_stage1_does_not_train_fusion_coordinator_or_prompts():
    model = make_model()
    model.train()
    model.set_training_stage(1)
    model(**make_batch()).loss.backward()
    untouched = ("comp.coordinator", "fusion", "classifier", "comp.prompt", "comp.decoders")
    for name, param in model.named_parameters():
        if name.startswith(untouched):
            assert param.grad is None or param.grad.abs().sum() == 0, name
    dim = model.config.hidden_size
    text_query = model.comp.propagation_stacks[0].layers[0].qkv.weight.grad[1, :, :dim]  # [modality, in, q|k|v]
    assert text_query.abs().sum() > 0


def grads(model, batch):
    """Gradients by parameter name of the checkpoint layout (one `nn.Linear` per modality)."""
    model.zero_grad()
    model(**batch).loss.backward()
    return checkpoint_layout_state_dict({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def test_gradient_modulator_scales_exactly_the_prototype_layer_columns():
    batch = make_batch(batch=4, length=7)
    on, off = make_model(seed=3), make_model(seed=3, use_gradient_modulation=False)
    for m in (on, off):
        m.train()
        m.set_training_stage(2)
    g_on, g_off = grads(on, batch), grads(off, batch)
    assert set(g_on) == set(g_off)
    out = on(**batch)
    weights = out.modulation_weights
    assert weights.shape == (3, 7) and torch.isfinite(weights).all()
    assert not torch.allclose(weights, torch.ones_like(weights))
    changed = []
    for name in g_on:
        if not torch.equal(g_on[name], g_off[name]):
            changed.append(name)
    expected = {f"comp.prompt_generators.0.{m}.prototype_layer.fc1.weight" for m in MODALITIES}
    assert set(changed) == expected
    for i, m in enumerate(MODALITIES):
        name = f"comp.prompt_generators.0.{m}.prototype_layer.fc1.weight"
        torch.testing.assert_close(g_on[name][:, :7], g_off[name][:, :7] * weights[i][None, :])


def test_gradient_modulator_weights_follow_eq_10():
    # two conversations of two utterances; per-row errors E^u for (audio, text, video)
    errors = torch.tensor([[0.9, 0.2, 0.5], [0.4, 0.1, 0.8], [0.7, 0.3, 0.3], [0.2, 0.6, 0.9]])
    positions = torch.tensor([0, 1, 0, 1])
    weights = _modulation_from_errors(errors, positions, length=3, eps=1e-6)
    per_row = torch.zeros(3, 4)
    for u in range(3):
        for v in range(3):
            if u != v:
                w = errors[:, u] - errors[:, v]
                per_row[u] += 0.5 * (w.sum() - w) / w.sum()
    expected = torch.stack([per_row[:, [0, 2]].mean(1), per_row[:, [1, 3]].mean(1), torch.ones(3)], dim=1)
    torch.testing.assert_close(weights, expected)


def test_gradient_modulator_errors_are_one_minus_true_class_probability():
    model = make_model()
    model.train()
    model.set_training_stage(2)
    batch = make_batch(batch=2, length=5)
    batch["attention_mask"] = torch.ones(2, 5)
    out = model(**batch)
    probs = torch.softmax(out.modality_logits, -1)
    errors = 1 - probs.gather(-1, batch["labels"][..., None, None].expand(-1, -1, 3, 1)).squeeze(-1)
    positions = torch.arange(5).repeat(2)
    expected = _modulation_from_errors(errors.reshape(-1, 3), positions, 5, 1e-6)
    torch.testing.assert_close(out.modulation_weights, expected)


def test_gradient_modulator_guards_a_zero_denominator():
    same = torch.full((4, 3), 0.5)  # identical errors: every E^u - E^v is 0
    weights = _modulation_from_errors(same, torch.tensor([0, 1, 2, 0]), length=3, eps=1e-6)
    torch.testing.assert_close(weights, torch.ones(3, 3))


def _stage2_grad_norms(**overrides):
    model = make_model(seed=5, **overrides)
    model.train()
    model.set_training_stage(2)
    model(**make_batch()).loss.backward()
    gradients = {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}
    return {n: g.abs().sum().item() for n, g in checkpoint_layout_state_dict(gradients).items()}


def test_ablation_switches_change_what_they_name():
    full = _stage2_grad_norms()
    no_kp = _stage2_grad_norms(use_knowledge_propagation=False)
    no_pg = _stage2_grad_norms(use_prompt_generation=False)
    no_cr = _stage2_grad_norms(use_coordinator=False)
    assert full["comp.prompt_fusions.0.audio.weight"] > 0 and full["comp.coordinator.fc1.weight"] > 0
    # w/o KP: no prompts, no prompt generation, no coordinator
    for name in (
        "comp.prompt_fusions.0.audio.weight",
        "comp.prompt_splits.text.fc1.weight",
        "comp.prompt_generators.0.video.prototype_layer.fc1.weight",
        "comp.coordinator.fc1.weight",
    ):
        assert no_kp[name] == 0.0, name
    # w/o PG: prompts are not built from prototypes
    assert full["comp.prompt_generators.0.audio.prototype_layer.fc1.weight"] > 0
    assert no_pg["comp.prompt_generators.0.audio.prototype_layer.fc1.weight"] == 0.0
    assert no_pg["comp.prompt_generators.0.audio.prompt_projection.fc1.weight"] == 0.0
    assert no_pg["comp.prompt_generators.0.audio.residual_projection.weight"] > 0
    # w/o Cr: equal weights, coordinator unused
    assert no_cr["comp.coordinator.fc1.weight"] == 0.0
    model = make_model(use_coordinator=False)
    batch = make_batch()
    real = batch["attention_mask"] > 0
    torch.testing.assert_close(model(**batch).coordinator_weights[real], torch.full((int(real.sum()), 3), 1 / 3))
    # w/o GM: covered exactly by test_gradient_modulator_scales_exactly_the_prototype_layer_columns
    assert make_model(use_gradient_modulation=False).train()(**make_batch()).modulation_weights is None


def test_prototype_scope_batch_is_the_released_softmax():
    batch = without_labels(make_batch(batch=4))
    dialogue = make_model(prototype_scope="dialogue")
    scoped = make_model(prototype_scope="batch")
    assert (dialogue(**batch).logits - scoped(**batch).logits).abs().max() > 1e-6
    one = {k: v[:1] for k, v in batch.items()}
    torch.testing.assert_close(dialogue(**one).logits, scoped(**one).logits)  # same with a single conversation


def test_private_branches_use_their_own_features_by_default():
    batch = make_batch()
    own, released = make_model(seed=2), make_model(seed=2, reference_compat=True)
    for m in (own, released):
        m.train()
        m.set_training_stage(1)
    g_own, g_rel = grads(own, batch), grads(released, batch)
    assert g_own["comp.private_encoders.text.fc1.weight"].abs().sum() > 0
    # released: text/video private encoders receive no task gradient through the private branch, only the
    # disentanglement/reconstruction shaping, so their gradient differs
    assert not torch.allclose(
        g_own["comp.private_encoders.text.fc1.weight"], g_rel["comp.private_encoders.text.fc1.weight"]
    )


# -- learning --------------------------------------------------------------------------------------------------
def planted_batch(g, n=16, length=8):
    """Conversations with a persistent label; text carries it strongly, audio weakly, video not at all."""
    labels = torch.randint(0, 4, (n, 1), generator=g).expand(n, length).clone()
    flip = torch.rand(n, length, generator=g) < 0.2
    labels[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=g)
    centroids = {
        m: torch.randn(4, d, generator=torch.Generator().manual_seed(7 + i)) for i, (m, d) in enumerate(DIMS.items())
    }
    strength = {"audio": 0.5, "text": 1.5, "video": 0.0}
    feats = {m: strength[m] * centroids[m][labels] + torch.randn(n, length, d, generator=g) for m, d in DIMS.items()}
    mask = (torch.rand(n, length, 3, generator=g) < 0.7).float()
    mask[..., 0] = torch.maximum(mask[..., 0], 1 - mask.amax(-1))
    return dict(**feats, modality_mask=mask, attention_mask=torch.ones(n, length), labels=labels)


def test_tiny_model_learns_a_planted_signal():
    torch.manual_seed(0)
    model = ComPForEmotionRecognition(tiny_config(hidden_size=32, hidden_dropout_prob=0.1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    test = planted_batch(torch.Generator().manual_seed(99), n=64)
    losses = []
    for step in range(80):
        model.set_training_stage(1 if step < 30 else 2)
        model.train()
        loss = model(**planted_batch(g)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        out = model(**test)
    accuracy = (out.logits.argmax(-1) == test["labels"]).float().mean().item()
    text_accuracy = (out.modality_logits[:, :, 1].argmax(-1) == test["labels"]).float().mean().item()
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[30:40]) / 10  # stage-2 loss falls
    assert accuracy > 0.6, accuracy  # chance is 0.25
    assert text_accuracy > 0.5, text_accuracy


# -- serialisation ---------------------------------------------------------------------------------------------
def test_save_and_auto_load_round_trip(tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

    model = make_model(
        id2label={0: "hap", 1: "sad", 2: "neu", 3: "ang"}, label2id={"hap": 0, "sad": 1, "neu": 2, "ang": 3}
    )
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert {"configuration_comp.py", "modeling_comp.py"} <= {p.name for p in tmp_path.iterdir()}
    config = json.loads((tmp_path / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForTokenClassification"}
    assert isinstance(AutoConfig.from_pretrained(tmp_path), ComPConfig)
    batch = without_labels(make_batch())
    for auto in (AutoModel, AutoModelForTokenClassification):
        loaded = auto.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, ComPForEmotionRecognition)
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=1e-6)
    assert loaded.config.id2label[0] == "hap"
    base = ComPModel.from_pretrained(tmp_path)
    torch.testing.assert_close(base.input_projections["audio"].weight, model.comp.input_projections["audio"].weight)


def test_regression_checkpoint_round_trip(tmp_path):
    model = make_model(num_labels=1, problem_type="regression")
    model.save_pretrained(tmp_path)
    loaded = ComPForEmotionRecognition.from_pretrained(tmp_path).eval()
    assert loaded.config.is_regression and loaded.config.num_labels == 1
    batch = without_labels(make_batch(regression=True))
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=1e-6)


def test_trust_remote_code_load_without_the_package(tmp_path):
    model = make_model()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    batch = without_labels(make_batch())
    torch.save(batch, tmp_path / "batch.pt")
    expected = model(**batch).logits
    torch.save(expected, tmp_path / "expected.pt")
    script = BLOCK_PACKAGES + textwrap.dedent(
        f"""
        import sys, torch
        try:
            import modeling_comp  # must not be importable here
            raise SystemExit("modeling_comp is importable: the test would not prove anything")
        except ImportError:
            pass
        from transformers import AutoModel, AutoModelForTokenClassification
        batch = torch.load({str(tmp_path / "batch.pt")!r})
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        for auto in (AutoModel, AutoModelForTokenClassification):
            model = auto.from_pretrained({str(ckpt)!r}, trust_remote_code=True).eval()
            assert type(model).__name__ == "ComPForEmotionRecognition", type(model)
            out = model(**batch)
            assert torch.allclose(out.logits, expected, rtol=0, atol=1e-6), (out.logits - expected).abs().max()
        print("remote-ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote-ok" in result.stdout


# -- golden tensors --------------------------------------------------------------------------------------------
def test_golden_tensors():
    """Outputs of a fixed tiny model on fixed inputs (tests/modeling/artifacts/golden_tiny.safetensors).
    Regenerate with `python tests/modeling/make_golden.py` — only for an intended change of the maths."""
    data = load_file(ARTIFACTS / "golden_tiny.safetensors")
    meta = json.loads((ARTIFACTS / "golden_tiny.json").read_text())
    for mode, overrides in meta["modes"].items():
        model = ComPForEmotionRecognition(ComPConfig(**{**meta["config"], **overrides})).eval()
        weights = {k.removeprefix("weight."): v for k, v in data.items() if k.startswith("weight.")}
        model.load_state_dict(weights, strict=True)
        inputs = {k.removeprefix("input."): v for k, v in data.items() if k.startswith("input.")}
        out = model(**inputs)
        torch.testing.assert_close(out.logits, data[f"{mode}.logits"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.modality_logits, data[f"{mode}.modality_logits"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.coordinator_weights, data[f"{mode}.coordinator_weights"], atol=1e-5, rtol=1e-5)


# -- config validation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_hidden_layers": 3}, "num_hidden_layers must be even.*3"),
        (
            {"num_layers": 4},
            "num_layers=4 \\(the former name of num_hidden_layers\\) and num_hidden_layers=2 disagree",
        ),
        ({"hidden_size": 10, "num_attention_heads": 4}, "hidden_size \\(10\\).*num_attention_heads \\(4\\)"),
        ({"prompt_momentum": 1.5}, "prompt_momentum must be a number in \\[0, 1\\], got 1.5"),
        ({"hidden_dropout_prob": -0.1}, "hidden_dropout_prob.*-0.1"),
        ({"prototype_scope": "global"}, "prototype_scope.*'global'"),
        ({"problem_type": "regression", "num_labels": 4}, "regression needs num_labels=1"),
        ({"audio_dim": 0}, "audio_dim must be an integer in \\[1, 16384\\], got 0"),
        ({"max_utterances": 2.5}, "max_utterances must be an integer in \\[1, 1024\\], got 2.5"),
        ({"use_coordinator": "yes"}, "use_coordinator must be True or False, got 'yes'"),
        ({"modality_loss_weight": -1}, "modality_loss_weight must be a finite non-negative number, got -1"),
        ({"modulation_eps": float("nan")}, "modulation_eps must be a finite number > 0, got nan"),
        ({"modulation_eps": 0.0}, "modulation_eps must be a finite number > 0, got 0.0"),
        ({"fused_loss_weight": float("inf")}, "fused_loss_weight must be a finite non-negative number, got inf"),
        ({"private_noise_std": float("nan")}, "private_noise_std must be a finite non-negative number, got nan"),
        ({"prompt_momentum": float("nan")}, "prompt_momentum must be a number in \\[0, 1\\], got nan"),
        ({"initializer_range": float("inf")}, "initializer_range must be None or a finite number > 0, got inf"),
    ],
)
def test_config_validation_errors_quote_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_set_training_stage_validates():
    model = make_model()
    with pytest.raises(ValueError, match="training stage must be 1 or 2, got 0"):
        model.set_training_stage(0)


def test_dropout_matches_inverted_dropout_statistics():
    from modeling_comp.modeling_comp import ComPDropout

    torch.manual_seed(0)
    x = torch.ones(200, 500)
    layer = ComPDropout(0.3).train()
    out = layer(x)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.01
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / 0.7))
    assert abs(out.mean().item() - 1.0) < 0.02
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(ComPDropout(0.0).train()(x), x)


# -- re-saving a loaded checkpoint -----------------------------------------------------------------------------
RESAVE = r"""
import json, os, sys
import numpy as np
try:
    import modeling_comp  # must not be importable here
    raise SystemExit("modeling_comp is importable: the test would not prove anything")
except ImportError:
    pass
from transformers import AutoModel, pipeline

run, in_process_copy, remote_copy = sys.argv[1:4]
conversation = {"audio": np.ones((3, 6)), "text": np.zeros((3, 10)), "video": None}
# a process without the package loads the checkpoint as remote code and saves it again, and pushes it
loaded = AutoModel.from_pretrained(run, trust_remote_code=True)
loaded.save_pretrained(remote_copy)
loaded.push_to_hub("org/comp-resaved")
out = {}
for folder in (run, in_process_copy, remote_copy, "org/comp-resaved"):
    pipe = pipeline("multimodal-emotion-recognition", model=folder, trust_remote_code=True)
    out[folder] = [[u["label"], round(u["score"], 5)] for u in pipe(conversation)]
out["files"] = sorted(os.listdir(remote_copy))
print("RESULT" + json.dumps(out))
"""


def test_a_loaded_checkpoint_saved_again_keeps_its_pipeline(tmp_path):
    from transformers import AutoModel

    from modeling_comp import save_with_processor_and_pipeline

    model = make_model(
        id2label={0: "hap", 1: "sad", 2: "neu", 3: "ang"}, label2id={"hap": 0, "sad": 1, "neu": 2, "ang": 3}
    )
    run, copy, remote_copy = tmp_path / "run", tmp_path / "copy", tmp_path / "remote_copy"
    save_with_processor_and_pipeline(model, None, run)
    AutoModel.from_pretrained(run).save_pretrained(copy)  # the package's own classes
    saved = json.loads((copy / "config.json").read_text())
    assert "multimodal-emotion-recognition" in saved["custom_pipelines"]
    for name in ("pipeline_comp.py", "processing_comp.py", "preprocessor_config.json", "batched_layers.py"):
        assert (copy / name).is_file(), name
    with hub_standin() as hub:
        env = hub.client_env(tmp_path)
        result = subprocess.run(
            [sys.executable, "-c", BLOCK_PACKAGES + textwrap.dedent(RESAVE), str(run), str(copy), str(remote_copy)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        pushed = set(hub.list_files("org/comp-resaved"))
    assert {"pipeline_comp.py", "processing_comp.py", "preprocessor_config.json", "batched_layers.py"} <= pushed
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    assert len(out[str(run)]) == 3
    assert out[str(run)] == out[str(copy)] == out[str(remote_copy)] == out["org/comp-resaved"]
    assert {"pipeline_comp.py", "processing_comp.py", "checkpoint_layout.py"} <= set(out["files"])


def test_a_pipeline_declaration_without_its_files_is_not_saved(tmp_path, monkeypatch):
    import modeling_comp.modeling_comp as modeling

    model = make_model()
    model.config.custom_pipelines = {"multimodal-emotion-recognition": {"impl": "elsewhere.Pipeline", "pt": []}}
    model.save_pretrained(tmp_path)
    assert "custom_pipelines" not in json.loads((tmp_path / "config.json").read_text())
    assert model.config.custom_pipelines  # the model's own config is left as it was
    monkeypatch.setattr(modeling, "_pipeline_sources", lambda config, declared: [])
    model.save_pretrained(tmp_path / "kept")
    assert "custom_pipelines" in json.loads((tmp_path / "kept" / "config.json").read_text())
