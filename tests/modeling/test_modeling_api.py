"""The conventional transformers API of ComP (outputs, config names, attention implementations, gradient
checkpointing, torch.compile), the host-synchronisation-free forward, and hardening against bad inputs."""

import collections
import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_modeling_comp import make_batch, make_model, tiny_config, without_labels
from torch.utils._python_dispatch import TorchDispatchMode

from modeling_comp import (
    CORPUS_MODALITY_FEATURES,
    MODALITIES,
    ComPConfig,
    ComPForEmotionRecognition,
    ComPModel,
    load_comp_checkpoint,
    utterance_index_from_attention_mask,
)


def forward_all(model, batch):
    out = model(**batch)
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


# -- masked positions cannot matter --------------------------------------------------------------------------
@pytest.mark.parametrize("reference_compat", [False, True])
@pytest.mark.parametrize("stage", [1, 2])
def test_nan_and_inf_where_masked_or_padded_change_no_output(stage, reference_compat):
    model = make_model(reference_compat=reference_compat).train()  # dropout 0: deterministic in train mode
    model.set_training_stage(stage)
    clean = make_batch()
    dirty = dict(clean)
    mask, real = clean["modality_mask"] > 0, clean["attention_mask"] > 0
    for i, m in enumerate(MODALITIES):
        poisoned = torch.where(mask[..., i : i + 1], clean[m], torch.full_like(clean[m], float("nan")))
        dirty[m] = torch.where(real[..., None], poisoned, torch.full_like(clean[m], float("inf")))
    assert not torch.isfinite(dirty["audio"]).all() and not torch.isfinite(dirty["video"]).all()
    expected, got = forward_all(model, clean), forward_all(model, dirty)
    assert set(expected) == set(got)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    model.zero_grad()
    model(**dirty).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# -- bad inputs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "length"), [(0, 7), (3, 0)])
def test_empty_batch_or_conversations_are_refused(batch, length):
    model = make_model()
    inputs = without_labels(make_batch(batch=max(batch, 1), length=max(length, 1)))
    inputs = {k: v[:batch, :length] for k, v in inputs.items()}
    with pytest.raises(ValueError, match="at least one conversation of at least one utterance position, got"):
        model(**inputs)


def test_float64_and_integer_inputs_are_cast():
    model = make_model()
    batch = without_labels(make_batch())
    doubled = {k: v.double() for k, v in batch.items()}
    torch.testing.assert_close(model(**doubled).logits, model(**batch).logits)
    labels = make_batch()["labels"]
    assert torch.isfinite(model(**doubled, labels=labels).loss)


def test_float_class_labels_are_refused():
    model = make_model()
    batch = make_batch()
    batch["labels"] = batch["labels"].float() + 0.5
    with pytest.raises(ValueError, match="must be integer class ids in \\[0, 4\\) or -100, got dtype torch.float32"):
        model(**batch)


def test_a_bert_config_is_refused_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    with pytest.raises(
        ValueError, match="^ComPConfig: this config has model_type 'bert'; a ComP config.json has"
    ) as e:
        ComPConfig.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)


