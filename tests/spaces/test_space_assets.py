"""The Space's bundled assets: a small synthetic checkpoint trained by our recipe and held-out synthetic examples.

They are produced by ``spaces/comp-demo/build_assets.py`` and committed with the Space (it must work with no
licensed data), so these tests fail, rather than skip, when they are missing.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from comp_space.inference import load_checkpoint, predict
from comp_space.inputs import load_examples
from space_testing import SPACE_DIR

from hub_datasets.masks import rate_masks, utterance_keys


ASSETS = SPACE_DIR / "assets.json"


@pytest.fixture(scope="module")
def assets():
    assert ASSETS.is_file(), "run `python spaces/comp-demo/build_assets.py` to build the Space's assets"
    return json.loads(ASSETS.read_text())


@pytest.fixture(scope="module")
def bundled(assets):
    return load_checkpoint(str(SPACE_DIR / assets["checkpoint"]))


@pytest.fixture(scope="module")
def examples(assets):
    return load_examples(SPACE_DIR / assets["examples"])


def test_assets_are_synthetic_small_and_held_out(assets, bundled, examples):
    assert assets["synthetic"] is True and bundled.synthetic  # from the recipe's provenance, not from us
    size = sum(p.stat().st_size for p in (SPACE_DIR / assets["checkpoint"]).iterdir() if p.is_file())
    assert size < 5 * 2**20
    provenance = bundled.run_info["provenance"]
    train_sessions, test = provenance["train"]["source_splits"], assets["examples_provenance"]
    assert test["split"] == "test" and test["synthetic"] is True
    assert list(examples) == assets["examples_dialog_ids"] and len(examples) == test["num_conversations"]
    # IEMOCAP-shaped synthetic corpus: test = session 5, trained on sessions 1-4, validation drawn from those.
    assert "session5" not in train_sessions
    assert all(d.startswith("Ses05") for d in examples)
    assert not set(examples) & set(provenance["train"].get("validation_dialogs", []))
    for conv in examples.values():
        assert conv.synthetic and conv.dims == bundled.dims and conv.num_utterances <= bundled.max_utterances


def test_space_reproduces_the_recipes_test_accuracy(assets, bundled, examples):
    """With the evaluation masks of the run (same seed, rate, utterance ids), the Space's predictions give
    exactly the synthetic test accuracy the recipe reported for the selected epoch."""
    config = bundled.run_info["config"]
    rate, seed = config["missing_rate"], config.get("mask_seed") or config["seed"]
    hits = total = 0
    for conv in examples.values():
        mask = rate_masks(utterance_keys(conv.utterance_ids), rate, seed=seed, role="eval").astype(bool)
        prediction = predict(bundled, conv, mask)
        hits += int((prediction.masked.scores.argmax(-1) == np.asarray(conv.labels)).sum())
        total += conv.num_utterances
    assert total == assets["examples_provenance"]["num_utterances"]
    assert hits / total == pytest.approx(assets["recipe"]["test_metrics_synthetic"]["accuracy"], abs=1e-9)
    assert hits / total == pytest.approx(bundled.test_metrics["accuracy"], abs=1e-9)


def test_default_settings_serve_the_bundled_assets(space_app_module, assets):
    settings = space_app_module.SpaceSettings.from_env({})
    ((label, ref),) = settings.checkpoints.items()
    assert ref == str(SPACE_DIR / assets["checkpoint"]) and "synthetic" in label
    assert settings.torch_threads == 1
    app = space_app_module.SpaceApp(dataclasses.replace(settings, torch_threads=None))  # keep torch's setting
    first = assets["examples_dialog_ids"][0]
    assert app.example_choices()[0] == (
        f"{first} — {app.examples[first].num_utterances} utterances (synthetic)",
        first,
    )
    info = app.checkpoint_info(ref)
    assert "Trained on the synthetic corpus" in info and "synthetic test split metrics" in info


def test_space_folder_front_matter():
    """README front matter as the Hub reads it, and the files it names (``python -m space_tools deploy`` adds the
    wheel and the pinned requirements.txt when it stages the folder: see test_space_deploy.py)."""
    import gradio
    import yaml

    text = (SPACE_DIR / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (SPACE_DIR / meta["app_file"]).is_file() and isinstance(meta["models"], list)
    assert "sentence-transformers/all-MiniLM-L6-v2" in meta["models"]
    assert str(meta["python_version"]).startswith("3.")
    assert len(meta["short_description"]) <= 60
    assert "synthetic" in text.lower()
    # No hand-written requirements.txt that could go stale: the deploy command writes the pinned one.
    assert not (SPACE_DIR / "requirements.txt").exists()
    assert not (SPACE_DIR / "build_assets.py").exists()  # the builder lives in space_tools/, never deployed


def test_bundled_checkpoint_holds_no_model_code(assets, bundled):
    """One code path: the bundled weights load through the installed package; no model code sits beside them."""
    folder = SPACE_DIR / assets["checkpoint"]
    assert not list(folder.glob("*.py"))
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    assert type(bundled.model).__module__ == "modeling_comp.modeling_comp"
    assert not list((SPACE_DIR / "comp_space").glob("masks.py"))  # masks come from hub_datasets.masks


def test_readme_numbers_come_from_assets(assets):
    readme = (SPACE_DIR / "README.md").read_text(encoding="utf-8")
    shown = {f"{100 * v:.1f}" for v in assets["recipe"]["test_metrics_synthetic"].values() if isinstance(v, float)}
    for value in re.findall(r"(\d+\.\d) %", readme):  # every accuracy the README states is one the assets hold
        assert value in shown, value


def test_bundled_checkpoint_serves_typed_text(assets, bundled):
    """The bundled checkpoint records the packaged sentence encoder, ships its processor and pipeline declaration,
    and its card says what the data is."""
    import yaml

    folder = SPACE_DIR / assets["checkpoint"]
    assert bundled.text_extractor == {
        "model_id": "sentence-transformers/all-MiniLM-L6-v2",
        "layers": [-1],
        "pooling": "token-mean-special+l2",
    }
    assert bundled.dims["text"] == 384 and (folder / "preprocessor_config.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "multimodal-emotion-recognition" in config["custom_pipelines"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"]["args"]["synthetic"] is True and result["dataset"]["split"] == "test"
    accuracy = next(m["value"] for m in result["metrics"] if m["type"] == "accuracy")
    assert accuracy == pytest.approx(100 * assets["recipe"]["test_metrics_synthetic"]["accuracy"], abs=0.01)
    assert "synthetic" in meta["tags"] and "Synthetic data, not recordings of people" in card
    assert "all-MiniLM-L6-v2" in card and "generated English sentence" in card
