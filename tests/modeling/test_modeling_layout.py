"""The stacked parameter layout and its checkpoint layout (one `nn.Linear` per modality), the forward's pooled
dropout masks, and the custom normalisation: what the training-step operator count rests on."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from test_modeling_comp import make_batch, make_model, without_labels

import modeling_comp.batched_layers as layers
import modeling_comp.modeling_comp as modeling
from modeling_comp import (
    ComPForEmotionRecognition,
    ComPModel,
    checkpoint_layout_state_dict,
    load_comp_checkpoint,
    model_layout_state_dict,
    utterance_index_from_attention_mask,
)


def assert_same_parameters(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


# -- checkpoint layout -----------------------------------------------------------------------------------------
def test_layout_conversion_is_a_bijection_and_names_one_linear_per_modality():
    model = make_model(seed=4)
    stacked = model.state_dict()
    checkpoint = checkpoint_layout_state_dict(stacked)
    assert "comp.shared_encoders.text.fc1.weight" in checkpoint and "comp.encoders.fc1.weight" not in checkpoint
    assert "comp.propagation_stacks.1.layers.0.modalities.video.k.bias" in checkpoint
    assert "modality_heads.audio.weight" in checkpoint
    dim = model.config.hidden_size
    # a checkpoint tensor is the nn.Linear weight [out, in] of one modality (text = group 1, k = columns D..2D)
    torch.testing.assert_close(
        checkpoint["comp.propagation_stacks.1.layers.0.modalities.text.k.weight"],
        stacked["comp.propagation_stacks.1.layers.0.qkv.weight"][1, :, dim : 2 * dim].T,
    )
    torch.testing.assert_close(
        checkpoint["comp.private_encoders.video.fc2.bias"], stacked["comp.encoders.fc2.bias"][5, 0]
    )
    back = model_layout_state_dict(checkpoint)
    assert back.keys() == stacked.keys()
    for key in stacked:
        torch.testing.assert_close(back[key], stacked[key], rtol=0, atol=0)


def test_save_pretrained_writes_the_checkpoint_layout_and_loads_both(tmp_path):
    model = make_model(seed=5)
    model.save_pretrained(tmp_path / "original")
    written = load_file(tmp_path / "original" / "model.safetensors")
    expected = checkpoint_layout_state_dict(model.state_dict())
    assert written.keys() == expected.keys()
    assert all(torch.equal(written[k], expected[k]) for k in written)
    assert_same_parameters(load_comp_checkpoint(tmp_path / "original"), model)
    # the stacked layout (save_original_format=False, or an accelerate state) loads as well
    model.save_pretrained(tmp_path / "stacked", save_original_format=False)
    assert "comp.encoders.fc1.weight" in load_file(tmp_path / "stacked" / "model.safetensors")
    assert_same_parameters(load_comp_checkpoint(tmp_path / "stacked"), model)
    # the backbone alone, from the head's checkpoint
    base = ComPModel.from_pretrained(tmp_path / "original")
    torch.testing.assert_close(base.encoders.fc1.weight, model.comp.encoders.fc1.weight, rtol=0, atol=0)


def test_load_state_dict_accepts_either_layout():
    model, other = make_model(seed=6), make_model(seed=7)
    other.load_state_dict(checkpoint_layout_state_dict(model.state_dict()))
    assert_same_parameters(other, model)
    other = make_model(seed=7)
    other.load_state_dict(model.state_dict())
    assert_same_parameters(other, model)
    base = make_model(seed=8).comp
    base.load_state_dict(checkpoint_layout_state_dict(model.comp.state_dict()))
    assert_same_parameters(base, model.comp)


def test_a_checkpoint_missing_one_modality_is_refused_by_name(tmp_path):
    make_model(seed=5).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["comp.decoders.video.fc1.bias"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ValueError, match=r"missing keys: comp\.decoders\.fc1\.bias \(stacked from .*decoders\.video"
    ) as e:
        load_comp_checkpoint(tmp_path)
    assert len(str(e.value).splitlines()) == 1
    with pytest.raises(ValueError, match="comp.decoders.video.fc1.bias"):
        model_layout_state_dict(weights)


# -- pooled dropout masks --------------------------------------------------------------------------------------
class CountingMasks(modeling._DropoutMasks):
    instances: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fallbacks = 0
        CountingMasks.instances.append(self)

    def __call__(self, hidden):
        if self.buffer is None or self.offset + hidden.numel() > self.buffer.numel():
            self.fallbacks += 1
        return super().__call__(hidden)


@pytest.mark.parametrize(
    ("stage", "overrides"),
    [
        (1, {}),
        (2, {}),
        (2, {"use_prompt_generation": False}),
        (2, {"use_knowledge_propagation": False}),
        (2, {"use_coordinator": False}),
        (2, {"reference_compat": True}),
        (1, {"reference_compat": True}),
    ],
)
@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_dropout_pool_is_sized_exactly(monkeypatch, stage, overrides, checkpointing):
    monkeypatch.setattr(modeling, "_DropoutMasks", CountingMasks)
    CountingMasks.instances = []
    model = make_model(hidden_dropout_prob=0.3, **overrides).train()
    if checkpointing:
        model.activation_checkpointing_enable()
    model.set_training_stage(stage)
    model(**make_batch()).loss.backward()
    (masks,) = CountingMasks.instances
    assert masks.fallbacks == 0
    assert masks.offset == masks.buffer.numel()


def test_pooled_dropout_keeps_the_distribution_and_scaling():
    torch.manual_seed(0)
    masks = layers._DropoutMasks(0.3, 200_000, torch.empty(0))
    ones = torch.ones(4, 25_000)
    first, second = masks(ones), masks(ones)
    for out in (first, second):
        kept = out != 0
        assert abs(kept.float().mean().item() - 0.7) < 0.01
        torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert not torch.equal(first, second)  # two dropouts draw different masks
    third = masks(ones)  # past the pool: its own draw, same distribution
    assert abs((third != 0).float().mean().item() - 0.7) < 0.01


def test_evaluation_and_zero_dropout_draw_nothing(monkeypatch):
    monkeypatch.setattr(modeling, "_DropoutMasks", CountingMasks)
    CountingMasks.instances = []
    make_model(hidden_dropout_prob=0.3).eval()(**without_labels(make_batch()))
    make_model(hidden_dropout_prob=0.0).train()(**make_batch())
    assert CountingMasks.instances == []


# -- normalisation -------------------------------------------------------------------------------------------
def test_normalize_matches_f_normalize_in_value_and_gradient():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    x[0, 1] = 0.0  # a zero row: the eps branch
    x[1, 2] = 1e-14
    x.requires_grad_(True)
    grad = torch.randn_like(x)
    ours = layers._normalize(x, 1e-12)
    (g_ours,) = torch.autograd.grad(ours, x, grad)
    reference = F.normalize(x, dim=-1, eps=1e-12)
    (g_ref,) = torch.autograd.grad(reference, x, grad)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(g_ours, g_ref)
    assert torch.autograd.gradcheck(
        lambda t: layers._normalize(t, 1e-12), (torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True),)
    )


def test_the_head_outputs_are_the_packed_rows_unpacked():
    model = make_model(seed=2, problem_type="regression", num_labels=1).train()
    batch = make_batch(regression=True)
    out = model(**batch)
    real = batch["attention_mask"] > 0
    assert out.logits.shape == real.shape and out.modality_logits.shape == (*real.shape, 3)
    assert out.coordinator_weights.shape == (*real.shape, 3)
    assert (out.logits[~real] == 0).all() and (out.last_hidden_state[~real] == 0).all()
    torch.testing.assert_close(out.coordinator_weights[real].sum(-1), torch.ones(int(real.sum())))
    assert isinstance(model, ComPForEmotionRecognition)


def test_checkpointed_attention_recomputes_its_own_dropout_masks():
    """With dropout, activation checkpointing gives the gradients of the same forward run without recomputation."""
    batch = make_batch()
    recomputed, direct = (make_model(seed=4, hidden_dropout_prob=0.3).train() for _ in range(2))
    recomputed.activation_checkpointing_enable()
    direct.activation_checkpointing_enable()
    direct.comp._gradient_checkpointing_func = lambda function, *args: function(*args)  # same path, no recompute
    for model in (recomputed, direct):
        torch.manual_seed(11)
        model(**batch).loss.backward()
    for (name, a), (_, b) in zip(recomputed.named_parameters(), direct.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)


# -- packed or padded attention ----------------------------------------------------------------------------------
def no_key_batch():
    """Padding, and a conversation whose audio is missing everywhere (its audio attention has no key)."""
    batch = make_batch(batch=4, length=6, seed=9)
    batch["modality_mask"][1, :, 0] = 0
    batch["modality_mask"][1, :, 1] = 1
    batch["attention_mask"][2, 3:] = 0
    return batch


@pytest.mark.parametrize("stage", [1, 2])
def test_packed_and_padded_attention_agree(monkeypatch, stage):
    results = []
    for ratio in (0.0, float("inf")):  # padded, then packed
        monkeypatch.setattr(modeling, "_PACKED_ATTENTION_RATIO", ratio)
        model = make_model(seed=3).train()
        model.set_training_stage(stage)
        out = model(**no_key_batch())
        out.loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (padded, g_padded), (packed, g_packed) = results
    for key in ("logits", "modality_logits", "last_hidden_state", "loss"):
        torch.testing.assert_close(packed[key], padded[key], rtol=1e-5, atol=1e-6, msg=key)
    assert g_packed.keys() == g_padded.keys()
    for name in g_padded:
        torch.testing.assert_close(g_packed[name], g_padded[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_attention_layout_follows_the_padding_waste():
    model = make_model()
    choose = model.comp._packed_attention
    device = torch.device("cpu")
    # CMU-MOSEI-like batch: 32 conversations padded to 40, 260 real utterances -> packed
    assert choose(layers._Packer(torch.arange(260), 32, 40, device), eager=False)
    # CMU-MOSI-like batch: 32 conversations padded to 63, 768 real utterances -> padded
    assert not choose(layers._Packer(torch.arange(768), 32, 63, device), eager=False)
    # eager attention returns probabilities in the padded layout
    assert not choose(layers._Packer(torch.arange(260), 32, 40, device), eager=True)
    assert not make_model(reference_compat=True).comp._packed_attention(
        layers._Packer(None, 1, 12, device), eager=False
    )


# -- static shapes: every position computed ----------------------------------------------------------------------
@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("regression", [False, True])
def test_computing_every_position_changes_no_output_loss_or_gradient(stage, regression):
    batch = no_key_batch() if not regression else make_batch(batch=4, length=6, seed=9, regression=True)
    batch["attention_mask"][0, 2:] = 0
    overrides = {"problem_type": "regression", "num_labels": 1} if regression else {}
    results = []
    for every_position in (False, True):
        model = make_model(seed=3, **overrides).train()
        model.set_training_stage(stage)
        index = utterance_index_from_attention_mask(batch["attention_mask"], every_position=every_position)
        out = model(**batch, utterance_index=index)
        out.loss.backward()
        results.append((out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (rows, g_rows), (every, g_every) = results
    padded = batch["attention_mask"] == 0
    for key in ("logits", "modality_logits", "last_hidden_state", "loss"):
        torch.testing.assert_close(every[key], rows[key], rtol=1e-5, atol=1e-6, msg=key)
    for term in rows.loss_terms:
        torch.testing.assert_close(every.loss_terms[term], rows.loss_terms[term], rtol=1e-5, atol=1e-6, msg=term)
    assert (every.logits[padded] == 0).all() and (every.last_hidden_state[padded] == 0).all()
    for name in g_rows:
        torch.testing.assert_close(g_every[name], g_rows[name], rtol=1e-4, atol=1e-6, msg=name)


def test_every_position_gives_static_shapes_under_torch_compile():
    import torch._dynamo

    torch._dynamo.reset()
    model = make_model(seed=6).train()
    model.set_training_stage(2)
    compiled = torch.compile(model, backend="aot_eager", dynamic=False)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for real in (12, 10, 7):  # the number of real utterances changes, the padded shape does not
            batch = make_batch(batch=3, length=12)
            batch["attention_mask"][0, real:] = 0
            index = utterance_index_from_attention_mask(batch["attention_mask"], every_position=True)
            compiled(**batch, utterance_index=index).loss.backward()
    torch._dynamo.reset()
