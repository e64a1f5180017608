"""Pieces shared by the training, evaluation and sweep recipes.

* :class:`TrainingProtocol` — what a training protocol decides (data, masks, batches, selection, metric definitions,
  reporting); the default protocol, and the base of :class:`recipes.released_protocol.ReleasedProtocol`. The one
  training loop, :func:`recipes.trainer.train_run`, asks its protocol at each of these points;
* :func:`make_accelerator` — the only place an :class:`accelerate.Accelerator` is built;
* :func:`load_corpus` — the one call into :mod:`hub_datasets` (corpus, protocol, fold, seed);
* :func:`evaluate_model` — a distributed evaluation loop (``gather_for_metrics``, padding masked out) that also
  checks it saw every conversation exactly once;
* :class:`DeviceCorpus` — a split collated once and kept on the device (``--keep_on_device``);
* small helpers: atomic file writes (through :mod:`hub_datasets.atomic`), JSON that survives NaN,
  device-independent batch preparation.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.tracking import get_available_trackers
from accelerate.utils import ProjectConfiguration, TorchDynamoPlugin
from tqdm.auto import tqdm

import hub_datasets
from hub_datasets.atomic import atomic_write_text
from hub_datasets.constants import DATASET_NAMES
from modeling_comp import utterance_index_from_attention_mask
from modeling_comp.configuration_comp import (
    ATTENTION_MASK,
    LABELS,
    MODALITIES,
    MODALITY_MASK,
    MODEL_INPUT_NAMES,
    UTTERANCE_INDEX,
)
from modeling_comp.processing_comp import CONVERSATION_INDEX, ComPProcessor
from recipes.config import ConfigError, DataConfig, RecipeError, TrainConfig
from recipes.metrics import CLASSIFICATION, REGRESSION, default_selection_metric, evaluate_metrics, metric_names
from recipes.model_card import selection_description
from recipes.selection import selection_improves


__all__ = [
    "CONVERSATION_INDEX",
    "TrainingProtocol",
    "make_accelerator",
    "load_corpus",
    "corpus_task",
    "model_inputs",
    "evaluate_model",
    "EpochMaskedDataset",
    "DeviceCorpus",
    "check_output_dir",
    "write_json_atomic",
    "write_text_atomic",
    "replace_dir_atomic",
    "read_json",
    "json_ready",
    "synthetic_label",
]


# ---------------------------------------------------------------------- protocols


class TrainingProtocol:
    """The default training protocol, and the points where another protocol may differ from it.

    The one training loop (:func:`recipes.trainer.train_run`) builds the accelerator, the model and the optimiser,
    runs the epochs, checkpoints, selects, saves and reports; at each point below it asks its protocol. The default
    protocol: fixed test/validation masks, training masks redrawn per epoch from (seed, epoch), a validation
    hold-out, the best validation epoch of stage 2, the library's metric definitions.
    """

    name = "default"
    #: Reseed Python/NumPy/torch from (seed, epoch) at every epoch, so that an epoch does not depend on how the run
    #: got there. A protocol whose randomness is one stream seeded once sets False: a resumed run then continues
    #: that stream from the RNG state every checkpoint holds (``accelerate``'s ``save_state``).
    reseed_every_epoch = True
    #: Mixed precision the protocol imposes (None: the configuration's / the launcher's).
    mixed_precision: str | None = None
    #: Extra top-level entries of ``metrics.json`` and ``comp_run.json``.
    record_extras: Mapping[str, Any] = {}

    def check_launch(self, num_processes: int) -> None:
        """Refuses a launch the protocol cannot run (one-line RecipeError)."""

    def load_splits(self, cfg: TrainConfig, fold: int | None):
        """``(DatasetDict, the split whose provenance sizes the model)``."""
        dsd = load_corpus(cfg, fold)
        return dsd, dsd["train"]

    def eval_splits(self, dsd) -> list[str]:
        """The splits evaluated every epoch."""
        return [s for s in ("validation", "test") if s in dsd]

    def model_overrides(self, cfg: TrainConfig) -> dict[str, Any]:
        """ComPConfig arguments the protocol imposes (applied over the data's and the configuration's)."""
        return {}

    def selection(self, cfg: TrainConfig, task: str, label_names: Sequence[str]) -> tuple[str, str]:
        """``(metric, rule)``: the metric that picks the epoch and the sentence that says how."""
        metric = cfg.selection_metric or default_selection_metric(task)
        known = metric_names(task, list(label_names))
        if metric not in known:
            raise ConfigError(
                f"selection_metric={metric!r} is not a {task} metric of {cfg.dataset!r}: expected one of "
                f"{', '.join(known)}"
            )
        return metric, selection_description(cfg.selection, metric, cfg.selection_stage)

    def adjust_provenance(self, cfg: TrainConfig, provenance: dict[str, dict[str, Any]]) -> None:
        """Corrects the data provenance for what the protocol does to the splits after loading."""

    def batches(self, cfg: TrainConfig, dsd, eval_splits: Sequence[str], model_config, device):
        """``(training batches, {split: evaluation batches})`` built by the protocol, or None for the default
        DataLoaders (prepared by accelerate, training masks redrawn per epoch)."""
        return None

    def metric_definitions(self, task: str, num_labels: int | None, label_names: Mapping[int, str] | None):
        """``f(predictions, references, modality_predictions) -> metrics`` on the real utterances of a split."""

        def compute(predictions, references, modality_predictions):
            return evaluate_metrics(
                task,
                predictions,
                references,
                modality_predictions=modality_predictions,
                num_labels=num_labels if task == CLASSIFICATION else None,
                label_names=label_names if task == CLASSIFICATION else None,
            )

        return compute

    def improves(self, value: float, record: Mapping, best: Mapping, selection: str, metric: str) -> bool:
        """Whether an epoch's selection ``value`` beats the best so far (ties: the lower loss, then the later)."""
        return selection_improves(value, record, best, selection, metric)

    def finish_summary(self, cfg: TrainConfig, summary: dict[str, Any], history: list[dict]) -> dict[str, Any]:
        """Adds the protocol's own entries to the run's final summary."""
        return summary

    def summary_lines(self, cfg: TrainConfig, summary: Mapping[str, Any], model_dir: Path) -> list[str] | None:
        """The end-of-run report, or None for the default one."""
        return None

    def model_card(self, card: str) -> str:
        """The model card, with whatever the protocol must state in it."""
        return card


