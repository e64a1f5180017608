"""Helpers shared by the Space tests: a tiny ComP model and a tiny example set written in the real formats."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SPACE_DIR = Path(__file__).resolve().parents[2] / "spaces" / "comp-demo"
if str(SPACE_DIR) not in sys.path:
    sys.path.insert(0, str(SPACE_DIR))
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
CHROMIUM = "/usr/bin/chromium"

# Tiny dims, deliberately all different so that a dim mix-up cannot pass unnoticed.
TINY_DIMS = {"audio": 12, "text": 16, "video": 8}
TINY_LABELS = {0: "hap", 1: "sad", 2: "neu", 3: "ang"}
TINY_MAX_UTTERANCES = 24
EXAMPLE_LENGTHS = {"synthetic_test_000": 6, "synthetic_test_001": 20, "synthetic_test_002": 9}


def load_space_app():
    """Import ``spaces/comp-demo/app.py`` under a unique module name."""
    name = "comp_demo_space_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SPACE_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


TEXT_WORDS = [
    "hello",
    "hi",
    "there",
    "i",
    "am",
    "you",
    "are",
    "so",
    "sorry",
    "fine",
    "what",
    "not",
    "happy",
    "sad",
    "angry",
    "okay",
    "no",
    "yes",
    "it",
    "is",
    "that",
    "really",
]


def make_tiny_text_encoder(folder: Path) -> Path:
    """Save a randomly initialised 3-layer BERT (hidden size = the tiny text dim) and a word-piece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TEXT_WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + [",", ".", "!", "?", "'"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=TINY_DIMS["text"],
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(folder)
    return folder


def make_tiny_model(regression: bool = False, seed: int = 0, text_encoder: str | None = None):
    """A randomly initialised tiny ComP model (eval mode); ``text_encoder`` is recorded as its text extractor."""
    import torch

    from modeling_comp import ComPConfig, ComPForEmotionRecognition

    kwargs = {
        "audio_dim": TINY_DIMS["audio"],
        "text_dim": TINY_DIMS["text"],
        "video_dim": TINY_DIMS["video"],
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_utterances": TINY_MAX_UTTERANCES,
        # Larger than PyTorch's default init, so that an untrained model reacts visibly to a dropped modality.
        "initializer_range": 0.2,
    }
    if regression:
        kwargs.update(num_labels=1, problem_type="regression")
    else:
        kwargs.update(num_labels=4, problem_type="single_label_classification", id2label=dict(TINY_LABELS))
    if text_encoder is not None:
        kwargs["modality_features"] = {
            "audio": {"feature": "tiny-audio", "extractor": None},
            "text": {
                "feature": "tiny-bert-4-UTT",
                "extractor": {"model_id": text_encoder, "layers": [-4, -3, -2, -1], "pooling": "gcnet"},
            },
            "video": {"feature": "tiny-video", "extractor": None},
        }
    torch.manual_seed(seed)
    return ComPForEmotionRecognition(ComPConfig(**kwargs)).eval()


def write_examples(path: Path, lengths: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write example conversations in the ``hub_datasets`` row layout (one row per conversation)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = []
    for dialog, n in (lengths or EXAMPLE_LENGTHS).items():
        row = {
            "dialog_id": dialog,
            "utterance_ids": [f"{dialog}_u{i:03d}" for i in range(n)],
            "speakers": ["A" if i % 2 == 0 else "B" for i in range(n)],
            "transcripts": [f"synthetic utterance {i}" for i in range(n)],
            "labels": rng.integers(0, 4, size=n).tolist(),
            "num_utterances": n,
            "modality_mask": np.ones((n, 3), dtype=np.int8).tolist(),
        }
        for modality, dim in TINY_DIMS.items():
            row[modality] = rng.normal(size=(n, dim)).astype(np.float32).tolist()
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