def test_load_comp_checkpoint_refuses_a_missing_tensor(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["comp.coordinator.fc2.bias"]
    weights["comp.mystery"] = torch.zeros(2)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing keys: comp.coordinator.fc2.bias") as e:
        load_comp_checkpoint(tmp_path)
    assert "unexpected keys: comp.mystery" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(load_comp_checkpoint(tmp_path, strict=False), ComPForEmotionRecognition)


# -- config ------------------------------------------------------------------------------------------------------
def test_num_hidden_layers_is_the_depth_and_num_layers_an_alias(tmp_path):
    config = tiny_config(num_hidden_layers=4)
    assert config.num_hidden_layers == 4 and config.num_layers == 4
    assert "num_hidden_layers" in config.to_dict() and "num_layers" not in config.to_dict()
    assert ComPConfig(num_layers=6).num_hidden_layers == 6  # former name, as in configs saved by version 0.1
    with pytest.raises(ValueError, match="num_hidden_layers must be even.*3"):
        ComPConfig(num_layers=3)
    model = ComPForEmotionRecognition(config)
    assert len(model.comp.propagation_stacks[0].layers) == 2


def test_training_stage_is_held_by_the_model_not_the_config(tmp_path):
    model = make_model()
    model.set_training_stage(1)
    assert model.training_stage == 1 and model.comp.training_stage == 1
    assert "training_stage" not in model.config.to_dict()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "training_stage" not in saved
    # the config records only the provenance of the weights: the stage they were saved in
    assert saved["trained_stage"] == 1
    assert model.config.trained_stage == 1
    reloaded = ComPForEmotionRecognition.from_pretrained(tmp_path)
    assert reloaded.training_stage == 1  # stage-1 weights (untrained coordinator) do not silently serve stage 2
    reloaded.set_training_stage(2)
    assert reloaded.training_stage == 2 and reloaded.config.trained_stage == 1  # runtime state stays off the config
    assert ComPConfig(training_stage=1).to_dict().get("training_stage") is None  # old configs still load
    assert ComPConfig(training_stage=1).trained_stage == 1
    with pytest.raises(ValueError, match=r"trained_stage must be one of \(1, 2\), got 3"):
        ComPConfig(trained_stage=3)


def test_modality_features_round_trip_and_validation(tmp_path):
    features = CORPUS_MODALITY_FEATURES["iemocap4"]
    assert features["text"] == {
        "feature": "deberta-large-4-UTT",
        "extractor": {"model_id": "microsoft/deberta-large", "layers": [-4, -3, -2, -1], "pooling": "gcnet"},
    }
    assert features["audio"] == {"feature": "wav2vec-large-c-UTT", "extractor": None}
    assert features["video"] == {"feature": "manet_UTT", "extractor": None}
    assert set(CORPUS_MODALITY_FEATURES) == {"iemocap4", "iemocap6", "mosi", "mosei"}
    model = ComPForEmotionRecognition(tiny_config(modality_features=features))
    model.save_pretrained(tmp_path)
    assert ComPConfig.from_pretrained(tmp_path).modality_features == features
    assert tiny_config().modality_features is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f: f.pop("video"),
            "modality_features must be None or a dict with keys \\['audio', 'text', 'video'\\]",
        ),
        (lambda f: f["audio"].update(feature=""), "\\['audio'\\]\\['feature'\\] must be a non-empty string"),
        (lambda f: f["text"]["extractor"].update(layers=[-1, "x"]), "\\['layers'\\] must be a non-empty list of int"),
        (lambda f: f["text"]["extractor"].pop("pooling"), "\\['extractor'\\] must be None or a dict with keys"),
        (lambda f: f["video"].update(extra=1), "\\['video'\\] must be a dict with keys \\['extractor', 'feature'\\]"),
    ],
)
def test_modality_features_errors_name_the_entry(mutate, message):
    features = json.loads(json.dumps(CORPUS_MODALITY_FEATURES["mosi"]))
    mutate(features)
    with pytest.raises(ValueError, match=message):
        tiny_config(modality_features=features)


