"""The Space's prediction functions, called directly (no server)."""

from __future__ import annotations

import json
import sys

import gradio as gr
import numpy as np
import pytest
import torch
from comp_space.inference import CheckpointStore, load_checkpoint, predict, run_model
from comp_space.inputs import InputError, load_examples
from comp_space.report import WEIGHT_COLOURS, coordinator_frame, prediction_table, probability_table, summary_markdown
from space_testing import TINY_LABELS

from hub_datasets.masks import rate_masks, utterance_keys


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    return load_checkpoint(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def conversation(tiny_examples):
    return load_examples(tiny_examples)["synthetic_test_001"]


def test_checkpoint_properties(tiny, tiny_checkpoint):
    assert tiny.ref == str(tiny_checkpoint)
    assert tiny.dims == {"audio": 12, "text": 16, "video": 8}
    assert tiny.max_utterances == 24 and tiny.training_stage == 2
    assert tiny.label_names == list(TINY_LABELS.values())
    assert not tiny.is_regression and tiny.name == tiny_checkpoint.name  # never the server-side path
    assert not tiny.model.training


def test_run_model_matches_a_direct_forward(tiny, conversation):
    mask = np.ones((conversation.num_utterances, 3), dtype=bool)
    mask[::2, 0] = False
    mask[1::3, 2] = False
    run = run_model(tiny, conversation, mask)
    inputs = {
        m: torch.from_numpy(conversation.features[m] * mask[:, [j]])[None]
        for j, m in enumerate(("audio", "text", "video"))
    }
    with torch.no_grad():
        out = tiny.model(**inputs, modality_mask=torch.from_numpy(mask.astype(np.float32))[None])
    np.testing.assert_allclose(run.scores, out.logits[0].softmax(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.modality_scores, out.modality_logits[0].softmax(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.coordinator_weights, out.coordinator_weights[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.scores.sum(-1), 1.0, rtol=1e-5)


def test_masked_and_full_runs(tiny, conversation):
    n = conversation.num_utterances
    full_mask = np.ones((n, 3), dtype=bool)
    same = predict(tiny, conversation, full_mask)
    assert same.masked is same.full  # nothing dropped: one forward pass
    mask = full_mask.copy()
    mask[:, 0] = False  # drop audio everywhere
    pred = predict(tiny, conversation, mask)
    np.testing.assert_array_equal(pred.full.scores, same.full.scores)
    assert np.abs(pred.masked.scores - pred.full.scores).max() > 1e-3
    np.testing.assert_array_equal(pred.masked.modality_mask, mask)
    # Predicting is deterministic and independent of what was predicted before.
    np.testing.assert_array_equal(predict(tiny, conversation, mask).masked.scores, pred.masked.scores)


def test_report_tables(tiny, conversation):
    n = conversation.num_utterances
    mask = np.ones((n, 3), dtype=bool)
    mask[0] = [False, True, True]
    mask[1] = [False, False, True]
    pred = predict(tiny, conversation, mask)
    table = prediction_table(pred)
    assert len(table) == n
    assert table.loc[0, "observed (masked)"] == "· T V" and table.loc[1, "observed (masked)"] == "· · V"
    assert table.loc[0, "audio head"].endswith("(missing)") and not table.loc[0, "text head"].endswith("(missing)")
    assert "reference label (synthetic)" in table.columns
    names = list(TINY_LABELS.values())
    assert table["prediction: masked"].tolist() == [names[k] for k in pred.masked.scores.argmax(-1)]
    assert table["prediction: all modalities"].tolist() == [names[k] for k in pred.full.scores.argmax(-1)]
    changed = (pred.masked.scores.argmax(-1) != pred.full.scores.argmax(-1)).sum()
    assert (table["changed"] == "yes").sum() == changed
    np.testing.assert_allclose(
        table[["weight audio", "weight text", "weight video"]].to_numpy(), pred.masked.coordinator_weights, atol=5e-4
    )
    probs = probability_table(pred)
    np.testing.assert_allclose(probs[[f"{c} (masked)" for c in names]].to_numpy(), pred.masked.scores, atol=5e-5)
    frame = coordinator_frame(pred, "masked")
    assert len(frame) == 6 * n and set(frame["modality"]) == set(WEIGHT_COLOURS)
    first = frame[frame["utterance"] == "01"].set_index("modality")["weight"]
    assert first["audio"] == 0.0 and first["audio (missing)"] == pytest.approx(pred.masked.coordinator_weights[0, 0])
    assert first["text (missing)"] == 0.0 and first["text"] == pytest.approx(pred.masked.coordinator_weights[0, 1])
    np.testing.assert_allclose(frame.groupby("utterance")["weight"].sum().to_numpy(), 1.0, rtol=1e-5)
    summary = summary_markdown(pred)
    assert "synthetic" in summary
    assert f"{changed} of {n} predictions change" in summary
    assert "drops 3 of 60 available modality slots" in summary


def test_regression_checkpoint(tiny_regression_checkpoint, conversation):
    ckpt = load_checkpoint(str(tiny_regression_checkpoint))
    assert ckpt.is_regression and ckpt.label_names == ["score"]
    mask = np.ones((conversation.num_utterances, 3), dtype=bool)
    mask[:, 1] = False
    pred = predict(ckpt, conversation, mask)
    assert pred.masked.scores.shape == (conversation.num_utterances,)
    assert pred.masked.modality_scores.shape == (conversation.num_utterances, 3)
    table = prediction_table(pred)
    np.testing.assert_allclose(table["change"], np.round(pred.masked.scores - pred.full.scores, 3), atol=2e-3)
    assert "sign (positive/negative) flips" in summary_markdown(pred)


def test_checkpoint_store_policy(tiny_checkpoint, tmp_path):
    store = CheckpointStore({"tiny": str(tiny_checkpoint)}, synthetic={str(tiny_checkpoint)})
    first = store.get("tiny")
    assert first.synthetic and store.get(str(tiny_checkpoint)) is first and store.get(None) is first
    with pytest.raises(InputError, match=r"'org/other' is not one this Space serves; choose one of: tiny"):
        store.get("org/other")
    open_store = CheckpointStore({"tiny": str(tiny_checkpoint)}, allow_custom_hub_ids=True)
    with pytest.raises(InputError, match=r"'/etc' is not a Hub model id"):  # visitors never pick server paths
        open_store.get("/etc")
    with pytest.raises(InputError, match=r"is not a Hub model id"):
        open_store.get("../../secret/dir")
    with pytest.raises(InputError, match=r"cannot load checkpoint 'nobody/nothing'"):
        open_store.get("nobody/nothing")  # tests run offline: a clear error, not a hang
    not_comp = tmp_path / "bert"
    not_comp.mkdir()
    (not_comp / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(InputError, match=r"is a 'bert' model, not a ComP \('comp'\) model"):
        load_checkpoint(str(not_comp))
    with pytest.raises(InputError, match=r"cannot load checkpoint"):
        load_checkpoint(str(tmp_path / "missing"))


def test_handlers_and_error_wrapping(space_app_module, tiny_settings, tiny_checkpoint, tmp_path):
    app = space_app_module.SpaceApp(tiny_settings)
    ref, example = str(tiny_checkpoint), "synthetic_test_002"
    grid, text = app.load(ref, space_app_module.SOURCE_EXAMPLE, example, None)
    assert len(grid) == 9 and "synthetic" in text.lower()
    drawn, note = app.draw_mask(space_app_module.SOURCE_EXAMPLE, example, None, 0.7, 4)
    assert (drawn[["audio", "text", "video"]].sum(axis=1) == 1).all()
    assert "realised 0.667" in note and "0.7 realises 0.667" in note
    outputs = app.predict_outputs(ref, space_app_module.SOURCE_EXAMPLE, example, None, drawn)
    assert len(outputs) == 5 and len(outputs[1]) == 9
    # Uploaded files: a modality with the wrong dim for this checkpoint.
    rng = np.random.default_rng(0)
    paths = []
    for modality, dim in {"audio": 12, "text": 15, "video": 8}.items():
        paths.append(str(tmp_path / f"{modality}.npy"))
        np.save(paths[-1], rng.normal(size=(4, dim)).astype(np.float32))
    grid, text = app.load(ref, space_app_module.SOURCE_FILES, None, paths)
    assert "Does not fit the selected checkpoint" in text and "text has 15 dims (checkpoint: 16)" in text
    guarded = space_app_module._guard(app.predict_outputs)
    with pytest.raises(
        gr.Error, match=r"do not fit checkpoint 'tiny test checkpoint \(synthetic\)': text has 15 \(expected 16\)"
    ):
        guarded(ref, space_app_module.SOURCE_FILES, None, paths, grid)
    # No server-side path anywhere a visitor reads.
    where = str(tiny_checkpoint.parent)
    assert where not in app.checkpoint_info(ref) and where not in outputs[0]
    # Messages are shown as HTML: file names are escaped.
    evil = tmp_path / "<img src=x onerror=alert(1)>.npy"
    np.save(evil, np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(gr.Error) as info:
        space_app_module._guard(app.load)(ref, space_app_module.SOURCE_FILES, None, [str(evil)])
    assert "&lt;img src=x onerror=alert(1)&gt;.npy: cannot tell which modality" in info.value.message
    # Anything unexpected still becomes a gr.Error (the server keeps serving).
    with pytest.raises(gr.Error, match=r"unexpected error \(ZeroDivisionError\)"):
        space_app_module._guard(lambda: 1 / 0)()

    def leaky():
        raise OSError(f"cannot open {tmp_path}/secret/file.bin")

    with pytest.raises(gr.Error) as info:
        space_app_module._guard(leaky)()
    assert info.value.message == "unexpected error (OSError): cannot open &lt;path&gt;"


def test_settings_from_env(space_app_module, tmp_path):
    settings = space_app_module.SpaceSettings.from_env(
        {
            "COMP_CHECKPOINT": "org/comp-a",
            "COMP_CHECKPOINTS": "second=org/comp-b, org/comp-c",
            "COMP_MAX_FILE_MB": "2",
            "COMP_ALLOW_CUSTOM_CHECKPOINTS": "1",
            "COMP_EXAMPLES": str(tmp_path / "ex.parquet"),
        }
    )
    assert settings.checkpoints == {"org/comp-a": "org/comp-a", "second": "org/comp-b", "org/comp-c": "org/comp-c"}
    assert settings.max_file_bytes == 2 * 2**20 and settings.allow_custom_checkpoints
    assert settings.examples_path == tmp_path / "ex.parquet" and not settings.synthetic_refs
    bundled = space_app_module.SpaceSettings.from_env({})
    ((label, ref),) = bundled.checkpoints.items()
    assert "synthetic" in label and ref in bundled.synthetic_refs
    with pytest.raises(ValueError, match=r"COMP_MAX_FILE_MB='-1': expected a positive number"):
        space_app_module.SpaceSettings.from_env({"COMP_MAX_FILE_MB": "-1"})
    with pytest.raises(ValueError, match=r"COMP_TEXT_OFFLINE='maybe'"):
        space_app_module.SpaceSettings.from_env({"COMP_TEXT_OFFLINE": "maybe"})
    local = space_app_module.SpaceSettings.from_env({"COMP_CHECKPOINT": str(tmp_path)})
    assert list(local.checkpoints) == [f"local: {tmp_path.name}"]  # the selector never shows server paths


def test_without_the_package_loading_says_so_in_one_line(tiny_checkpoint, monkeypatch):
    """The Space runs the installed comp-emotion package only: no code stored in a checkpoint ever runs."""
    monkeypatch.setitem(sys.modules, "modeling_comp", None)  # `import modeling_comp` now fails
    with pytest.raises(InputError, match=r"^the comp-emotion package is not installed on this server"):
        load_checkpoint(str(tiny_checkpoint))


def test_non_finite_outputs_are_refused(tiny, conversation, monkeypatch):
    """Whatever gets past the input checks, a NaN/Inf output is never shown as a prediction."""
    original = tiny.model.forward

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        out.logits[0, 3, 1] = float("nan")
        return out

    monkeypatch.setattr(tiny.model, "forward", poisoned)
    mask = np.ones((conversation.num_utterances, 3), dtype=bool)
    with pytest.raises(InputError, match=r"utterance 3: the model's prediction output is not finite \(NaN or infinite\)"):
        predict(tiny, conversation, mask)


def test_revision_pins_and_hub_ids():
    from comp_space.inference import split_revision

    assert split_revision("org/name@v1.0") == ("org/name", "v1.0")
    assert split_revision("org/name") == ("org/name", None)
    with pytest.raises(InputError, match=r"revision '\.\./x' is not a branch"):
        split_revision("org/name@../x")
    store = CheckpointStore({"a": "org/a"}, allow_custom_hub_ids=True)
    assert store.resolve("org/b@0123abc") == ("org/b@0123abc", False)


def test_stage1_checkpoint_has_no_coordinator(tmp_path, conversation):
    from space_testing import make_tiny_model

    model = make_tiny_model(seed=3)
    model.set_training_stage(1)
    model.save_pretrained(tmp_path / "stage1")
    ckpt = load_checkpoint(str(tmp_path / "stage1"))
    assert ckpt.training_stage == 1
    mask = np.ones((conversation.num_utterances, 3), dtype=bool)
    mask[:, 0] = False
    pred = predict(ckpt, conversation, mask)
    assert pred.masked.coordinator_weights is None and pred.full.coordinator_weights is None
    assert coordinator_frame(pred, "masked").empty
    assert "no coordinator" in summary_markdown(pred)
    assert not any(c.startswith("weight ") for c in prediction_table(pred).columns)


def test_drawn_mask_respects_missing_files(space_app_module, tiny_settings, tmp_path):
    app = space_app_module.SpaceApp(tiny_settings)
    rng = np.random.default_rng(2)
    paths = []
    for modality, dim in {"audio": 12, "text": 16}.items():
        paths.append(str(tmp_path / f"{modality}.npy"))
        np.save(paths[-1], rng.normal(size=(12, dim)).astype(np.float32))
    for rate in (0.0, 0.4, 0.7):
        grid, note = app.draw_mask(space_app_module.SOURCE_FILES, None, paths, rate, 1)
        mask = grid[["audio", "text", "video"]].to_numpy(dtype=bool)
        ids = [str(i + 1) for i in range(12)]  # uploaded files: ids "1".."12"
        drawn = rate_masks(utterance_keys(ids), rate, seed=1, role="eval").astype(bool)
        expected = drawn.copy()
        expected[:, 2] = False  # no video file
        orphans = ~expected.any(axis=1)
        expected[orphans, 0] = True  # rows that only drew video keep audio, their first available modality
        np.testing.assert_array_equal(mask, expected)
        assert (f"{int(orphans.sum())} utterance(s) kept their only available modality" in note) == orphans.any()
    assert orphans.any()  # at 0.7 (one modality per utterance) some rows drew only video
    with pytest.raises(InputError, match=r"seed must be a non-negative whole number, got -1"):
        app.draw_mask(space_app_module.SOURCE_FILES, None, paths, 0.5, -1)
    with pytest.raises(InputError, match=r"missing_rate must be in \[0, 1\) .*got 1\.0"):
        app.draw_mask(space_app_module.SOURCE_FILES, None, paths, 1.0, 0)


def test_a_checkpoint_missing_a_tensor_is_refused(tmp_path):
    """from_pretrained would initialise the missing tensor afresh and serve noise; the Space names it instead."""
    from safetensors.torch import load_file, save_file
    from space_testing import make_tiny_model

    folder = tmp_path / "ckpt"
    make_tiny_model(seed=1).save_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    dropped = "comp.coordinator.fc1.weight" if "comp.coordinator.fc1.weight" in weights else sorted(weights)[0]
    del weights[dropped]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"missing keys: .*" + dropped.split(".")[-2]) as info:
        load_checkpoint(str(folder))
    assert str(tmp_path) not in str(info.value)  # no server-side path in what a visitor sees
