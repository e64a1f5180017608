"""The data side's names have one home (hub_datasets.constants); the model keeps an identical copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hub_datasets
from hub_datasets import constants


# ``None`` in sys.modules makes ``import torch`` fail and ``importlib.util.find_spec("torch")`` report it absent,
# exactly as on a machine where it is not installed.
_BLOCK_TORCH = (
    "import sys\nfor name in ('torch', 'transformers', 'accelerate', 'modeling_comp'):\n    sys.modules[name] = None\n"
)


def test_masks_and_loaders_import_without_torch_or_transformers():
    code = _BLOCK_TORCH + (
        "from hub_datasets.masks import rate_masks, utterance_keys\n"
        "import hub_datasets\n"
        "m = rate_masks(utterance_keys(['a', 'b', 'c']), 0.5, seed=0)\n"
        "ds = hub_datasets.load_dataset('synthetic', 'mosi', num_conversations=6, missing_rate=0.5, split='test')\n"
        "assert sys.modules['torch'] is None and sys.modules['transformers'] is None  # never imported\n"
        "print(m.shape, len(ds))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root)}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("(3, 3)")


def test_model_copy_of_the_batch_keys_agrees():
    from modeling_comp import configuration_comp as model

    for name in ("AUDIO", "TEXT", "VIDEO", "MODALITIES", "MODALITY_MASK", "ATTENTION_MASK", "LABELS"):
        assert getattr(model, name) == getattr(constants, name), name
    assert model.MODEL_INPUT_NAMES == constants.MODEL_INPUT_NAMES


def test_corpus_names_have_one_meaning():
    assert tuple(hub_datasets.CORPORA) == constants.CORPUS_NAMES
    assert all(spec.name == name for name, spec in hub_datasets.CORPORA.items())
    assert ("synthetic", *constants.CORPUS_NAMES) == constants.DATASET_NAMES
    assert set(hub_datasets.SYNTHETIC_CONFIGS) == set(constants.CORPUS_NAMES)
    assert {n for n in constants.CORPUS_NAMES if hub_datasets.CORPORA[n].family == "iemocap"} == set(
        constants.IEMOCAP_CORPORA
    )


def test_hub_id_check():
    for good in ("org/comp-emotion-features", "a/b", "User_1/data.v2"):
        assert constants.is_hub_id(good), good
    for bad in ("org", "/abs/path", "org/repo/extra", "-org/x", "org/..", "org/x.git", "org/" + "x" * 97, 7, None):
        assert not constants.is_hub_id(bad), bad
