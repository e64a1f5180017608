"""Fixtures for the Space tests (helpers live in ``space_testing.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent))

from space_testing import load_space_app, make_tiny_model, make_tiny_text_encoder, write_examples  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny classification checkpoint saved with ``save_pretrained`` (4 emotion classes)."""
    path = tmp_path_factory.mktemp("tiny-comp") / "checkpoint"
    make_tiny_model().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory) -> Path:
    """A tiny random BERT text encoder saved locally (stands in for DeBERTa-large; no download)."""
    return make_tiny_text_encoder(tmp_path_factory.mktemp("tiny-text-encoder") / "encoder")


@pytest.fixture(scope="session")
def tiny_text_checkpoint(tmp_path_factory, tiny_text_encoder) -> Path:
    """A tiny checkpoint whose config records the tiny text encoder as its text extractor."""
    path = tmp_path_factory.mktemp("tiny-comp-text") / "text-checkpoint"
    make_tiny_model(seed=2, text_encoder=str(tiny_text_encoder)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_regression_checkpoint(tmp_path_factory) -> Path:
    """A tiny sentiment-regression checkpoint."""
    path = tmp_path_factory.mktemp("tiny-comp-reg") / "checkpoint"
    make_tiny_model(regression=True, seed=1).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_examples(tmp_path_factory) -> Path:
    """A tiny example set (three conversations of 6, 20 and 9 utterances)."""
    return write_examples(tmp_path_factory.mktemp("tiny-examples") / "examples.parquet")


@pytest.fixture(scope="session")
def space_app_module():
    """The Space's ``app.py`` module."""
    return load_space_app()


@pytest.fixture(scope="session")
def tiny_settings(space_app_module, tiny_checkpoint, tiny_examples):
    """Space settings serving the tiny checkpoint and example set (labelled synthetic, like the bundled ones)."""
    return space_app_module.SpaceSettings(
        checkpoints={"tiny test checkpoint (synthetic)": str(tiny_checkpoint)},
        examples_path=tiny_examples,
        synthetic_refs={str(tiny_checkpoint)},
    )


@pytest.fixture(scope="session")
def tiny_text_settings(space_app_module, tiny_checkpoint, tiny_text_checkpoint, tiny_examples):
    """Settings serving a checkpoint with a recorded text extractor (first) and one without."""
    return space_app_module.SpaceSettings(
        checkpoints={"tiny with text encoder": str(tiny_text_checkpoint), "tiny without": str(tiny_checkpoint)},
        examples_path=tiny_examples,
        synthetic_refs={str(tiny_checkpoint), str(tiny_text_checkpoint)},
        text_offline=True,
    )


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each Space test with one torch thread, as the Space does (restored afterwards).

    On a busy 2-core machine two intra-op threads make these tiny forward passes hundreds of times slower
    (see benchmarks/bench_space.py); the setting is process-wide, so it is put back after every test.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
