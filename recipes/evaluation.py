"""Evaluate a ComP checkpoint (run directory, local folder or Hub id) on a corpus at any missing condition.

Examples::

    comp-eval --model runs/synthetic-iemocap4-.../model --dataset synthetic --missing_rate 0.5
    comp-eval --model org/comp-mosi --dataset mosi --data_dir ~/data/GCNet --missing_rate 0.3 --split test
    comp-eval --model runs/x --dataset iemocap4 --data_dir ~/data/GCNet --fold 2 \\
        --missing_protocol subset --observed_modalities at --output_file at.json
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/evaluation.py --model ...

Prints the condition (requested and realised missing rate) and the metrics (fused and per modality) and, with
``--output_file``, writes them with the data provenance as JSON. The data keys (``--dataset``, ``--data_dir``,
``--missing_rate``, ...) are those of ``train.py`` (both use :class:`recipes.config.DataConfig`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


try:
    from recipes.config import EvalConfig, RecipeError, parse_eval_args
except ModuleNotFoundError as _err:  # run as a file from a checkout that is neither installed nor on PYTHONPATH
    if _err.name != "recipes":
        raise
    sys.exit("error: the comp-emotion package is not importable: run `pip install -e .` in the repository, or put "
             "its root on PYTHONPATH")  # fmt: skip

# torch, transformers, the model and data packages and recipes.common are imported by the functions that use them:
# `--help` answers without them (they take seconds to import).

__all__ = ["EvalConfig", "parse_eval_args", "load_checkpoint", "checkpoint_processor", "evaluate_checkpoint", "main"]


def _looks_like_path(model: str) -> bool:
    """A value a user means as a local folder: absolute, relative (./, ../, ~), several slashes, or a backslash."""
    return model.startswith(("/", "./", "../", "~", ".")) or model.count("/") > 1 or "\\" in model


def _model_folders_below(path: Path, limit: int = 3) -> list[str]:
    """Folders below ``path`` (two levels at most) that hold a model (``config.json``), for the error message."""
    found: list[str] = []
    for pattern in ("*/config.json", "*/*/config.json"):
        found += sorted(str(c.parent) for c in path.glob(pattern))
        if found:
            break
    return found[:limit]


def _not_a_model_folder(path: Path) -> RecipeError:
    """The one-line error for a folder without ``config.json``: which folder below holds the model, if any."""
    below = _model_folders_below(path)
    if below:
        return RecipeError(
            f"{str(path)!r} is not a model folder (no config.json); the model is in {below[0]!r}"
            + (f" (also: {', '.join(map(repr, below[1:]))})" if len(below) > 1 else "")
            + ": pass that folder as --model"
        )
    if (path / "checkpoints").is_dir() or (path / "comp_run.json").is_file():
        return RecipeError(
            f"{str(path)!r} is a training run without a model yet: the selected model is written to "
            f"{str(path / 'model')!r} when training finishes (resume the run to finish it)"
        )
    return RecipeError(f"{str(path)!r} is not a model folder (no config.json)")


def _weights_file(path: Path) -> str:
    """The weights file(s) of a local checkpoint, for error messages."""
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if (path / name).is_file():
            return str(path / name)
    return str(path)


def load_checkpoint(model: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """Loads a ComP checkpoint; one-line RecipeError for anything that is not one.

    Args:
        model: a run directory (its ``model/`` is used), a folder with ``config.json``, or a Hub id.
        revision: Hub revision.
        trust_remote_code: load with the checkpoint's own modelling code.

    Returns:
        The model, in eval mode and stage 2.
    """
    path = Path(model).expanduser()
    if not path.exists() and _looks_like_path(model):
        raise RecipeError(f"no such folder: {model!r} (a local model folder or run directory was expected)")
    if path.is_dir() and (path / "model" / "config.json").is_file() and not (path / "config.json").is_file():
        path = path / "model"
    source = str(path) if path.exists() else model
    if path.is_file():
        raise RecipeError(f"{str(path)!r} is a file; --model takes a model folder (with config.json) or a Hub id")
    if path.exists() and not (path / "config.json").is_file():
        raise _not_a_model_folder(path)
    from hub_datasets.constants import is_hub_id

    if not path.exists() and not is_hub_id(model):
        raise RecipeError(f"model {model!r} is neither an existing folder nor a Hub id (org/name)")
    if not trust_remote_code:
        import modeling_comp  # noqa: F401  (registers the ComP Auto classes)
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 -- any unreadable configuration is one line naming it
        shown = str(path / "config.json") if path.exists() else model
        raise RecipeError(f"cannot read the configuration {shown!r}: {_first_line(err)}") from None
    if getattr(config, "model_type", None) != "comp":
        raise RecipeError(
            f"{model!r} is a {getattr(config, 'model_type', 'unknown')!r} checkpoint, not a ComP ('comp') one"
        )
    from modeling_comp import load_comp_checkpoint

    try:
        # strict: a checkpoint missing a tensor (which from_pretrained would initialise afresh) or holding
        # unexpected or mis-shaped ones is refused, naming the keys
        loaded = load_comp_checkpoint(
            source, model_class=AutoModel, revision=revision, trust_remote_code=trust_remote_code
        )
    except Exception as err:  # noqa: BLE001 -- a corrupt or truncated weights file is one line naming it
        shown = _weights_file(path) if path.exists() else model
        raise RecipeError(f"cannot load the weights {shown!r}: {_first_line(err)}") from None
    loaded.set_training_stage(2)
    return loaded.eval()


def checkpoint_processor(model):
    """The processor saved with a local checkpoint (``preprocessor_config.json``), or, when it has none, the one
    derived from the model's config (said on stderr). A malformed file is a one-line :class:`RecipeError`."""
    from modeling_comp import ComPProcessor
    from modeling_comp.processing_comp import PROCESSOR_FILE

    source = Path(str(getattr(model, "name_or_path", "") or ""))
    if source.is_dir() and (source / PROCESSOR_FILE).is_file():
        try:
            processor = ComPProcessor.from_pretrained(str(source))
            processor.check_model_config(model.config)
        except (OSError, ValueError) as err:
            raise RecipeError(_first_line(err).partition(": ")[2]) from None
        return processor
    if source.is_dir():
        print(f"note: {str(source)!r} has no {PROCESSOR_FILE}; using the processor derived from its config.json",
              file=sys.stderr)  # fmt: skip
    return ComPProcessor.from_model_config(model.config)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


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
    from recipes.common import (
        corpus_task,
        evaluate_model,
        json_ready,
        load_corpus,
        make_accelerator,
        synthetic_label,
        write_json_atomic,
    )
    from recipes.model_card import format_metric

    data_cfg = cfg
    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    model = load_checkpoint(cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    folds = cfg.folds()
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
    from modeling_comp import ComPDataCollator

    # the checkpoint's own processor: feature dims are checked against the model, values for finiteness
    collate = ComPDataCollator(processor=checkpoint_processor(model))
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
        print(f"  condition: {_condition_text(cfg, result['provenance'])}")
        for key, value in metrics.items():
            if isinstance(value, float):
                shown = f"{value:.4f}" if key in ("mae", "corr", "loss") else format_metric(value)
                print(f"  {key:<24} {shown}")
        if cfg.output_file:
            write_json_atomic(cfg.output_file, json_ready(result))
    return result


def _condition_text(cfg: EvalConfig, provenance: dict[str, Any]) -> str:
    """``missing rate 0.5 requested, 0.497 realised`` (or the observed modalities of the subset protocol)."""
    if cfg.missing_protocol == "subset":
        return f"observed modalities {cfg.observed_modalities} (subset protocol)"
    realised = provenance.get("realised_missing_rate")
    shown = "n/a" if realised is None else f"{realised:.3f}"
    return f"missing rate {cfg.missing_rate:g} requested, {shown} realised (mask seed {cfg.resolved_mask_seed})"


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