# ---------------------------------------------------------------------- accelerate


def make_accelerator(
    *,
    mixed_precision: str | None = None,
    gradient_accumulation_steps: int = 1,
    project_dir: str | Path | None = None,
    report_to: Sequence[str] | str = (),
    seed: int = 0,
    compile: bool = False,
):
    """Builds the run's :class:`accelerate.Accelerator` — every accelerate setting of the recipes lives here.

    Args:
        mixed_precision: ``"no"``, ``"fp16"``, ``"bf16"``, or ``None`` for the launcher's choice
            (``accelerate launch --mixed_precision`` / the accelerate config file), else ``"no"``.
        gradient_accumulation_steps: batches per optimiser step.
        project_dir: run directory; checkpoints go to ``<project_dir>/checkpoints/checkpoint_<i>`` and
            tracker logs to ``<project_dir>/logs``. ``None`` for evaluation-only use. Old checkpoints are
            pruned by the recipe (quietly), not by accelerate.
        report_to: tracker names accelerate knows (``tensorboard``, ``trackio``, ``wandb``, ...), or empty.
        seed: seed of the shuffling sampler (identical on every process, advanced with ``set_epoch``).
        compile: ``torch.compile`` the model in ``prepare`` (inductor, static shapes).

    Returns:
        The accelerator.

    Raises:
        RecipeError: when several processes were launched but accelerate did not start distributed mode
            (on a CPU-only machine this needs ``ACCELERATE_USE_CPU=1``).
    """
    project = None
    if project_dir is not None:
        project = ProjectConfiguration(
            project_dir=str(project_dir),
            logging_dir=str(Path(project_dir) / "logs"),
            automatic_checkpoint_naming=True,
            total_limit=None,
        )
    trackers = [report_to] if isinstance(report_to, str) else list(report_to)
    if trackers and project is not None:
        check_trackers(trackers)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        project_config=project,
        log_with=trackers if trackers and project is not None else None,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
        # Stage 1 leaves the prompt, coordinator and fusion modules unused: DDP must not wait for their grads.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        dynamo_plugin=TorchDynamoPlugin(backend="inductor", dynamic=False) if compile else None,
    )
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and accelerator.num_processes == 1:
        raise RecipeError(
            f"{world} processes were launched but accelerate runs each one alone; on a machine without GPUs "
            "launch with ACCELERATE_USE_CPU=1 (see recipes/accelerate_configs/cpu_2proc.yaml)"
        )
    return accelerator


