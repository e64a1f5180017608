"""The training loop of ComP (``comp-train``, ``recipes/train.py``): two-stage schedule, per-epoch evaluation,
checkpoints and exact resume, model selection, the selected model saved with its processor, pipeline and card.

There is one loop; a training protocol (:class:`recipes.common.TrainingProtocol`: the default one, or the authors'
released one, :class:`recipes.released_protocol.ReleasedProtocol`) says where the masks come from, how batches are
formed, what is selected and which metric definitions apply. This module imports torch, accelerate and the model:
the command line (:mod:`recipes.train`) parses and checks the options before importing it.

A run directory holds ``config.yaml`` (resolved configuration), ``provenance.json`` (data provenance per split),
``metrics.json`` (every epoch and the final selection), ``checkpoints/`` (accelerate ``save_state``), ``logs/``
(TensorBoard) and ``model/`` (the selected model via ``save_pretrained``, loadable with ``AutoModel``, also with
``trust_remote_code=True`` and no package installed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env, set_seed
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

import hub_datasets
from modeling_comp import ComPConfig, ComPForEmotionRecognition, ComPProcessor, save_with_processor_and_pipeline
from modeling_comp.configuration_comp import CORPUS_MODALITY_FEATURES, MODALITIES
from recipes.common import (
    DeviceCorpus,
    EpochMaskedDataset,
    TrainingProtocol,
    check_output_dir,
    corpus_task,
    evaluate_model,
    make_accelerator,
    model_inputs,
    read_json,
    replace_dir_atomic,
    write_json_atomic,
    write_text_atomic,
)
from recipes.config import RELEASED, ConfigError, RecipeError, TrainConfig, model_config_error
from recipes.model_card import render_model_card
from recipes.released_protocol import ReleasedProtocol
from recipes.selection import selection_loss


__all__ = [
    "train",
    "train_run",
    "train_one_epoch",
    "protocol_for",
    "find_checkpoint",
    "push_run_to_hub",
    "OutputWriteError",
    "RUN_FILES",
]

#: Files a run writes at the top of its directory (besides checkpoints/, logs/ and model/).
RUN_FILES = ("config.yaml", "provenance.json", "metrics.json")
_STATE_FILE = "training_state.json"
_BEST_FILE = "best_model.safetensors"
_DEFAULT_EVAL_BATCH = 256  # conversations per evaluation batch when eval_batch_size is unset
# Keys that may change between an interrupted run and its resumption (``epochs`` too, upwards: see _check_resume).
_RESUME_FREE_KEYS = {
    "resume_from_checkpoint",
    "output_dir",
    "overwrite_output_dir",
    "progress",
    "push_to_hub",
    "hub_private",
    "hub_token",
    "report_to",
    "num_workers",
    "checkpoint_total_limit",
    "checkpoint_every",
    "checkpoint_interval",
    "torch_threads",
    "epochs",
}


def protocol_for(cfg: TrainConfig) -> TrainingProtocol:
    """The training protocol of a configuration."""
    return ReleasedProtocol() if cfg.protocol == RELEASED else TrainingProtocol()


# ---------------------------------------------------------------------- run directory


def process_state() -> PartialState:
    """accelerate's process state (initialises the process group when launched). It reads ``ACCELERATE_USE_CPU`` as
    the Accelerator does: the first PartialState of a process fixes its distributed setup for the Accelerator built
    later, and without it two CPU processes would each run alone."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def broadcast(value: Any) -> Any:
    """The main process's ``value`` on every process."""
    state = process_state()
    if state.num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _checkpoint_number(path: Path) -> int | None:
    match = re.fullmatch(r"checkpoint_(\d+)", path.name)
    return int(match.group(1)) if match else None


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest *complete* checkpoint of a run (one whose training state was written last), or None."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None
    complete = [p for p in root.iterdir() if _checkpoint_number(p) is not None and (p / _STATE_FILE).is_file()]
    return max(complete, key=_checkpoint_number) if complete else None


