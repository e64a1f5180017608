"""Model card (the Hub repo's README.md) generated from a finished run's files, through ``huggingface_hub``'s
``ModelCard`` / ``ModelCardData``: the metadata carries ``pipeline_tag``, ``library_name``, ``license``,
``datasets`` and a ``model-index`` with the run's test metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hub_datasets.constants import MODALITIES


def _pipeline_task() -> str:
    """The pipeline task name (imported when a card is rendered: the model package pulls in torch, and the
    recipes' `--help` must answer before any heavy import)."""
    from modeling_comp.pipeline_comp import PIPELINE_TASK

    return PIPELINE_TASK


__all__ = ["build_model_card", "format_metric", "render_model_card", "selection_description"]

#: The Hub's task tag: the Hub only accepts its own task names, and none is a per-utterance multimodal classifier.
PIPELINE_TAG = "other"

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

# Metrics whose value is a fraction (shown in percent); the others (MAE, Pearson r) are shown as they are.
_PLAIN_METRICS = ("mae", "corr")
_METRIC_TYPES = {"corr": "pearsonr", "mae": "mae", "f1": "f1", "accuracy": "accuracy"}


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
        keys += [f"accuracy_{m}" for m in MODALITIES]
    else:
        keys = ["acc2", "f1", "acc2_has0", "f1_has0", "acc7", "acc5", "mae", "corr"]
        keys += [f"acc2_{m}" for m in MODALITIES]
    return [(k, metrics.get(k)) for k in keys if k in metrics]


def _shown_value(key: str, value: Any) -> str:
    if key in _PLAIN_METRICS:
        return "n/a" if value is None else f"{value:.4f}"
    return format_metric(value)


class _RunFacts:
    """What the card says about a run, read once from its record (config, provenance, final selection)."""

    def __init__(self, run: Mapping[str, Any]):
        cfg = run["config"]
        final = run["final"]
        self.cfg, self.final, self.task = cfg, final, run["task"]
        self.synthetic = cfg["dataset"] == "synthetic"
        self.shape = str(cfg.get("dataset_config") or cfg["dataset"])
        self.corpus = cfg["dataset"] if not self.synthetic else f"synthetic ({self.shape}-shaped)"
        self.family = "synthetic" if self.synthetic else ("iemocap" if "iemocap" in self.shape else "cmu")
        self.hub_dataset = cfg["dataset"] if "/" in str(cfg["dataset"]) else None
        self.test = final.get("test") or {}
        self.validation = final.get("validation") or {}
        self.prov = (run.get("provenance") or {}).get("test") or final.get("provenance_test") or {}
        # The fold: the run's own, else the one its test split's provenance records (IEMOCAP defaults to fold 5).
        fold = final.get("fold")
        self.fold = fold if fold is not None else self.prov.get("fold")
        self.mask_seed = cfg.get("mask_seed") if cfg.get("mask_seed") is not None else cfg["seed"]
        self.protocol = cfg["missing_protocol"]
        self.missing_rate = cfg.get("missing_rate") if self.protocol == "rate" else None
        realised = self.prov.get("realised_missing_rate")
        self.realised = realised if isinstance(realised, (int, float)) else None
        self.repo_id = run.get("repo_id") or None
        self.selection = final.get("selection") or cfg.get("selection")

    @property
    def condition(self) -> str:
        """The missing-modality condition in a few words (``missing rate 0.5`` / ``observed modalities at``)."""
        if self.protocol == "rate":
            return f"missing rate {self.missing_rate:g}"
        return f"observed modalities {self.cfg['observed_modalities']}"

    @property
    def protocol_text(self) -> str:
        if self.protocol == "rate":
            realised = f", realised {self.realised:.3f} on test" if self.realised is not None else ""
            text = f"`rate` protocol, missing rate {self.missing_rate}{realised}"
            if self.missing_rate > 2 / 3:
                text += " (every utterance keeps one modality, so rates above 2/3 realise 0.667)"
            return text
        return f"`subset` protocol, observed modalities `{self.cfg['observed_modalities']}`"

    @property
    def selected_on(self) -> str:
        return (
            "epoch chosen on the TEST set (optimistic)" if self.selection == "test" else "epoch chosen on validation"
        )


def _eval_results(facts: _RunFacts) -> list[EvalResult]:
    """One ``EvalResult`` per test metric, each naming the selection protocol and the missing condition."""
    prov = facts.prov
    dataset_name = prov.get("display_name") or _CORPUS_TEXT.get(facts.shape, facts.corpus)
    if facts.synthetic and not str(dataset_name).lower().startswith("synthetic"):
        dataset_name = f"synthetic {dataset_name}"
    dataset_args = {
        "missing_protocol": facts.protocol,
        "missing_rate": facts.missing_rate,
        "realised_missing_rate": None if facts.realised is None else round(facts.realised, 4),
        "observed_modalities": facts.cfg.get("observed_modalities"),
        "mask_seed": facts.mask_seed,
        "fold": facts.fold,
        "synthetic": facts.synthetic,
    }
    metric_args = {
        "selection": facts.selection,
        "selection_metric": facts.final.get("selection_metric"),
        "selection_stage": facts.final.get("selection_stage"),
        "selected_epoch": facts.final.get("epoch"),
        "missing_protocol": facts.protocol,
        "missing_rate": facts.missing_rate,
    }
    results = []
    for key, value in _metric_rows(facts.task, facts.test):
        if not isinstance(value, (int, float)):
            continue
        plain = key in _PLAIN_METRICS
        shown = round(float(value), 4) if plain else round(100 * float(value), 2)
        unit = "" if plain else " (%)"
        results.append(
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name="Per-utterance emotion recognition with missing modalities"
                if facts.task == "classification"
                else "Per-utterance sentiment regression with missing modalities",
                dataset_type=facts.hub_dataset or (f"synthetic-{facts.shape}" if facts.synthetic else facts.shape),
                dataset_name=str(dataset_name),
                dataset_config=facts.shape,
                dataset_split="test",
                dataset_args={k: v for k, v in dataset_args.items() if v is not None},
                metric_type=_METRIC_TYPES.get(key, key),
                metric_value=shown,
                metric_name=f"{key}{unit}, {facts.condition}, {facts.selected_on}",
                metric_args={k: v for k, v in metric_args.items() if v is not None},
            )
        )
    return results