def check_trackers(names: Sequence[str]) -> None:
    """One-line RecipeError when a requested tracker's package is not installed (accelerate would drop it)."""
    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    for name in names:
        if name != "all" and name not in available:
            raise RecipeError(
                f"report_to={name!r}: the {name} package is not installed (installed trackers: "
                f"{', '.join(sorted(available)) or 'none'}); install it or pass --report_to none"
            )


# ---------------------------------------------------------------------- data


def synthetic_label(cfg: DataConfig) -> str:
    """``" (synthetic)"`` for runs on the synthetic corpus, else ``""`` — appended wherever a result is shown."""
    return " (synthetic)" if cfg.is_synthetic else ""


#: Corpora this process keeps loaded (``keep_loaded_corpora``): ``(maxsize, key function, {key: DatasetDict})``,
#: the most recently used last; ``None`` for a single run, which loads its corpus once anyway.
_LOADED_CORPORA: tuple[int, Any, OrderedDict[str, Any]] | None = None


def keep_loaded_corpora(maxsize: int, key) -> None:
    """Makes :func:`load_corpus` keep the last ``maxsize`` corpora it loaded in this process, under ``key(cfg, fold)``
    (runs with equal keys load identical data), so that a process running run after run (a sweep worker) loads
    shared data once. A run never modifies its loaded ``DatasetDict`` (each epoch's masks are a new dataset), so
    sharing it leaves every run's numbers unchanged. Idempotent: a cache already kept is left as it is."""
    global _LOADED_CORPORA
    if _LOADED_CORPORA is None:
        _LOADED_CORPORA = (maxsize, key, OrderedDict())


def load_corpus(cfg: DataConfig, fold: int | None = None):
    """Loads the run's corpus as a ``DatasetDict`` with ``train``/``validation``/``test`` splits (or returns the one
    kept by :func:`keep_loaded_corpora`).

    Args:
        cfg: the run configuration (corpus, data_dir, protocol, rate, seed, extra kwargs).
        fold: IEMOCAP fold (1..5) or None.

    Returns:
        The ``DatasetDict`` from :func:`hub_datasets.load_dataset`.

    Raises:
        RecipeError: with the data library's one-line message when the corpus cannot be loaded.
    """
    if _LOADED_CORPORA is None:
        return _load_corpus(cfg, fold)
    maxsize, key_of, kept = _LOADED_CORPORA
    key = key_of(cfg, fold)
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    dsd = kept[key] = _load_corpus(cfg, fold)
    while len(kept) > maxsize:
        kept.popitem(last=False)
    return dsd