def _resolve_resume(cfg: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint directory to resume from (or None); one-line errors for bad requests."""
    if cfg.resume_from_checkpoint is None:
        return None
    if cfg.resume_from_checkpoint == "latest":
        return find_checkpoint(run_dir)  # None: nothing saved yet -> start from scratch
    path = Path(cfg.resume_from_checkpoint).expanduser()
    if not path.is_dir():
        raise RecipeError(f"resume_from_checkpoint {str(path)!r} is not a directory")
    if not (path / _STATE_FILE).is_file():
        raise RecipeError(
            f"resume_from_checkpoint {str(path)!r} is not a complete comp-emotion checkpoint (no {_STATE_FILE})"
        )
    return path


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resuming: bool) -> None:
    """Checks the run directory is writable and not holding another run (unless resuming/overwriting)."""
    check_output_dir(run_dir)
    used = [name for name in (*RUN_FILES, "checkpoints", "model") if (run_dir / name).exists()]
    if used and not resuming:
        if not cfg.overwrite_output_dir:
            raise RecipeError(
                f"output_dir {str(run_dir)!r} already holds a run ({used[0]}); pass --resume_from_checkpoint latest "
                "to continue it or --overwrite_output_dir true to replace it"
            )
        for name in (*RUN_FILES, "checkpoints", "model", "logs"):
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def _check_same_config(cfg: TrainConfig, run_dir: Path, epochs_done: int) -> None:
    """A resumed run must have the configuration it was started with (except output/resume/reporting keys);
    ``epochs`` may change as long as it is more than the epochs already done."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecipeError(f"cannot resume: {path} is not the YAML this recipe wrote ({reason})") from None
    if not isinstance(saved, dict):
        raise RecipeError(f"cannot resume: {path} holds a {type(saved).__name__}, not the mapping this recipe wrote")
    current = cfg.to_dict()
    for key in sorted(set(saved) | set(current)):
        if key in _RESUME_FREE_KEYS:
            continue
        if saved.get(key) != current.get(key):
            raise RecipeError(f"cannot resume: {key} was {saved.get(key)!r} in {path} but is {current.get(key)!r} now")
    if cfg.epochs < epochs_done:
        raise RecipeError(
            f"cannot resume: {run_dir} has trained {epochs_done} epochs already, more than --epochs {cfg.epochs}; "
            f"pass --epochs {epochs_done + 1} or more to train further"
        )


def _finished_run(cfg: TrainConfig, run_dir: Path) -> dict[str, Any] | None:
    """The final summary of a finished run that ``--resume_from_checkpoint`` asks to continue with no more epochs
    (None: there is something to train). Asking for more epochs continues it from its last checkpoint."""
    done = run_dir / "metrics.json"
    if cfg.resume_from_checkpoint is None or not done.is_file():
        return None
    previous = read_json(done)
    if not previous.get("finished") or "final" not in previous:
        return None
    epochs_done = len(previous.get("epochs") or [])
    if cfg.epochs > epochs_done:
        if find_checkpoint(run_dir) is None:
            raise RecipeError(
                f"cannot train {run_dir} further: it holds no checkpoint (checkpoints/ was removed); start a new run "
                "with --overwrite_output_dir true"
            )
        return None
    if cfg.epochs < epochs_done:
        _check_same_config(cfg, run_dir, epochs_done)  # raises: fewer epochs than done
    if process_state().is_main_process:
        print(
            f"{run_dir} already finished its {epochs_done} epochs: nothing to train (pass --epochs "
            f"{epochs_done + 1} or more to train further)",
            flush=True,
        )
    return previous["final"]


# ---------------------------------------------------------------------- helpers


def _epoch_seed(seed: int, epoch: int) -> int:
    """Per-epoch seed: RNG streams of an epoch do not depend on how the run got there (resume-exact)."""
    return (seed * 1_000_003 + 7919 * (epoch + 1)) % (2**31 - 1)


def _selection_value(record: dict, split: str, metric: str) -> float | None:
    value = (record.get(split) or {}).get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _state_dict_cpu(model) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _hparams(cfg: TrainConfig, fold: int | None) -> dict[str, Any]:
    """Scalar hyper-parameters for TensorBoard's hparams view."""
    flat: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key == "model":
            for name, inner in value.items():
                if isinstance(inner, (int, float, str, bool)):
                    flat[f"model.{name}"] = inner
        elif isinstance(value, (int, float, str, bool)):
            flat[key] = value
    flat["fold"] = fold if fold is not None else -1
    return flat


def _fmt(value: Any, metric: str) -> str:
    if value is None:
        return "  n/a "
    return f"{value:6.3f}" if metric in ("mae", "corr") else f"{100 * value:6.2f}"


def _summary_lines(cfg: TrainConfig, summary: dict, run_dir: Path) -> list[str]:
    """The end-of-run report: fused and per-modality test metrics, stage 1 vs stage 2, and the checkpoint path."""
    task = summary["task"]
    main = "accuracy" if task == "classification" else "acc2"
    second = "unweighted_accuracy" if task == "classification" else "f1"
    per_mod = [f"{'accuracy' if task == 'classification' else 'acc2'}_{m}" for m in MODALITIES]
    label = " (synthetic)" if cfg.is_synthetic else ""
    prov = summary.get("provenance_test") or {}
    realised = prov.get("realised_missing_rate")
    protocol = (
        f"missing rate {cfg.missing_rate:g}" + (f" (realised {realised:.3f})" if realised is not None else "")
        if cfg.missing_protocol == "rate"
        else f"observed modalities {cfg.observed_modalities}"
    )
    fold = f", fold {summary['fold']}" if summary.get("fold") is not None else ""
    head = "WA     UA  " if task == "classification" else "Acc2   F1  "
    lines = [
        "",
        f"ComP on {cfg.dataset}{'/' + cfg.dataset_config if cfg.is_synthetic and cfg.dataset_config else ''}"
        f"{label} - {protocol}, seed {cfg.seed}{fold}",
        f"selection: {summary['selection_rule']}",
        f"test metrics{label} (percent)  fused {head}|  audio   text  video",
    ]
    rows = []
    if summary.get("stage1") is not None:
        rows.append((f"stage 1 (epoch {summary['stage1']['epoch']}, last)", summary["stage1"]["test"], True))
    rows.append((f"stage 2 (epoch {summary['epoch']}, selected)", summary["test"], False))
    for name, metrics, untrained in rows:
        fused = f"{_fmt(metrics.get(main), main)} {_fmt(metrics.get(second), second)}"
        mods = " ".join(_fmt(metrics.get(k), main) for k in per_mod)
        note = "  (fused head untrained in stage 1)" if untrained else ""
        lines.append(f"  {name:<30} {fused} | {mods}{note}")
    if summary.get("selection") == "test":
        lines.append("  NOTE: epoch chosen on the TEST set (paper protocol) - these test numbers are optimistic")
    lines.append(f"selected model: {run_dir / 'model'}")
    return lines


# ---------------------------------------------------------------------- one epoch


def train_one_epoch(
    model,
    loader,
    optimizer,
    accelerator,
    *,
    max_grad_norm: float | None = None,
    desc: str = "train",
    show_progress: bool = True,
) -> tuple[float, dict[str, float], float]:
    """One pass over ``loader``: forward with labels (the model computes the stage's losses and arms the
    gradient modulator), ``accelerator.backward``, optional clipping, ``optimizer.step``.

    The loss and its terms are summed on the device and read once, after the epoch (no per-step host sync).

    Args:
        model: the prepared model, already switched to its stage.
        loader: the prepared training dataloader, or any iterable of batches on the device.
        optimizer: the prepared optimizer.
        accelerator: the run's accelerator (mixed precision and gradient accumulation live there).
        max_grad_norm: clip the gradient norm when set.
        desc: progress-bar label.
        show_progress: show the bar (main process only).

    Returns:
        ``(mean loss over processes, mean loss terms of this process, seconds)``.
    """
    model.train()
    started = time.perf_counter()
    dtype = torch.float32 if accelerator.device.type == "mps" else torch.float64
    loss_sum = torch.zeros((), dtype=dtype, device=accelerator.device)
    terms_sum: dict[str, Any] = {}
    batches = 0
    for batch in tqdm(
        loader, desc=desc, leave=False, disable=not (show_progress and accelerator.is_local_main_process)
    ):
        with accelerator.accumulate(model):
            with accelerator.autocast():
                out = model(**model_inputs(batch))
            accelerator.backward(out.loss)
            if max_grad_norm is not None and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        loss_sum += out.loss.detach().to(dtype)
        for name, value in (out.loss_terms or {}).items():
            value = value.detach().to(dtype) if isinstance(value, torch.Tensor) else float(value)
            terms_sum[name] = terms_sum.get(name, 0.0) + value
        batches += 1
    seconds = time.perf_counter() - started
    count = max(batches, 1)
    mean_loss = float(accelerator.gather((loss_sum / count)[None]).mean())
    return mean_loss, {k: float(v) / count for k, v in terms_sum.items()}, seconds


class OutputWriteError(Exception):
    """Writing an output failed (disk full, read-only folder): turned into a one-line RecipeError by train()."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@contextlib.contextmanager
def _writing(path: Path):
    """Turns an OSError (or torch's RuntimeError for a failed file write, or safetensors' SafetensorError, which
    accelerate's ``save_state`` meets first on a full disk or a read-only folder) while writing ``path`` into one
    error."""
    try:
        yield
    except OSError as err:
        raise OutputWriteError(Path(err.filename or path), err.strerror or str(err)) from None
    except SafetensorError as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OutputWriteError(path, re.sub(r"^Error while serializing: (I/O error: )?", "", text)) from None
    except RuntimeError as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "writ" not in text.lower() and "file" not in text.lower():
            raise
        raise OutputWriteError(path, text) from None


# ---------------------------------------------------------------------- one run: the pieces


@dataclasses.dataclass
class _RunData:
    """The loaded corpus of one run and what follows from it."""

    protocol: TrainingProtocol
    dsd: Any
    eval_splits: list[str]
    model_config: Any
    task: str
    metric: str
    rule: str
    provenance: dict[str, Any]
    label_names: dict[int, str] | None


@dataclasses.dataclass
class _RunState:
    """What a checkpoint holds besides accelerate's state: the history and the best epoch so far."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best: dict[str, Any] = dataclasses.field(default_factory=lambda: {"epoch": None, "value": None})
    best_weights: dict[str, Any] | None = None
    start_epoch: int = 0
    last_save: float = dataclasses.field(default_factory=time.monotonic)


def _check_model_against_data(cfg: TrainConfig, data_kwargs: dict[str, Any]) -> None:
    """``--model.audio_dim 33`` on a 32-d corpus, ``--model.num_labels 6`` on 4 classes: one-line errors."""
    for key in ("audio_dim", "text_dim", "video_dim", "num_labels", "problem_type"):
        if key in cfg.model and cfg.model[key] != data_kwargs[key]:
            raise ConfigError(
                f"model.{key}={cfg.model[key]!r} does not match corpus {cfg.dataset!r}, which has "
                f"{key}={data_kwargs[key]!r}; drop model.{key} (it is taken from the data)"
            )


def _load_run_data(cfg: TrainConfig, fold: int | None, accelerator, protocol: TrainingProtocol) -> _RunData:
    """Loads the corpus (as the protocol does) and checks it against the configuration, before anything is
    trained."""
    with accelerator.main_process_first():
        dsd, sizing = protocol.load_splits(cfg, fold)
    eval_splits = protocol.eval_splits(dsd)
    for split in ("train", *eval_splits):
        if len(dsd[split]) == 0:
            raise RecipeError(f"the {split!r} split of {cfg.dataset!r} has no conversation (fold {fold})")
    data_kwargs = hub_datasets.model_config_kwargs(sizing)
    _check_model_against_data(cfg, data_kwargs)
    provenance = {"train": hub_datasets.dataset_provenance(sizing)}  # (the protocol may have merged splits into it)
    provenance.update({split: hub_datasets.dataset_provenance(dsd[split]) for split in eval_splits})
    corpus = provenance["train"].get("corpus")
    if (
        "modality_features" not in cfg.model
        and not provenance["train"].get("synthetic")
        and corpus in CORPUS_MODALITY_FEATURES
    ):
        # the checkpoint records which features (and which text extractor) it was trained on
        data_kwargs = {**data_kwargs, "modality_features": CORPUS_MODALITY_FEATURES[corpus]}
    try:
        model_config = ComPConfig(**{**data_kwargs, **cfg.model, **protocol.model_overrides(cfg)})
    except (ValueError, TypeError) as err:
        raise model_config_error(err, cfg.model) from None
    used = ("train", *eval_splits)
    longest = max(int(max(dsd[s]["num_utterances"])) for s in used if len(dsd[s]))
    if longest > model_config.max_utterances:
        raise ConfigError(
            f"model.max_utterances={model_config.max_utterances} is shorter than the longest conversation "
            f"({longest} utterances) of {cfg.dataset!r}"
        )
    _check_finite_labels(cfg, dsd, used, model_config)
    task = corpus_task(model_config)
    label_names = {int(k): v for k, v in (model_config.id2label or {}).items()} if task == "classification" else None
    metric, rule = protocol.selection(cfg, task, list((label_names or {}).values()))
    protocol.adjust_provenance(cfg, provenance)
    for entry in provenance.values():
        entry.update(selection=cfg.selection, selection_metric=metric, selection_rule=rule, training_seed=cfg.seed)
    return _RunData(protocol, dsd, eval_splits, model_config, task, metric, rule, provenance, label_names)


def _check_finite_labels(cfg: TrainConfig, dsd, splits, model_config) -> None:
    """A NaN or infinite regression label would make every loss NaN without a word: one line naming it."""
    if not model_config.is_regression:
        return
    for split in splits:
        for i, labels in enumerate(dsd[split].with_format("numpy")["labels"]):
            labels = np.asarray(labels, dtype=np.float64)
            bad = ~np.isfinite(labels)
            if bad.any():
                raise RecipeError(
                    f"corpus {cfg.dataset!r}: split {split!r}, conversation {i} has a non-finite label "
                    f"({labels[bad][0]!r} at utterance {int(np.flatnonzero(bad)[0])}); regression labels must be "
                    "finite numbers"
                )


@dataclasses.dataclass
class _Trainer:
    """The prepared model, optimiser and data of a run."""

    model: Any
    unwrapped: Any
    optimizer: Any
    train_data: Any  # EpochMaskedDataset, or None when the protocol forms the batches
    train_batches: Any  # prepared DataLoader, a DeviceCorpus, or the protocol's batches
    eval_batches: dict[str, Any]


def _build_trainer(cfg: TrainConfig, data: _RunData, accelerator) -> _Trainer:
    """Model, fused-on-CUDA Adam, and the data: the protocol's batches, DataLoaders, or with ``keep_on_device``
    device-resident splits."""
    set_seed(cfg.seed)
    try:
        model = ComPForEmotionRecognition(data.model_config)
    except (MemoryError, RuntimeError) as err:  # a model too large for this machine
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        sizes = {k: v for k, v in cfg.model.items() if k in ("hidden_size", "num_hidden_layers", "max_utterances")}
        raise ConfigError(f"cannot build the model ({sizes or 'the model sizes'}): {reason}") from None
    fused = {"fused": True} if accelerator.device.type == "cuda" else {}
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, **fused)
    own = data.protocol.batches(cfg, data.dsd, data.eval_splits, data.model_config, accelerator.device)
    eval_bs = cfg.eval_batch_size or _DEFAULT_EVAL_BATCH
    max_utt = data.model_config.max_utterances
    train_data = None
    if own is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
        train_batches, eval_batches = own
    elif cfg.keep_on_device:
        train_data = EpochMaskedDataset(data.dsd["train"])
        model, optimizer = accelerator.prepare(model, optimizer)
        on_device = {"max_utterances": max_utt, "device": accelerator.device, "pad_to_max": cfg.compile}
        train_batches = DeviceCorpus(data.dsd["train"], **on_device)
        eval_batches = {s: DeviceCorpus(data.dsd[s], **on_device) for s in data.eval_splits}
    else:
        train_data = EpochMaskedDataset(data.dsd["train"])
        # torch.compile: every batch padded to max_utterances and, in training, the last smaller batch of an epoch
        # dropped (the shuffle changes per epoch, so every conversation is still used), so training has one shape.
        pad_to = "max_utterances" if cfg.compile else "longest"
        processor = ComPProcessor.from_model_config(data.model_config, pad_to=pad_to)
        collate = hub_datasets.ComPDataCollator(processor=processor)
        drop_last = cfg.compile and len(train_data) >= cfg.batch_size
        train_dl = torch.utils.data.DataLoader(
            train_data,
            batch_size=cfg.batch_size,
            shuffle=True,
            collate_fn=collate,
            num_workers=cfg.num_workers,
            drop_last=drop_last,
        )
        eval_dls = [
            torch.utils.data.DataLoader(data.dsd[s], batch_size=eval_bs, shuffle=False, collate_fn=collate)
            for s in data.eval_splits
        ]
        model, optimizer, train_batches, *eval_dls = accelerator.prepare(model, optimizer, train_dl, *eval_dls)
        eval_batches = dict(zip(data.eval_splits, eval_dls))
    return _Trainer(model, accelerator.unwrap_model(model), optimizer, train_data, train_batches, eval_batches)


def _restore(cfg: TrainConfig, run_dir: Path, resume_dir: Path | None, accelerator) -> _RunState:
    """Loads the checkpoint to resume from (weights, optimiser, random streams), and removes checkpoints newer than
    the starting point."""
    state = _RunState()
    if resume_dir is not None:
        accelerator.load_state(str(resume_dir), load_kwargs={"weights_only": True})
        saved = read_json(resume_dir / _STATE_FILE)
        state.history, state.best, state.start_epoch = saved["history"], saved["best"], saved["epoch"] + 1
        if (resume_dir / _BEST_FILE).is_file():
            state.best_weights = load_file(str(resume_dir / _BEST_FILE))
        if accelerator.is_main_process:
            print(f"resumed from {resume_dir} (epoch {saved['epoch']} done)", flush=True)
    # Checkpoints newer than the starting point are stale (interrupted mid-save, or from an abandoned branch):
    # remove them so that save_state never meets an existing folder.
    if accelerator.is_main_process and (run_dir / "checkpoints").is_dir():
        for stale in (run_dir / "checkpoints").iterdir():
            number = _checkpoint_number(stale)
            if number is not None and number >= state.start_epoch:
                shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    return state


def _epoch_batches(cfg: TrainConfig, trainer: _Trainer, epoch: int):
    """This epoch's training batches (default protocol: masks of ``epoch``, an order that depends on (seed, epoch)
    only; another protocol: its own batches)."""
    if trainer.train_data is None:
        return trainer.train_batches
    trainer.train_data.set_epoch(epoch)
    if not cfg.keep_on_device:
        trainer.train_batches.set_epoch(epoch)
        return trainer.train_batches
    corpus = trainer.train_batches
    corpus.set_masks(trainer.train_data.current)
    generator = torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch))
    return corpus.batches(cfg.batch_size, generator=generator)