def build_model_card(run: Mapping[str, Any], *, with_pipeline: bool = False) -> ModelCard:
    """The model card of a run as a ``huggingface_hub.ModelCard``.

    Args:
        run: a dict with ``config`` (TrainConfig dict), ``provenance`` (per split), ``task``, ``final``
            (selected epoch, selection rule, ``validation``/``test`` metrics, ``fold``), ``repo_id`` and
            optionally ``label_names``.
        with_pipeline: whether the checkpoint was saved with its processor and pipeline files
            (``modeling_comp.save_with_processor_and_pipeline``); then the card shows the pipeline usage.

    Returns:
        The card (``str(card)`` is the README text, front matter included).
    """
    facts = _RunFacts(run)
    cfg, task = facts.cfg, facts.task
    tags = ["comp-emotion", "multimodal", "emotion-recognition", "missing-modality", "incomplete-multimodal"]
    tags.append(_pipeline_task())
    if facts.synthetic:
        tags.append("synthetic")
    model_name = facts.repo_id.split("/")[-1] if facts.repo_id else f"comp-{facts.shape}"
    data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        pipeline_tag=PIPELINE_TAG,
        tags=tags,
        datasets=[facts.hub_dataset] if facts.hub_dataset else None,
        model_name=model_name,
        eval_results=_eval_results(facts) or None,
    )
    label = " (synthetic)" if facts.synthetic else ""
    repo_id = facts.repo_id or "<this repo>"
    lines = [f"# ComP — {facts.corpus}", ""]  # the corpus names the synthetic data once
    if facts.synthetic:
        lines += [
            "**Synthetic data.** This model was trained and evaluated on comp-emotion's synthetic corpus (random "
            "features with planted structure, no recordings): it demonstrates the training recipe, and its metrics say "
            "nothing about real emotion recognition.",
            "",
        ]
    lines += [
        "ComP (Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition, He, Zhu & Zhang, "
        "AAAI 2026, [arXiv:2512.11239](https://arxiv.org/abs/2512.11239)), trained with "
        "comp-emotion's accelerate recipe (`recipes/train.py`).",
        "",
        "## Task",
        "",
        f"- corpus: {_CORPUS_TEXT.get(facts.shape, facts.corpus)}{label}",
        f"- task: per-utterance {'emotion classification' if task == 'classification' else 'sentiment regression'}"
        " over the utterances of a conversation, with audio / text / video features any of which may be missing",
        f"- protocol: {facts.protocol_text}; mask seed {facts.mask_seed}",
        f"- fold: {facts.fold if facts.fold is not None else 'n/a'}; training seed {cfg['seed']}",
        f"- selection: {facts.final['selection_rule']} → epoch {facts.final['epoch']}",
        "",
        f"## Metrics{label} (selected epoch, {facts.condition}, percent except MAE and r)",
        "",
        "| metric | validation | test |",
        "|---|---|---|",
    ]
    for key, value in _metric_rows(task, facts.test):
        lines.append(f"| {key} | {_shown_value(key, facts.validation.get(key))} | {_shown_value(key, value)} |")
    if facts.selection == "test":
        lines += ["", "**The epoch was chosen on the test set (optimistic protocol).**"]
    lines += ["", "## How to use", ""]
    if with_pipeline:
        lines += [
            "```python",
            "from transformers import pipeline",
            f'classifier = pipeline("{_pipeline_task()}", model="{repo_id}", trust_remote_code=True)',
            "# one conversation: per-utterance features [utterances, dim]; None for a missing modality,",
            "# or a list with None for the utterances that lack it",
            'classifier({"audio": audio_features, "text": text_features, "video": None})',
            "# -> per utterance: label and score (or sentiment), each modality head's view, coordinator weights",
            "```",
            "",
            "The same checkpoint's processor pads and masks batches for the model directly:",
            "",
        ]
    lines += [
        "```python",
        "from transformers import AutoModel" + (", AutoProcessor" if with_pipeline else ""),
        f'model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)',
    ]
    if with_pipeline:
        lines += [
            f'processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)',
            "inputs = processor([conversation_1, conversation_2])  # padded tensors + attention/modality masks",
            "out = model(**{k: inputs[k] for k in processor.model_input_names})",
        ]
    else:
        lines.append(
            "out = model(audio=a, text=t, video=v, modality_mask=m, attention_mask=am)  # [batch, utterances, dim]"
        )
    lines += [
        "```",
        "",
        "With the comp-emotion repository's packages importable (`import modeling_comp` registers the ComP "
        "classes), `trust_remote_code` is not needed for `AutoModel`.",
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
        "Code and weights: Apache-2.0 (comp-emotion). " + _LICENCE_NOTES[facts.family],
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def render_model_card(run: Mapping[str, Any], *, with_pipeline: bool = False) -> str:
    """Renders README.md for a run (see :func:`build_model_card`).

    Returns:
        The Markdown text, with YAML front matter (library, licence, pipeline tag, tags, datasets, model-index).
    """
    return str(build_model_card(run, with_pipeline=with_pipeline))
