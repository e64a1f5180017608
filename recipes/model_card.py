"""Model card (the Hub repo's README.md) generated from a finished run's files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml


__all__ = ["render_model_card", "selection_description", "format_metric"]

_CORPUS_TEXT = {
    "iemocap4": "IEMOCAP, 4 emotion classes (happy+excited, sad, neutral, angry)",
    "iemocap6": "IEMOCAP, 6 emotion classes (happy, sad, neutral, angry, excited, frustrated)",
    "mosi": "CMU-MOSI, utterance sentiment in [-3, 3]",
    "mosei": "CMU-MOSEI, utterance sentiment in [-3, 3]",
}

_LICENCE_NOTES = {
    "iemocap": (
        "IEMOCAP is distributed by USC SAIL under a signed data-release form. This model was trained on features "
        "derived from it: check that your IEMOCAP licence allows sharing it before making this repository public."
    ),
    "cmu": (
        "CMU-MOSI / CMU-MOSEI come from the CMU Multimodal SDK; the features used here are the community's "
        "pre-extracted ones (GCNet/ComP or MMSA release). Check their terms before redistribution."
    ),
    "synthetic": (
        "Trained on comp-emotion's **synthetic** corpus: random features with planted structure, no real "
        "recordings, no personal data. Its numbers say nothing about real emotion recognition."
    ),
}


def format_metric(value: Any) -> str:
    """Percent with two decimals for fractions, plain for MAE/r; ``n/a`` for None."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{100 * value:.2f}"
    return str(value)


def selection_description(selection: str, metric: str, selection_stage: int) -> str:
    """Human-readable model-selection rule, flagging the optimistic test-set protocol."""
    stages = "stage-2 epochs" if selection_stage == 2 else "all epochs"
    if selection == "test":
        return (
            f"best **test** {metric} over {stages} (the paper's protocol; OPTIMISTIC: the test set chose the "
            "epoch, so the test numbers are biased upwards)"
        )
    return f"best validation {metric} over {stages}; test metrics reported at that epoch"


def _metric_rows(task: str, metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    if task == "classification":
        keys = ["accuracy", "unweighted_accuracy", "weighted_f1", "macro_f1"]
        keys += sorted(k for k in metrics if k.startswith("f1_") and k != "f1_has0")
        keys += [f"accuracy_{m}" for m in ("audio", "text", "video")]
    else:
        keys = ["acc2", "f1", "acc2_has0", "f1_has0", "acc7", "acc5", "mae", "corr"]
        keys += [f"acc2_{m}" for m in ("audio", "text", "video")]
    return [(k, metrics.get(k)) for k in keys if k in metrics]


def render_model_card(run: Mapping[str, Any]) -> str:
    """Renders README.md for a run.

    Args:
        run: a dict with ``config`` (TrainConfig dict), ``provenance`` (per split), ``task``, ``final``
            (selected epoch, selection rule, ``validation``/``test`` metrics), ``repo_id`` and ``label_names``.

    Returns:
        The Markdown text, with YAML front matter (library, licence, tags, datasets).
    """
    cfg = run["config"]
    task = run["task"]
    final = run["final"]
    synthetic = cfg["dataset"] == "synthetic"
    shape = cfg.get("dataset_config") or cfg["dataset"]
    corpus = cfg["dataset"] if cfg["dataset"] != "synthetic" else f"synthetic ({shape}-shaped)"
    family = "synthetic" if synthetic else ("iemocap" if "iemocap" in str(shape) else "cmu")
    tags = ["comp-emotion", "multimodal", "emotion-recognition", "missing-modality", "incomplete-multimodal"]
    if synthetic:
        tags.append("synthetic")
    front: dict[str, Any] = {
        "library_name": "transformers",
        "license": "apache-2.0",
        "tags": tags,
    }
    if not synthetic and cfg["dataset"] not in _CORPUS_TEXT:
        front["datasets"] = [cfg["dataset"]]
    test = final.get("test") or {}
    prov = (run.get("provenance") or {}).get("test") or {}
    protocol = cfg["missing_protocol"]
    if protocol == "rate":
        realised = prov.get("realised_missing_rate")
        realised_text = f", realised {realised:.3f} on test" if isinstance(realised, (int, float)) else ""
        protocol_text = f"`rate` protocol, missing rate {cfg['missing_rate']}{realised_text}"
        if cfg["missing_rate"] > 2 / 3:
            protocol_text += " (every utterance keeps one modality, so rates above 2/3 realise 0.667)"
    else:
        protocol_text = f"`subset` protocol, observed modalities `{cfg['observed_modalities']}`"
    repo_id = run.get("repo_id") or "<this repo>"
    label = " (synthetic)" if synthetic else ""
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# ComP{label} — {corpus}",
        "",
        "ComP (Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition, He, Zhu & Zhang, "
        "AAAI 2026, [arXiv:2512.11239](https://arxiv.org/abs/2512.11239)), trained with "
        "comp-emotion's accelerate recipe (`recipes/train.py`).",
        "",
        "## Task",
        "",
        f"- corpus: {_CORPUS_TEXT.get(str(shape), corpus)}{label}",
        f"- task: per-utterance {'emotion classification' if task == 'classification' else 'sentiment regression'}"
        " over the utterances of a conversation, with audio / text / video features any of which may be missing",
        f"- protocol: {protocol_text}; mask seed {cfg.get('mask_seed') if cfg.get('mask_seed') is not None else cfg['seed']}",
        f"- fold: {final.get('fold') if final.get('fold') is not None else 'n/a'}; training seed {cfg['seed']}",
        f"- selection: {final['selection_rule']} → epoch {final['epoch']}",
        "",
        f"## Metrics{label} (selected epoch, percent except MAE and r)",
        "",
        "| metric | validation | test |",
        "|---|---|---|",
    ]
    val = final.get("validation") or {}
    for key, value in _metric_rows(task, test):
        if key in ("mae", "corr"):
            fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        else:
            fmt = format_metric
        lines.append(f"| {key} | {fmt(val.get(key))} | {fmt(value)} |")
    if final.get("selection") == "test":
        lines += ["", "**The epoch was chosen on the test set (optimistic protocol).**"]
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "from transformers import AutoModel",
        f'model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)  # no package needed',
        "# or, with comp-emotion installed (pip install comp-emotion):",
        "import modeling_comp  # registers the ComP classes",
        f'model = AutoModel.from_pretrained("{repo_id}")',
        "out = model(audio=a, text=t, video=v, modality_mask=m, attention_mask=am)  # [batch, utterances, dim]",
        "```",
        "",
        "Inputs are per-utterance feature vectors of the dimensions in `config.json` (`audio_dim`, `text_dim`, "
        "`video_dim`); `modality_mask[..., i] = 0` marks a missing modality (order audio, text, video).",
        "",
        "## Training",
        "",
        f"Two stages ({cfg['stage1_epochs']} unimodal epochs, then {cfg['epochs'] - cfg['stage1_epochs']} full), "
        f"Adam lr {cfg['learning_rate']}, coupled L2 {cfg['weight_decay']}, batch {cfg['batch_size']} "
        "conversations. The full resolved configuration and data provenance are in `comp_run.json`.",
        "",
        "## Licence notes",
        "",
        "Code and weights: Apache-2.0 (comp-emotion). " + _LICENCE_NOTES[family],
        "",
    ]
    return "\n".join(lines)