# -- outputs -----------------------------------------------------------------------------------------------------
def test_backbone_outputs_and_per_layer_hidden_states():
    model = make_model()
    batch = without_labels(make_batch())
    out = model.comp(**batch, output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == (3, 7, 48) and out.fused_hidden_state is out.last_hidden_state
    layers = model.config.num_hidden_layers
    assert len(out.hidden_states) == layers + 1 and all(h.shape == (3, 7, 3, 16) for h in out.hidden_states)
    torch.testing.assert_close(out.hidden_states[-1], out.modality_hidden_states)
    assert len(out.attentions) == layers and all(a.shape == (3, 3, 2, 7, 7) for a in out.attentions)
    probs = out.attentions[0]  # [B, 3, H, T (queries), T (keys)]
    observed = (batch["modality_mask"] > 0) & (batch["attention_mask"] > 0)[..., None]  # [B, T, 3]
    keys = observed.permute(0, 2, 1)[:, :, None, None, :]  # [B, 3, 1, 1, T]
    assert (probs.masked_select(~keys.expand_as(probs)) == 0).all()  # unobserved keys get nothing
    has_key = keys.any(-1)  # rows of conversations with an observed key sum to 1
    sums = probs.sum(-1)
    torch.testing.assert_close(
        sums.masked_select(has_key.expand_as(sums)), torch.ones(int(has_key.expand_as(sums).sum()))
    )
    as_tuple = model.comp(**batch, return_dict=False)
    torch.testing.assert_close(as_tuple[0], out.last_hidden_state)
    head = model(**batch, output_hidden_states=True)
    assert len(head.hidden_states) == layers + 1 and head.last_hidden_state.shape == (3, 7, 48)
    assert isinstance(model(**batch, return_dict=False), tuple)


def test_eager_and_sdpa_attention_agree_and_others_are_refused(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    batch = without_labels(make_batch())
    outputs = {}
    for implementation in ("sdpa", "eager"):
        loaded = ComPForEmotionRecognition.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        outputs[implementation] = loaded(**batch).logits
    torch.testing.assert_close(outputs["sdpa"], outputs["eager"], atol=1e-5, rtol=1e-5)
    with pytest.raises((ValueError, ImportError)):
        ComPForEmotionRecognition.from_pretrained(tmp_path, attn_implementation="flash_attention_2")


def test_hooks_on_the_backbone_fire_and_the_modulator_is_a_named_module():
    model = make_model().train()
    calls = []
    model.comp.register_forward_hook(lambda module, args, kwargs_out: calls.append(type(module).__name__))
    model(**make_batch()).loss.backward()
    assert calls == ["ComPModel"]
    assert dict(model.named_modules())["gradient_modulator"] is model.gradient_modulator
    assert model.gradient_modulator.scales is not None  # armed: stage-2 training with labels
    model.eval()(**without_labels(make_batch()))
    assert model.gradient_modulator.scales is None


def test_gradient_checkpointing_gives_the_same_gradients():
    batch = make_batch()
    plain, checkpointed = make_model(seed=4).train(), make_model(seed=4).train()
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.comp.gradient_checkpointing
    for model in (plain, checkpointed):
        model(**batch).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


# -- no host synchronisation, torch.compile ----------------------------------------------------------------------
class SyncCounter(TorchDispatchMode):
    SYNCS = ("_local_scalar_dense", "item", "nonzero", "masked_select", "is_nonzero", "equal", "unique")

    def __init__(self):
        super().__init__()
        self.syncs = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        bool_index = name.startswith(("index", "_index_put")) and any(
            getattr(i, "dtype", None) == torch.bool
            for i in (args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ())
        )
        if name in self.SYNCS or bool_index:
            self.syncs[name] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("stage", [1, 2])
def test_training_step_has_no_host_synchronisation_given_utterance_index(stage):
    model = make_model().train()
    model.set_training_stage(stage)
    batch = make_batch(regression=False)
    index = utterance_index_from_attention_mask(batch["attention_mask"])
    assert index.tolist() == [i for i, v in enumerate(batch["attention_mask"].reshape(-1).tolist()) if v]
    with SyncCounter() as counter:
        out = model(**batch, utterance_index=index)
        out.loss.backward()
    assert not counter.syncs, counter.syncs
    with SyncCounter() as counter:  # without it the model computes the index itself: one nonzero
        fallback = model(**batch)
    assert counter.syncs == {"nonzero": 1}
    torch.testing.assert_close(out.logits, fallback.logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("backend", "stage"),
    [
        ("aot_eager", 2),
        pytest.param("aot_eager", 1, marks=pytest.mark.slow),
        pytest.param("inductor", 2, marks=pytest.mark.slow),
    ],
)
def test_compiled_model_matches_eager(backend, stage):
    """fullgraph=True: the forward and backward compile without a graph break (the modulator included)."""
    batch = make_batch()
    batch["utterance_index"] = utterance_index_from_attention_mask(batch["attention_mask"])
    eager, compiled_source = make_model(seed=6).train(), make_model(seed=6).train()
    for model in (eager, compiled_source):
        model.set_training_stage(stage)
    compiled = torch.compile(compiled_source, backend=backend, fullgraph=True)
    expected, got = eager(**batch), compiled(**batch)
    expected.loss.backward()
    got.loss.backward()
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled_source.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)
    if stage == 2:  # the modulator ran inside the compiled graph and scaled the prototype-layer gradients
        torch.testing.assert_close(compiled_source.gradient_modulator.scales, eager.gradient_modulator.scales)
        assert not torch.allclose(eager.gradient_modulator.scales, torch.ones_like(eager.gradient_modulator.scales))


def test_backbone_alone_loads_and_runs(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    base = ComPModel.from_pretrained(tmp_path).eval()
    batch = without_labels(make_batch())
    torch.testing.assert_close(base(**batch).last_hidden_state, model.comp(**batch).last_hidden_state)


def test_a_deep_copy_modulates_with_its_own_modulator():
    original = make_model(seed=3).train()
    copied, fresh = copy.deepcopy(original), make_model(seed=3).train()
    original(**make_batch(seed=1))  # arms the original's modulator with another batch (no backward)
    batch = make_batch(seed=2)
    copied(**batch).loss.backward()
    fresh(**batch).loss.backward()
    name = "comp.prompt_generators.0.prototype_layer.fc1.weight"
    torch.testing.assert_close(
        dict(copied.named_parameters())[name].grad, dict(fresh.named_parameters())[name].grad, rtol=0, atol=0
    )


# -- keyword arguments -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class", [ComPForEmotionRecognition, ComPModel])
def test_an_unknown_keyword_is_refused_by_name(model_class):
    model = model_class(tiny_config()).eval()
    batch = without_labels(make_batch())
    with pytest.raises(TypeError) as err:
        model(**batch, modality_masks=batch["modality_mask"])  # a typo of modality_mask
    assert str(err.value) == f"{model_class.__name__}.forward() got an unexpected keyword argument 'modality_masks'"
    with pytest.raises(TypeError, match="unexpected keyword argument 'attention_masks'"):
        model(**batch, attention_masks=batch["attention_mask"])


def test_transformers_pass_through_keywords_are_accepted():
    model = make_model().train()
    batch = make_batch()
    reference = model(**batch)
    # what transformers' Trainer passes (it sees **kwargs in the signature) and the conventional output switches
    out = model(**batch, num_items_in_batch=torch.tensor(17), output_attentions=False, output_hidden_states=True)
    torch.testing.assert_close(out.loss, reference.loss, rtol=0, atol=0)
    assert len(out.hidden_states) == 3
    assert isinstance(model(**batch, return_dict=False), tuple)


# -- one conversation never changes another ------------------------------------------------------------------
def _observed_position(batch, conversation):
    """(utterance, modality) of the first observed feature of a real utterance of `conversation`."""
    observed = (batch["modality_mask"][conversation] > 0) & (batch["attention_mask"][conversation, :, None] > 0)
    t, i = observed.nonzero()[0].tolist()
    return t, MODALITIES[i]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 3e38])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("stage", [1, 2])