def _load_corpus(cfg: DataConfig, fold: int | None):
    kwargs: dict[str, Any] = dict(cfg.dataset_kwargs)
    kwargs["seed"] = cfg.resolved_mask_seed
    if cfg.missing_protocol == "subset":
        kwargs["protocol"] = "subset"
        kwargs["modalities"] = cfg.observed_modalities
    else:
        kwargs["missing_rate"] = cfg.missing_rate
    if fold is not None:
        kwargs["fold"] = fold
    if cfg.data_dir is not None:
        data_dir = Path(cfg.data_dir).expanduser()
        if not data_dir.is_dir():
            raise RecipeError(f"data_dir {str(data_dir)!r} does not exist or is not a directory")
        kwargs["data_dir"] = str(data_dir)
    name = cfg.dataset
    config_name = cfg.dataset_config
    if name == "synthetic":
        config_name = config_name or "iemocap4"
    elif name in DATASET_NAMES:
        config_name = None
    try:
        if config_name is None:
            dsd = hub_datasets.load_dataset(name, **kwargs)
        else:
            dsd = hub_datasets.load_dataset(name, config_name, **kwargs)
    except (ValueError, TypeError, OSError, KeyError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecipeError(f"cannot load corpus {name!r}: {message}") from None
    missing = [s for s in ("train", "test") if s not in dsd]
    if missing:
        raise RecipeError(f"corpus {name!r} has no {missing[0]!r} split (splits: {sorted(dsd)})")
    if getattr(cfg, "selection", None) == "validation" and "validation" not in dsd:
        raise RecipeError(
            f"corpus {name!r} has no 'validation' split, so --selection validation is impossible; "
            "pass --selection test (optimistic) or use a corpus with a validation split"
        )
    return dsd


def corpus_task(model_config) -> str:
    """``"regression"`` or ``"classification"`` from a ComPConfig."""
    return REGRESSION if model_config.is_regression else CLASSIFICATION


def model_inputs(batch: Mapping[str, Any], with_labels: bool = True) -> dict[str, Any]:
    """The model's keyword arguments from a collated batch (``MODEL_INPUT_NAMES`` and optionally ``labels``)."""
    keys = MODEL_INPUT_NAMES + (UTTERANCE_INDEX,) + ((LABELS,) if with_labels else ())
    return {k: batch[k] for k in keys if k in batch}


class EpochMaskedDataset(torch.utils.data.Dataset):
    """A training split whose missing-modality masks are redrawn per epoch (``hub_datasets.redraw_training_masks``).

    The masks of epoch ``e`` are a pure function of (seed, utterance id, e), so a resumed run sees exactly the
    masks the uninterrupted run saw. Rows are formatted once per epoch with ``with_format("numpy")``.
    """

    def __init__(self, dataset):
        self.base = dataset
        self.epoch: int | None = None
        self.current = dataset

    def set_epoch(self, epoch: int) -> None:
        """Switches to the masks of ``epoch`` (a no-op when already there)."""
        if epoch == self.epoch:
            return
        self.current = hub_datasets.redraw_training_masks(self.base, epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        return self.current[index]


class DeviceCorpus:
    """A split collated once and kept on the accelerator's device (``--keep_on_device``).

    A step only indexes device tensors: no collation and no host-to-device copy. Features are stored unmasked
    and a batch's features are the observed ones (zeros where masked), as :class:`hub_datasets.ComPDataCollator` computes them;
    the training split's masks change every epoch (:meth:`set_masks`: one small copy per epoch). Every
    conversation is padded to the split's longest one (or to ``max_utterances`` with ``pad_to_max``), so
    all batches but the last have one shape. One process only.

    Args:
        dataset: a split from :func:`hub_datasets.load_dataset`.
        max_utterances: the model's ``max_utterances``.
        device: where the tensors live.
        pad_to_max: pad to ``max_utterances`` instead of the split's longest conversation.
    """

    def __init__(self, dataset, *, max_utterances: int, device, pad_to_max: bool = False):
        collate = hub_datasets.ComPDataCollator(
            max_utterances=max_utterances, pad_to="max_utterances" if pad_to_max else "longest"
        )
        rows = []
        for row in dataset.with_format("numpy"):
            row = dict(row)
            row.pop(MODALITY_MASK, None)  # features unmasked; the masks are applied per batch
            rows.append(row)
        full = collate(rows)
        full.pop(UTTERANCE_INDEX, None)  # computed per batch (see `batch`)
        self.device = device
        # padded to max_utterances (static shapes, for torch.compile): the model computes every position
        self.every_position = pad_to_max
        self.length = int(full[ATTENTION_MASK].shape[1])
        # the attention mask also kept on the host: a batch's `utterance_index` is computed there
        self.attention_mask = full[ATTENTION_MASK]
        self.tensors = {k: v.to(device) for k, v in full.items()}
        self.set_masks(dataset)

    def set_masks(self, dataset) -> None:
        """Takes the ``modality_mask`` column of ``dataset`` (same rows, e.g. this epoch's training masks)."""
        mask = np.zeros((len(dataset), self.length, 3), dtype=np.float32)
        if MODALITY_MASK in dataset.column_names:
            for i, rows in enumerate(dataset.with_format("numpy")[MODALITY_MASK]):
                rows = np.asarray(rows, dtype=np.float32).reshape(-1, 3)
                mask[i, : rows.shape[0]] = rows
        else:
            mask[:] = self.tensors[ATTENTION_MASK].cpu().numpy()[..., None]
        self.mask = torch.from_numpy(mask).to(self.device)

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch of the conversations ``index`` (a CPU tensor of row numbers).

        Masked features are selected out (``torch.where``, so whatever they hold cannot matter), and
        ``utterance_index`` (the flat positions of the real utterances) is computed on the host and copied
        without blocking, so that the model needs no host synchronisation to find the real rows.
        """
        utterance_index = utterance_index_from_attention_mask(self.attention_mask[index], self.every_position)
        index = index.to(self.device, non_blocking=True)
        mask = self.mask[index]
        out = {MODALITY_MASK: mask, UTTERANCE_INDEX: utterance_index.to(self.device, non_blocking=True)}
        for i, modality in enumerate(MODALITIES):
            observed = mask[..., i : i + 1] != 0
            out[modality] = torch.where(observed, self.tensors[modality][index], 0.0)
        for key in (ATTENTION_MASK, LABELS, CONVERSATION_INDEX):
            if key in self.tensors:
                out[key] = self.tensors[key][index]
        return out

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Batches in order, or in a random order drawn from ``generator`` (CPU) when given."""
        n = len(self)
        order = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            yield self.batch(order[start : start + batch_size])


# ---------------------------------------------------------------------- evaluation


@torch.inference_mode()
def evaluate_model(
    model,
    dataloader,
    accelerator,
    *,
    task: str,
    num_labels: int | None,
    label_names: Mapping[int, str] | None,
    num_conversations: int,
    desc: str = "eval",
    show_progress: bool = True,
    with_loss: bool = True,
    return_predictions: bool = False,
    metric_fn=None,
) -> dict[str, Any]:
    """Evaluates ``model`` on a prepared dataloader, on every process, and returns the metrics.

    Logits of every process are padded to a common length, gathered with ``gather_for_metrics`` (which drops
    the samples duplicated to even out the last batch), and padded positions are removed with the
    attention mask before any metric is computed.

    Args:
        model: the (possibly wrapped) model.
        dataloader: the prepared evaluation dataloader (not shuffled), or any iterable of batches on the
            model's device (a :class:`DeviceCorpus`, one process).
        accelerator: the run's accelerator.
        task: ``"classification"`` or ``"regression"``.
        num_labels: number of classes (classification).
        label_names: ``{id: name}`` for per-class F1 keys.
        num_conversations: size of the split, to check coverage.
        desc: progress-bar label.
        show_progress: show a progress bar on the main process.
        with_loss: also compute the stage's loss (mean over batches).
        return_predictions: add ``"predictions"`` (per-utterance arrays) to the result.
        metric_fn: ``f(predictions, references, modality_predictions) -> metrics`` (a protocol's metric
            definitions, :meth:`TrainingProtocol.metric_definitions`); default the library's.

    Returns:
        The flat metric dict of :func:`recipes.metrics.compute_metrics` (computed through :func:`recipes.metrics.evaluate_metrics`) plus ``loss``, ``num_conversations``,
        ``duplicate_conversations`` and ``missing_conversations``.

    Raises:
        RuntimeError: if some conversation was seen twice or never (a broken distributed sampler).
    """
    was_training = model.training
    model.eval()
    config = accelerator.unwrap_model(model).config
    # the library's post-processing (probabilities, per-modality views, nothing non-finite), as the pipeline's
    processor = ComPProcessor.from_model_config(config)
    preds_all, modality_all, labels_all, index_all = [], [], [], []
    losses: list[float] = []
    for batch in tqdm(
        dataloader, desc=desc, leave=False, disable=not (show_progress and accelerator.is_local_main_process)
    ):
        with accelerator.autocast():
            out = model(**model_inputs(batch, with_labels=with_loss))
        if with_loss and out.loss is not None:
            losses.append(float(accelerator.gather(out.loss.detach().float()[None]).mean()))
        mask = batch[ATTENTION_MASK]
        labels = batch[LABELS]
        if task == CLASSIFICATION:
            labels = torch.where(mask.bool(), labels, torch.full_like(labels, -100))
        payload = {
            "logits": out.logits.float(),
            "modality_logits": out.modality_logits.float(),
            "labels": labels,
            "mask": mask.long(),
            "modality_mask": batch[MODALITY_MASK].float(),
        }
        payload = accelerator.pad_across_processes(payload, dim=1, pad_index=0)
        gathered = accelerator.gather_for_metrics(
            (
                payload["logits"],
                payload["modality_logits"],
                payload["labels"],
                payload["mask"],
                payload["modality_mask"],
                batch[CONVERSATION_INDEX],
            )
        )
        g_logits, g_modality, g_labels, g_mask, g_modality_mask, g_index = (t.cpu() for t in gathered)
        try:
            predictions = processor.post_process(
                {"logits": g_logits, "modality_logits": g_modality},
                g_mask,
                g_modality_mask,
                config=config,
                conversation_names=[f"index {int(i)}" for i in g_index],
            )
        except ValueError as err:
            raise ValueError(f"{desc}: {err}") from None
        for prediction, row_labels in zip(predictions, g_labels.numpy()):
            row_labels = row_labels[: prediction.num_utterances]
            keep = row_labels != -100 if task == CLASSIFICATION else slice(None)
            if task == CLASSIFICATION:
                preds_all.append(prediction.scores.argmax(-1)[keep])
                modality_all.append(prediction.modality_scores.argmax(-1)[keep])
            else:
                preds_all.append(prediction.scores[keep])
                modality_all.append(prediction.modality_scores[keep])
            labels_all.append(row_labels[keep])
        index_all.append(g_index.numpy())
    if was_training:
        model.train()
    indices = np.concatenate(index_all) if index_all else np.zeros(0, dtype=np.int64)
    unique, counts = np.unique(indices, return_counts=True)
    duplicates = int((counts > 1).sum())
    missing = int(num_conversations - np.isin(np.arange(num_conversations), unique).sum())
    if duplicates or missing:
        raise RuntimeError(
            f"{desc}: evaluation saw {duplicates} conversation(s) more than once and missed {missing} "
            f"(of {num_conversations})"
        )
    preds = np.concatenate(preds_all)
    modality_preds = np.concatenate(modality_all)
    refs = np.concatenate(labels_all)
    if metric_fn is None:
        metric_fn = TrainingProtocol().metric_definitions(task, num_labels, label_names)
    metrics = metric_fn(preds, refs, modality_preds)
    metrics["loss"] = float(np.mean(losses)) if losses else None
    metrics["num_conversations"] = int(unique.shape[0])
    metrics["duplicate_conversations"] = duplicates
    metrics["missing_conversations"] = missing
    if return_predictions:
        metrics["predictions"] = {"predictions": preds, "references": refs, "modality_predictions": modality_preds}
    return metrics


# ---------------------------------------------------------------------- files


def check_output_dir(path: str | Path) -> Path:
    """Creates ``path`` if needed and proves it is writable (one-line RecipeError otherwise)."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise RecipeError(f"output_dir {str(path)!r} is not writable: {reason}") from None
    return path


def json_ready(value: Any) -> Any:
    """Converts numpy/torch scalars and arrays to plain Python; NaN/inf become None (valid JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, torch.Tensor):
        return json_ready(value.detach().cpu().tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_text_atomic(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (``hub_datasets.atomic.atomic_write_text``), creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Atomic JSON write (keys in insertion order, 2-space indent, NaN → null)."""
    write_text_atomic(path, json.dumps(json_ready(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Reads a JSON file with a one-line RecipeError when it is malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RecipeError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from None


def replace_dir_atomic(staging: str | Path, target: str | Path) -> None:
    """Moves a fully written ``staging`` directory to ``target``, replacing an existing one last.

    The old ``target`` is renamed aside first and deleted only after the new one is in place, so an
    interruption leaves either the old or the new directory (plus a ``.old`` leftover), never a half one.
    """
    staging, target = Path(staging), Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