def _evaluate_splits(cfg: TrainConfig, data: _RunData, trainer: _Trainer, accelerator, epoch: int, show: bool):
    results = {}
    eval_bs = cfg.eval_batch_size or _DEFAULT_EVAL_BATCH
    metric_fn = data.protocol.metric_definitions(data.task, data.model_config.num_labels, data.label_names)
    for split, batches in trainer.eval_batches.items():
        results[split] = evaluate_model(
            trainer.model,
            batches.batches(eval_bs) if isinstance(batches, DeviceCorpus) else batches,
            accelerator,
            task=data.task,
            num_labels=data.model_config.num_labels,
            label_names=data.label_names,
            num_conversations=len(data.dsd[split]),
            desc=f"{split} {epoch}",
            show_progress=show,
            metric_fn=metric_fn,
        )
    return results


def _run_epoch(cfg, data: _RunData, trainer: _Trainer, state: _RunState, accelerator, epoch: int, show: bool):
    """Trains and evaluates one epoch, updates the best epoch; returns the epoch's record."""
    stage = 1 if epoch < cfg.stage1_epochs else 2
    trainer.unwrapped.set_training_stage(stage)
    if data.protocol.reseed_every_epoch:
        set_seed(_epoch_seed(cfg.seed, epoch), device_specific=True)
    batches = _epoch_batches(cfg, trainer, epoch)
    mean_loss, terms, train_seconds = train_one_epoch(
        trainer.model,
        batches,
        trainer.optimizer,
        accelerator,
        max_grad_norm=cfg.max_grad_norm,
        desc=f"epoch {epoch} (stage {stage})",
        show_progress=show,
    )
    record: dict[str, Any] = {
        "epoch": epoch,
        "stage": stage,
        "train": {"loss": mean_loss, **terms},
        "train_seconds": train_seconds,
    }
    record.update(_evaluate_splits(cfg, data, trainer, accelerator, epoch, show))
    value = _selection_value(record, cfg.selection, data.metric)
    record["selection_value"] = value
    if (
        stage >= cfg.selection_stage
        and value is not None
        and data.protocol.improves(value, record, state.best, cfg.selection, data.metric)
    ):
        state.best = {"epoch": epoch, "value": value, "loss": selection_loss(record, cfg.selection)}
        state.best_weights = _state_dict_cpu(trainer.unwrapped)
    record["best_epoch"] = state.best["epoch"]
    state.history.append(record)
    return record