def test_a_hostile_value_in_one_conversation_changes_no_other(monkeypatch, value, implementation, layout, stage):
    import modeling_comp.modeling_comp as modeling

    # the attention layout is chosen per batch from a cost ratio: force each one
    monkeypatch.setattr(modeling, "_PACKED_ATTENTION_RATIO", 1e9 if layout == "packed" else 0.0)
    model = make_model()
    model.config._attn_implementation = implementation
    model.set_training_stage(stage)
    batch = without_labels(make_batch(batch=3, length=7))
    hostile = {k: v.clone() for k, v in batch.items()}
    t, modality = _observed_position(batch, 1)
    hostile[modality][1, t, 0] = value
    out = model(**hostile)
    for b, source in ((0, batch), (1, hostile), (2, batch)):
        alone = model(**{k: v[b : b + 1] for k, v in source.items()})
        for name in ("logits", "modality_logits", "coordinator_weights", "last_hidden_state"):
            if getattr(alone, name) is None:
                continue
            torch.testing.assert_close(
                getattr(out, name)[b : b + 1],
                getattr(alone, name),
                atol=1e-5,
                rtol=1e-3 if b == 1 else 1e-5,  # the hostile one's own values may be ~1e30: float rounding
                equal_nan=b == 1,
            )
    # the hostile conversation itself: what it gives alone (NaN where its value reached, not a guess)
    assert torch.isnan(out.logits[1]).any() or abs(value) < float("inf")


def test_a_hostile_conversation_changes_no_other_given_every_position():
    # the collator's static-shape mode: padded positions are computed rows too
    model = make_model()
    batch = without_labels(make_batch(batch=3, length=7))
    index = utterance_index_from_attention_mask(batch["attention_mask"], every_position=True)
    hostile = {k: v.clone() for k, v in batch.items()}
    t, modality = _observed_position(batch, 2)
    hostile[modality][2, t, :] = float("nan")
    out = model(**hostile, utterance_index=index)
    for b in (0, 1):
        alone = model(**{k: v[b : b + 1] for k, v in batch.items()})
        torch.testing.assert_close(out.logits[b : b + 1], alone.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e300])
