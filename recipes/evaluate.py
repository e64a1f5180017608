"""Evaluate a ComP checkpoint (run directory, local folder or Hub id) on a corpus at any missing condition.

Examples::

    python recipes/evaluate.py --model runs/synthetic-iemocap4-.../model --dataset synthetic --missing_rate 0.5
    comp-eval --model org/comp-mosi --dataset mosi --data_dir ~/data/GCNet --missing_rate 0.3 --split test
    comp-eval --model runs/x --dataset iemocap4 --data_dir ~/data/GCNet --fold 2 \\
        --missing_protocol subset --observed_modalities at --output_file at.json
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/evaluate.py --model ...

Prints the metrics (fused and per modality) and, with ``--output_file``, writes them with the data provenance
as JSON. The data keys (``--dataset``, ``--data_dir``, ``--missing_rate``, ...) are those of ``train.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path


if __name__ == "__main__" and not __package__:  # run as a path: avoid shadowing the `evaluate` library
    _ROOT = Path(__file__).resolve().parents[1]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "recipes"]
    sys.path.insert(0, str(_ROOT))

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from recipes.common import (
    corpus_task,
    evaluate_model,
    json_ready,
    load_corpus,
    synthetic_label,
    write_json_atomic,
)
from recipes.config import ConfigError, RecipeError, TrainConfig, coerce_value, split_options
from recipes.model_card import format_metric


__all__ = ["EvalConfig", "parse_eval_args", "load_checkpoint", "evaluate_checkpoint", "main"]

_DATA_KEYS = (
    "dataset",
    "dataset_config",
    "data_dir",
    "dataset_kwargs",
    "missing_protocol",
    "missing_rate",
    "observed_modalities",
    "fold",
    "mask_seed",
)


@dataclass
class EvalConfig:
    """Options of ``recipes/evaluate.py``."""

    model: str = field(default="", metadata={"help": "run directory, model folder or Hub id (required)"})
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch or commit)"})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "load the checkpoint's own code (needed without comp-emotion installed)"}
    )
    dataset: str = field(default="synthetic", metadata={"help": "corpus name or Hub dataset id"})
    dataset_config: str | None = field(default=None, metadata={"help": "synthetic shape / Hub config"})
    data_dir: str | None = field(default=None, metadata={"help": "raw features folder for a real corpus"})
    dataset_kwargs: dict = field(default_factory=dict, metadata={"help": "extra hub_datasets.load_dataset kwargs"})
    missing_protocol: str = field(default="rate", metadata={"help": "rate | subset"})
    missing_rate: float = field(default=0.0, metadata={"help": "rate protocol: missing rate in [0, 1)"})
    observed_modalities: str | None = field(default=None, metadata={"help": "subset protocol: e.g. 'at'"})
    fold: str | None = field(default=None, metadata={"help": "IEMOCAP fold 1..5"})
    seed: int = field(default=0, metadata={"help": "seed of the evaluation masks"})
    mask_seed: int | None = field(default=None, metadata={"help": "alias of seed for the masks"})
    split: str = field(default="test", metadata={"help": "split to evaluate: test | validation | train"})
    batch_size: int = field(default=32, metadata={"help": "conversations per batch"})
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16"})
    output_file: str | None = field(default=None, metadata={"help": "write the metrics and provenance as JSON"})
    progress: bool = field(default=True, metadata={"help": "progress bar on the main process"})

    def data_config(self) -> TrainConfig:
        """The data part as a (validated) TrainConfig, so loading is shared with training."""
        values = {k: getattr(self, k) for k in _DATA_KEYS}
        values["seed"] = self.seed
        if values["fold"] is not None and str(values["fold"]).lower() == "all":
            raise ConfigError("evaluate.py takes one fold at a time (--fold 1..5)")
        cfg = TrainConfig(**values, selection="test", epochs=1, stage1_epochs=0, selection_stage=1)
        return cfg.validate()


def parse_eval_args(argv: list[str] | None = None) -> EvalConfig:
    """``--key value`` options → validated :class:`EvalConfig` (unknown keys are one-line errors)."""
    import typing

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print("usage: evaluate.py --model PATH_OR_HUB_ID [--KEY VALUE ...]\n")
        for f in dataclasses.fields(EvalConfig):
            print(f"  --{f.name:<22} {f.metadata.get('help', '')}")
        raise SystemExit(0)
    hints = typing.get_type_hints(EvalConfig)
    values: dict[str, Any] = {}
    for key, value in split_options(argv):
        if key not in hints:
            raise ConfigError(f"unknown option --{key} (see --help)")
        if value is None:
            if hints[key] is not bool:
                raise ConfigError(f"option --{key} needs a value")
            value = "true"
        values[key] = coerce_value(key, value, hints[key], "command line")
    cfg = EvalConfig(**values)
    if not cfg.model:
        raise ConfigError("--model is required (a run directory, a model folder or a Hub id)")
    if cfg.split not in ("train", "validation", "test"):
        raise ConfigError(f"split={cfg.split!r} is invalid: expected train, validation or test")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size!r} is invalid: expected a positive integer")
    cfg.data_config()
    return cfg


def load_checkpoint(model: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """Loads a ComP checkpoint; one-line RecipeError for anything that is not one.

    Args:
        model: a run directory (its ``model/`` is used), a folder with ``config.json``, or a Hub id.
        revision: Hub revision.
        trust_remote_code: load with the checkpoint's own modelling code.

    Returns:
        The model, in eval mode and stage 2.
    """
    from transformers import AutoConfig, AutoModel

    path = Path(model).expanduser()
    if path.is_dir() and (path / "model" / "config.json").is_file() and not (path / "config.json").is_file():
        path = path / "model"
    source = str(path) if path.exists() else model
    if path.exists() and not (path / "config.json").is_file():
        raise RecipeError(f"{str(path)!r} is not a model folder (no config.json)")
    if not path.exists() and model.count("/") != 1:
        raise RecipeError(f"model {model!r} is neither an existing folder nor a Hub id (org/name)")
    if not trust_remote_code:
        import modeling_comp  # noqa: F401  (registers the ComP Auto classes)
    try:
        config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise RecipeError(f"cannot read the configuration of {model!r}: {str(err).strip().splitlines()[0]}") from None
    if getattr(config, "model_type", None) != "comp":
        raise RecipeError(
            f"{model!r} is a {getattr(config, 'model_type', 'unknown')!r} checkpoint, not a ComP ('comp') one"
        )
    try:
        loaded = AutoModel.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as err:
        raise RecipeError(f"cannot load the weights of {model!r}: {str(err).strip().splitlines()[0]}") from None
    loaded.set_training_stage(2)
    return loaded.eval()


def _check_compatible(model_config, data_kwargs: dict[str, Any], dataset: str) -> None:
    for key in ("audio_dim", "text_dim", "video_dim", "num_labels", "problem_type"):
        if key in data_kwargs and getattr(model_config, key) != data_kwargs[key]:
            raise RecipeError(
                f"the checkpoint expects {key}={getattr(model_config, key)!r} but corpus {dataset!r} has "
                f"{key}={data_kwargs[key]!r}"
            )


def evaluate_checkpoint(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluates ``cfg.model`` on the requested split and condition.

    Returns:
        ``{"metrics", "provenance", "model", "split"}`` (metrics: flat dict, see :mod:`recipes.metrics`).
    """
    import torch

    import hub_datasets
    from recipes.common import make_accelerator

    data_cfg = cfg.data_config()
    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    model = load_checkpoint(cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    folds = data_cfg.folds()
    with accelerator.main_process_first():
        dsd = load_corpus(data_cfg, folds[0])
    if cfg.split not in dsd:
        raise RecipeError(f"corpus {cfg.dataset!r} has no {cfg.split!r} split (splits: {sorted(dsd)})")
    dataset = dsd[cfg.split]
    _check_compatible(model.config, hub_datasets.model_config_kwargs(dataset), cfg.dataset)
    longest = max(dataset["num_utterances"])
    if longest > model.config.max_utterances:
        raise RecipeError(
            f"corpus {cfg.dataset!r} has a conversation of {longest} utterances but the checkpoint's "
            f"max_utterances is {model.config.max_utterances}"
        )
    collate = hub_datasets.ComPDataCollator(max_utterances=model.config.max_utterances)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
    model, loader = accelerator.prepare(model, loader)
    config = accelerator.unwrap_model(model).config
    task = corpus_task(config)
    id2label = {int(k): v for k, v in (config.id2label or {}).items()} if task == "classification" else None
    metrics = evaluate_model(
        model,
        loader,
        accelerator,
        task=task,
        num_labels=config.num_labels,
        label_names=id2label,
        num_conversations=len(dataset),
        desc=f"evaluate {cfg.split}",
        show_progress=cfg.progress,
        with_loss=False,
    )
    result = {
        "model": cfg.model,
        "split": cfg.split,
        "task": task,
        "metrics": metrics,
        "provenance": hub_datasets.dataset_provenance(dataset),
        "synthetic": data_cfg.is_synthetic,
    }
    if accelerator.is_main_process:
        label = synthetic_label(data_cfg)
        print(f"{cfg.model} on {cfg.dataset}{label} [{cfg.split}]:")
        for key, value in metrics.items():
            if isinstance(value, float):
                shown = f"{value:.4f}" if key in ("mae", "corr", "loss") else format_metric(value)
                print(f"  {key:<24} {shown}")
        if cfg.output_file:
            write_json_atomic(cfg.output_file, json_ready(result))
    return result


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``comp-eval``)."""
    try:
        evaluate_checkpoint(parse_eval_args(argv))
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