def _log_epoch(cfg: TrainConfig, data: _RunData, record: dict[str, Any], accelerator) -> None:
    if not cfg.reporters:
        return
    logs = {f"train/{k}": v for k, v in record["train"].items()}
    for split in data.eval_splits:
        logs.update({f"{split}/{k}": v for k, v in record[split].items() if isinstance(v, (int, float))})
    logs["stage"] = record["stage"]
    accelerator.log(logs, step=record["epoch"])


def _checkpoint_due(cfg: TrainConfig, state: _RunState, epoch: int) -> bool:
    """Last epoch and end of stage 1 always; otherwise every ``checkpoint_every`` epochs, at most once per
    ``checkpoint_interval`` seconds."""
    if epoch == cfg.epochs - 1 or epoch == cfg.stage1_epochs - 1:
        return True
    if (epoch + 1) % cfg.checkpoint_every:
        return False
    return time.monotonic() - state.last_save >= cfg.checkpoint_interval


def _save_checkpoint(cfg: TrainConfig, run_dir: Path, state: _RunState, accelerator, epoch: int) -> None:
    """``save_state`` into ``checkpoints/checkpoint_<epoch>``, the best weights, then the state file (last:
    its presence marks the checkpoint complete), then quiet pruning to ``checkpoint_total_limit``."""
    # Named after the epoch (the counter is set explicitly), so a resumed run never clobbers or misnames one.
    accelerator.project_configuration.iteration = epoch
    target = run_dir / "checkpoints" / f"checkpoint_{epoch}"
    with _writing(target):
        path = Path(accelerator.save_state())
        if accelerator.is_main_process:
            if state.best_weights is not None:
                save_file(state.best_weights, str(path / _BEST_FILE))
            write_json_atomic(path / _STATE_FILE, {"epoch": epoch, "best": state.best, "history": state.history})
    if accelerator.is_main_process and cfg.checkpoint_total_limit is not None:
        complete = sorted(
            (p for p in path.parent.iterdir() if _checkpoint_number(p) is not None and (p / _STATE_FILE).is_file()),
            key=_checkpoint_number,
        )
        for old in complete[: -cfg.checkpoint_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    state.last_save = time.monotonic()


def _summary(cfg: TrainConfig, data: _RunData, state: _RunState, fold: int | None) -> dict[str, Any]:
    if state.best["epoch"] is None or state.best_weights is None:
        raise RecipeError(f"no epoch could be selected ({cfg.selection} {data.metric} was never defined)")
    selected = next(r for r in state.history if r["epoch"] == state.best["epoch"])
    stage1 = [r for r in state.history if r["stage"] == 1]
    summary = {
        "task": data.task,
        "fold": fold,
        "epoch": state.best["epoch"],
        "stage": selected["stage"],
        "selection": cfg.selection,
        "selection_metric": data.metric,
        "selection_rule": data.rule,
        "selection_stage": cfg.selection_stage,
        "validation": selected.get("validation"),
        "test": selected.get("test"),
        "stage1": (
            {"epoch": stage1[-1]["epoch"], "test": stage1[-1].get("test"), "validation": stage1[-1].get("validation")}
            if stage1
            else None
        ),
        "provenance_test": data.provenance.get("test"),
        "synthetic": cfg.is_synthetic,
    }
    return data.protocol.finish_summary(cfg, summary, state.history)


def _metrics_file(data: _RunData, state: _RunState, summary: dict[str, Any] | None) -> dict[str, Any]:
    record = {"finished": summary is not None, **data.protocol.record_extras, "selection_rule": data.rule}
    record["epochs"] = state.history
    if summary is not None:
        record["final"] = summary
    return record


@contextlib.contextmanager
def _no_transformers_progress_bar():
    """transformers' progress bars off for the block (restored after, whatever they were)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _save_selected_model(cfg, data: _RunData, trainer: _Trainer, summary, run_dir: Path, state: _RunState) -> None:
    """Writes ``model/`` (weights, code, processor, pipeline, card, comp_run.json) through a staging folder, then
    ``metrics.json``."""
    staging = run_dir / ".model.partial"
    with _writing(staging):
        if staging.exists():
            shutil.rmtree(staging)
        # weights, model code, the processor (preprocessor_config.json) and the pipeline declaration; transformers'
        # "Writing model shards" bar only where the run shows progress
        with contextlib.nullcontext() if cfg.progress else _no_transformers_progress_bar():
            save_with_processor_and_pipeline(trainer.unwrapped, None, staging)
        run_record = {
            "config": cfg.to_dict(),
            "provenance": data.provenance,
            "final": summary,
            "task": data.task,
            "repo_id": cfg.push_to_hub,
            **data.protocol.record_extras,
        }
        write_json_atomic(staging / "comp_run.json", run_record)
        card = render_model_card(run_record, with_pipeline=True)
        write_text_atomic(staging / "README.md", data.protocol.model_card(card))
        replace_dir_atomic(staging, run_dir / "model")
    with _writing(run_dir / "metrics.json"):
        write_json_atomic(run_dir / "metrics.json", _metrics_file(data, state, summary))


# ---------------------------------------------------------------------- one run


def train_run(cfg: TrainConfig, run_dir: Path, fold: int | None = None) -> dict[str, Any]:
    """Trains one model (one fold) in ``run_dir`` with the configuration's protocol and returns its final summary.

    Args:
        cfg: validated configuration.
        run_dir: the run directory (created).
        fold: IEMOCAP fold or None.

    Returns:
        ``metrics.json``'s ``final`` entry: selected epoch and its stage, selection rule, validation/test metrics,
        stage-1 metrics, fold, task (and the protocol's own entries).
    """
    run_dir = Path(run_dir)
    protocol = protocol_for(cfg)
    finished = _finished_run(cfg, run_dir)
    if finished is not None:
        return finished
    resume_dir = _resolve_resume(cfg, run_dir)
    _prepare_run_dir(cfg, run_dir, resuming=cfg.resume_from_checkpoint is not None)
    if cfg.resume_from_checkpoint is not None:
        epochs_done = 0 if resume_dir is None else read_json(resume_dir / _STATE_FILE)["epoch"] + 1
        _check_same_config(cfg, run_dir, epochs_done)

    accelerator = make_accelerator(
        mixed_precision=protocol.mixed_precision or cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        project_dir=run_dir,
        report_to=cfg.reporters,
        seed=cfg.seed,
        compile=cfg.compile,
    )
    protocol.check_launch(accelerator.num_processes)
    if cfg.keep_on_device and accelerator.num_processes > 1:
        raise ConfigError("keep_on_device=True runs in one process; launch one process or drop --keep_on_device")
    is_main = accelerator.is_main_process
    show = cfg.progress and accelerator.is_local_main_process
    set_seed(cfg.seed)

    data = _load_run_data(cfg, fold, accelerator, protocol)
    trainer = _build_trainer(cfg, data, accelerator)  # (a model too large is refused before anything is written)
    if is_main:
        with _writing(run_dir / "config.yaml"):
            write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            write_json_atomic(run_dir / "provenance.json", data.provenance)
    state = _restore(cfg, run_dir, resume_dir, accelerator)
    if cfg.reporters:
        with _writing(run_dir / "logs"):
            accelerator.init_trackers("comp", config=_hparams(cfg, fold))

    bar = tqdm(total=cfg.epochs, initial=state.start_epoch, desc="epochs", disable=not show, dynamic_ncols=True)
    for epoch in range(state.start_epoch, cfg.epochs):
        record = _run_epoch(cfg, data, trainer, state, accelerator, epoch, show)
        with _writing(run_dir / "logs"):
            _log_epoch(cfg, data, record, accelerator)
        if is_main:
            with _writing(run_dir / "metrics.json"):
                write_json_atomic(run_dir / "metrics.json", _metrics_file(data, state, None))
        if _checkpoint_due(cfg, state, epoch):
            _save_checkpoint(cfg, run_dir, state, accelerator, epoch)
        if show:
            shown = record.get(cfg.selection, {}).get(data.metric)
            bar.set_postfix(stage=record["stage"], loss=f"{record['train']['loss']:.3f}",
                            **{f"{cfg.selection[:3]}_{data.metric}": shown})  # fmt: skip
        bar.update(1)
    bar.close()

    summary = _summary(cfg, data, state, fold)
    trainer.unwrapped.load_state_dict(state.best_weights)
    # the stage the selected weights were trained in (saved as the config's trained_stage)
    trainer.unwrapped.set_training_stage(summary["stage"])
    if is_main:
        _save_selected_model(cfg, data, trainer, summary, run_dir, state)
    accelerator.wait_for_everyone()
    if cfg.reporters:  # before the summary, which is then the last thing a run prints (trackers print on closing)
        with _writing(run_dir / "logs"):
            accelerator.end_training()
        _forget_finished_trackio_run()
    if is_main:
        lines = data.protocol.summary_lines(cfg, summary, run_dir / "model") or _summary_lines(cfg, summary, run_dir)
        for line in lines:
            print(line, flush=True)
    return summary


def _forget_finished_trackio_run() -> None:
    """accelerate finishes a trackio run with ``run.finish()`` but leaves it trackio's current run, which trackio
    then finishes again when the interpreter exits (a stray "Uploading logs to Trackio" line after everything):
    clear it, as ``trackio.finish()`` does."""
    trackio = sys.modules.get("trackio")
    context = getattr(trackio, "context_vars", None)
    if context is not None and hasattr(context, "current_run"):
        context.current_run.set(None)


# ---------------------------------------------------------------------- folds, push


def _aggregate_folds(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std (population std over folds) of every numeric test metric."""
    keys = sorted({k for s in summaries for k, v in (s.get("test") or {}).items() if isinstance(v, (int, float))})
    out: dict[str, Any] = {}
    for key in keys:
        values = [s["test"][key] for s in summaries if isinstance((s.get("test") or {}).get(key), (int, float))]
        if values:
            out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
    return out


def push_run_to_hub(cfg: TrainConfig, run_dir: Path) -> str:
    """Uploads ``run_dir/model`` (weights, code, card, comp_run.json) to ``cfg.push_to_hub``; returns its URL."""
    private = cfg.hub_private if cfg.hub_private is not None else cfg.is_iemocap and not cfg.is_synthetic
    api = HfApi(token=cfg.hub_token)
    try:
        url = api.create_repo(cfg.push_to_hub, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            repo_id=cfg.push_to_hub,
            folder_path=str(run_dir / "model"),
            commit_message=f"Upload ComP trained on {cfg.dataset}{' (synthetic)' if cfg.is_synthetic else ''} with comp-emotion",
        )
    except (HfHubHTTPError, OSError) as err:
        raise RecipeError(f"push to the Hub repo {cfg.push_to_hub!r} failed: {str(err).splitlines()[0]}") from None
    return str(url)


def _resume_command(cfg: TrainConfig, run_dir: Path) -> str:
    return f"comp-train --config {run_dir / 'config.yaml'} --output_dir {run_dir} --resume_from_checkpoint latest"


def _output_dir(cfg: TrainConfig, default_dir) -> Path:
    """The run directory: ``--output_dir``, the run of ``--resume_from_checkpoint DIR``, or the default one (named by
    the main process, so that every process of a launch writes to the same folder)."""
    if cfg.output_dir is not None:
        return Path(cfg.output_dir).expanduser()
    if cfg.resume_from_checkpoint not in (None, "latest"):
        # runs/x/checkpoints/checkpoint_3 (or runs/x/fold2/checkpoints/...) -> the run directory
        return Path(cfg.resume_from_checkpoint).expanduser().resolve().parents[1]
    if cfg.resume_from_checkpoint == "latest":
        raise ConfigError("--resume_from_checkpoint latest needs --output_dir (the run directory to continue)")
    return default_dir(cfg, broadcast(time.strftime("%Y%m%d-%H%M%S")))


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what creating ``path`` creates first), or None."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _remove_if_empty(path: Path, top: Path) -> None:
    """Removes ``path`` and its parents up to ``top`` (folders this command created) while they hold no file."""
    path = path.absolute()
    if path.is_dir() and not any(p.is_file() or p.is_symlink() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)
    while path != top and path.parent != path:
        path = path.parent
        with contextlib.suppress(OSError):
            path.rmdir()  # only when empty


def train(cfg: TrainConfig, default_dir) -> dict[str, Any]:
    """Runs a configuration: one run, or one per IEMOCAP fold with mean ± std; pushes to the Hub if asked.

    Args:
        cfg: validated configuration.
        default_dir: ``f(cfg, stamp) -> Path``, the run directory when none is given.

    Returns:
        ``{"run_dir", "final"}`` for one run or ``{"run_dir", "folds", "mean_std"}`` for several folds.

    Raises:
        RecipeError: one line for anything the user can fix, including an output that could not be written
            (disk full, read-only folder) mid-run: it names the path and the command that resumes the run. A run
            folder this call created is removed again when the run fails before writing anything into it.
    """
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    out = _output_dir(cfg, default_dir)
    created = _first_missing(out)
    try:
        return _train(cfg, out)
    except BaseException:
        if created is not None and process_state().is_main_process:
            _remove_if_empty(out, created)
        raise


def _train(cfg: TrainConfig, out: Path) -> dict[str, Any]:
    check_output_dir(out)
    folds = cfg.folds()
    if len(folds) > 1 and cfg.resume_from_checkpoint not in (None, "latest"):
        raise ConfigError("with --fold all, resume with --resume_from_checkpoint latest (folds resume in order)")
    try:
        summaries = [train_run(cfg, out if len(folds) == 1 else out / f"fold{f}", f) for f in folds]
    except OutputWriteError as err:
        raise RecipeError(
            f"cannot write {err.path}: {err.reason}; what was written before is intact - free space or fix the "
            f"permissions, then resume with: {_resume_command(cfg, out)}"
        ) from None
    is_main = process_state().is_main_process
    if len(folds) == 1:
        result: dict[str, Any] = {"run_dir": str(out), "final": summaries[0]}
        model_dir = out
    else:
        mean_std = _aggregate_folds(summaries)
        result = {"run_dir": str(out), "folds": summaries, "mean_std": mean_std}
        if is_main:
            write_json_atomic(
                out / "metrics.json",
                {"finished": True, "folds": summaries, "mean_std": mean_std, "synthetic": cfg.is_synthetic},
            )
            main = "accuracy" if summaries[0]["task"] == "classification" else "acc2"
            m = mean_std.get(main)
            if m:
                print(
                    f"\n{len(folds)}-fold test {main}{' (synthetic)' if cfg.is_synthetic else ''}: {100 * m['mean']:.2f} ± {100 * m['std']:.2f}"
                    f" ({summaries[0]['selection_rule']})",
                    flush=True,
                )
        model_dir = None
    if cfg.push_to_hub:
        if model_dir is None:
            raise ConfigError("--push_to_hub needs a single run: pick one fold with --fold N")
        if is_main:
            url = push_run_to_hub(cfg, model_dir)
            print(f"pushed to {url}", flush=True)
            result["hub_url"] = url
    return result