def test_non_finite_regression_labels_are_refused(value):
    model = make_model(num_labels=1, problem_type="regression").train()
    batch = make_batch(regression=True)
    batch["labels"] = batch["labels"].double()
    batch["labels"][1, 2] = value  # 1e300 is finite in float64, inf in the model's float32
    with pytest.raises(ValueError, match="^regression `labels` must be finite float32 numbers$"):
        model(**batch)
    batch["labels"][0, -1] = float("nan")  # a padded position: ignored
    batch["labels"][1, 2] = 0.5
    assert torch.isfinite(model(**batch).loss)


# -- hostile config.json -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_hidden_layers", 1_000_000, "num_hidden_layers must be an integer in [1, 24], got 1000000"),
        ("hidden_size", 20000, "hidden_size must be an integer in [1, 2048], got 20000"),
        ("hidden_size", -4, "hidden_size must be an integer in [1, 2048], got -4"),
        ("audio_dim", 10**30, f"audio_dim must be an integer in [1, 16384], got {10**30}"),
        ("text_dim", "abc", "text_dim must be an integer in [1, 16384], got 'abc'"),
        ("video_dim", True, "video_dim must be an integer in [1, 16384], got True"),
        ("max_utterances", 10**9, "max_utterances must be an integer in [1, 1024], got 1000000000"),
        ("max_utterances", 150.0, "max_utterances must be an integer in [1, 1024], got 150.0"),
        ("num_attention_heads", 0, "num_attention_heads must be an integer in [1, 64], got 0"),
        ("prompt_dim", [16], "prompt_dim must be an integer in [1, 1024], got [16]"),
        ("num_prototypes", None, "num_prototypes must be an integer in [1, 1024], got None"),
        ("num_labels", 10**9, "num_labels must be an integer in [1, 1024], got 1000000000"),
        ("hidden_dropout_prob", 5.0, "hidden_dropout_prob must be a number in [0, 1), got 5.0"),
        ("attention_dropout_prob", "0.1", "attention_dropout_prob must be a number in [0, 1), got '0.1'"),
        ("prompt_momentum", -0.5, "prompt_momentum must be a number in [0, 1], got -0.5"),
        ("fused_loss_weight", "1", "fused_loss_weight must be a finite non-negative number, got '1'"),
        ("use_coordinator", 1, "use_coordinator must be True or False, got 1"),
        ("prototype_scope", ["dialogue"], "prototype_scope must be one of ('dialogue', 'batch'), got ['dialogue']"),
    ],
)
def test_a_hostile_config_json_is_refused_before_any_module_is_built(tmp_path, field, value, message):
    model = make_model()
    model.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data[field] = value
    if field == "num_labels":
        data.pop("id2label", None), data.pop("label2id", None)
    (tmp_path / "config.json").write_text(json.dumps(data))
    for load in (ComPConfig.from_pretrained, ComPForEmotionRecognition.from_pretrained, load_comp_checkpoint):
        with pytest.raises(ValueError) as err:
            load(tmp_path)
        assert str(err.value) == f"ComPConfig.{message}", load


def test_a_huge_label_map_and_a_model_over_the_parameter_budget_are_refused(tmp_path):
    with pytest.raises(
        ValueError, match=r"^ComPConfig.id2label must be a mapping of 1 to 1024 labels, got 5000 entries$"
    ):
        ComPConfig(id2label={i: str(i) for i in range(5000)})
    # every size within its own limit, together too large
    with pytest.raises(
        ValueError, match=r"^ComPConfig: these sizes make a model of 1,705,7\d\d,\d{3} parameters, above"
    ):
        ComPConfig(hidden_size=2048, num_hidden_layers=24)
    config = tiny_config()
    config.hidden_size = 20000  # changed after construction: refused when a model is built from it
    with pytest.raises(ValueError, match=r"^ComPConfig.hidden_size must be an integer in \[1, 2048\], got 20000$"):
        ComPForEmotionRecognition(config)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_hidden_layers": 6, "hidden_size": 24, "num_attention_heads": 3, "max_utterances": 33},
        {"num_labels": 1, "problem_type": "regression", "prompt_dim": 7, "num_prototypes": 5},
    ],
)
def test_the_parameter_estimate_is_the_built_model_size(overrides):
    config = tiny_config(**overrides)
    model = ComPForEmotionRecognition(config)
    assert config.num_parameters_estimate() == sum(p.numel() for p in model.parameters())
