"""The authors' released training and evaluation protocol (``--protocol released``), for comparison with the paper.

The paper's numbers come from a protocol that differs from comp-emotion's default one in ways that change the
figures; this module reproduces it end to end so that a run of ours can be compared with the paper's tables (and
with the authors' trainer) like for like:

* **Missing-modality masks** are drawn for every batch, in training *and* in testing, from NumPy's global random
  stream (seeded once with the run's seed), by the CPM-Net/GCNet procedure: a ``[B·L, 3]`` matrix over every
  *padded* position of the batch (``L`` = the released padded length: 65 for MOSI, 150 otherwise), row ``r`` being
  conversation ``r // L``, position ``r % L``. Rates above 2/3 keep exactly one modality per row (so 0.7 realises
  0.667); lower rates use the rejection loop that repeats until the observed fraction is within 0.005 of
  ``1 - rate``. Two matrices are drawn per batch (one per IEMOCAP actor; the speaking actor's row is used).
* **Test batches** are re-formed every epoch by a shuffling sampler (the released model's prompt softmax spans
  every conversation of a batch, so a prediction depends on its batch-mates) and the test masks are redrawn.
* **All training conversations** are used (no validation hold-out; MOSI/MOSEI's official validation videos are
  ignored, IEMOCAP trains on all four other sessions).
* **Selection**: the best *test* epoch over all epochs, stage 1 included (weighted F1 for CMU, accuracy for
  IEMOCAP), first maximum on ties.
* **Metrics as the release computes them**: CMU Acc-2, weighted F1, MAE *and* Pearson r on non-zero labels only;
  IEMOCAP accuracy (WA), macro recall (UA), weighted F1.
* **Model**: ``reference_compat=True`` (the released forward: batch-wide prototypes, padded rows in the prototype
  layer, no gradient modulation) padded to the released length.

Every number this produces is OPTIMISTIC (the test set picks the epoch, among noisy re-drawn evaluations), and
every output says so: the console summary, ``metrics.json`` (``"protocol": "released"``, ``"optimistic": true``),
``comp_run.json`` and the model card.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeling_comp.configuration_comp import ATTENTION_MASK, LABELS, MODALITIES, MODALITY_MASK
from recipes.config import TRAINING_PROTOCOLS, ConfigError, RecipeError, TrainConfig


__all__ = [
    "TRAINING_PROTOCOLS",
    "RELEASED",
    "OPTIMISTIC_NOTE",
    "released_seq_len",
    "released_rate_matrix",
    "released_batch_masks",
    "released_metrics",
    "resolve_released_options",
    "check_released_config",
    "train_released_run",
]

RELEASED = "released"
OPTIMISTIC_NOTE = (
    "OPTIMISTIC: released protocol - best TEST epoch over all epochs, test masks and batches redrawn every epoch"
)
_SELECTION_RULE = (
    "best **test** {metric} over all epochs (stage 1 included), test masks and batches redrawn every epoch "
    "(the authors' released protocol; OPTIMISTIC: the test set chose the epoch)"
)
_RELEASED_SEQ_LEN = {"mosi": 65}
_DEFAULT_SEQ_LEN = 150
_ROWS_FLOOR = 32  # the rejection loop draws at least this many rows
_TOLERANCE = 0.005


# ---------------------------------------------------------------------- configuration


def released_seq_len(cfg: TrainConfig) -> int:
    """The released padded length ``L`` for the corpus shape (65 for MOSI, 150 otherwise)."""
    return _RELEASED_SEQ_LEN.get(cfg.corpus_shape, _DEFAULT_SEQ_LEN)


def resolve_released_options(values: dict[str, Any], command_line_keys: Iterable[str]) -> dict[str, Any]:
    """Fills in the released protocol's own choices before validation (called by ``parse_train_args``).

    ``selection`` becomes ``"test"`` and ``selection_stage`` 1 unless they were given on the command line (then
    :func:`check_released_config` rejects any other value), so a YAML preset written for the default protocol
    (``selection: validation``) can be run under ``--protocol released`` unchanged.
    """
    given = set(command_line_keys)
    out = dict(values)
    if "selection" not in given:
        out["selection"] = "test"
    if "selection_stage" not in given:
        out["selection_stage"] = 1
    return out


def check_released_config(cfg: TrainConfig) -> None:
    """Rejects, in one line naming the option, what the released protocol cannot honour."""

    def refuse(option: str, why: str) -> ConfigError:
        return ConfigError(f"--protocol released cannot honour {option}: {why}")

    if cfg.selection != "test":
        raise refuse(f"selection={cfg.selection!r}", "the release selects the best TEST epoch (use --selection test)")
    if cfg.selection_stage != 1:
        raise refuse(f"selection_stage={cfg.selection_stage}", "the release selects over all epochs (stage 1 too)")
    if cfg.selection_metric is not None:
        raise refuse(
            f"selection_metric={cfg.selection_metric!r}", "the release selects on F1 (CMU) / accuracy (IEMOCAP)"
        )
    if cfg.missing_protocol != "rate":
        raise refuse(f"missing_protocol={cfg.missing_protocol!r}", "the release only has the missing-rate protocol")
    if cfg.mask_seed is not None:
        raise refuse(
            f"mask_seed={cfg.mask_seed}", "fixed masks do not exist there (redrawn per batch from the seed's stream)"
        )
    if "split" in cfg.dataset_kwargs:
        raise refuse("dataset_kwargs.split", "the release trains on the training split and tests on the test split")
    if cfg.eval_batch_size is not None and cfg.eval_batch_size != cfg.batch_size:
        raise refuse(f"eval_batch_size={cfg.eval_batch_size}", "the release tests with the training batch size")
    if cfg.gradient_accumulation_steps != 1:
        raise refuse(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps}", "the release has none")
    if cfg.mixed_precision not in (None, "no"):
        raise refuse(f"mixed_precision={cfg.mixed_precision!r}", "the release trains in float32")
    if cfg.max_grad_norm is not None:
        raise refuse(f"max_grad_norm={cfg.max_grad_norm}", "the release does not clip gradients")
    if cfg.model.get("reference_compat", True) is not True:
        raise refuse("model.reference_compat=false", "the released protocol runs the released forward")
    if cfg.resume_from_checkpoint not in (None, "latest"):
        raise refuse(
            f"resume_from_checkpoint={cfg.resume_from_checkpoint!r}",
            "its masks come from one global random stream, so a run restarts from scratch (use 'latest')",
        )
    if cfg.push_to_hub is not None:
        raise refuse("push_to_hub", "its numbers are optimistic; train with the default protocol to publish a model")


# ---------------------------------------------------------------------- masks


def released_rate_matrix(num_rows: int, missing_rate: float, rng=np.random) -> np.ndarray:
    """One ``[num_rows, 3]`` 0/1 observed-modality matrix, drawn like the released code (CPM-Net/GCNet procedure).

    Args:
        num_rows: rows to draw (``B·L`` for a batch: every padded position).
        missing_rate: requested fraction of missing (row, modality) cells.
        rng: a ``numpy.random.RandomState``-like object; default NumPy's global stream, as the release.

    Returns:
        An ``int`` matrix; every row keeps at least one modality.
    """
    views = 3
    keep = 1.0 - float(missing_rate)
    if keep <= 1.0 / views:  # exactly one modality per row (0.7 realises 2/3)
        return np.eye(views, dtype=np.int64)[rng.randint(0, views, size=(num_rows, 1))[:, 0]]
    if keep == 1.0:
        return rng.randint(1, 2, size=(num_rows, views)).astype(np.int64)
    rows = max(_ROWS_FLOOR, num_rows)
    while True:
        base = np.eye(views, dtype=np.int64)[rng.randint(0, views, size=(rows, 1))[:, 0]]
        extra = views * rows * keep - rows  # ones still to add after the guaranteed one per row
        percent = int(extra / (views * rows) * 100)
        trial = (rng.randint(0, 100, size=(rows, views)) < percent).astype(np.int64)
        overlap = int(((trial + base) > 1).sum())
        corrected = extra / (1 - overlap / extra)  # compensate for the cells that were already ones
        percent = int(corrected / (views * rows) * 100)
        trial = (rng.randint(0, 100, size=(rows, views)) < percent).astype(np.int64)
        matrix = ((trial + base) > 0).astype(np.int64)
        if abs(keep - matrix.mean()) < _TOLERANCE:
            return matrix[:num_rows]


def released_batch_masks(
    batch_size: int, length: int, guest: np.ndarray, missing_rate: float, rng=np.random
) -> np.ndarray:
    """Masks ``[B, L, 3]`` of one batch: a first matrix for the first actor, a second one for the other actor.

    Args:
        batch_size: conversations in the batch.
        length: padded length ``L``.
        guest: ``[B, L]`` bool, True where the speaker is the second actor (IEMOCAP ``M``; never for CMU).
        missing_rate: requested missing rate.
        rng: random stream (NumPy's global one by default).
    """
    host = released_rate_matrix(batch_size * length, missing_rate, rng).reshape(batch_size, length, 3)
    other = released_rate_matrix(batch_size * length, missing_rate, rng).reshape(batch_size, length, 3)
    return np.where(guest[..., None], other, host)


# ---------------------------------------------------------------------- metrics


def released_metrics(
    task: str, predictions: np.ndarray, references: np.ndarray, modality_predictions: np.ndarray
) -> dict[str, float | None]:
    """Test metrics exactly as the release computes them (inputs: real utterances only, padding removed).

    Regression (CMU): rows with a non-zero reference only, for every metric — ``acc2`` and weighted ``f1`` of
    ``y > 0`` vs ``ŷ > 0``, ``mae``, Pearson ``corr`` (no clipping), ``acc2_<modality>``. Classification
    (IEMOCAP): ``accuracy`` (WA), ``unweighted_accuracy`` (macro recall), ``weighted_f1``,
    ``accuracy_<modality>``. Fractions in [0, 1].
    """
    from sklearn.metrics import recall_score

    from recipes.metrics import classification_metrics, regression_metrics

    if task == "regression":
        # the default protocol's metrics, on the non-zero rows only (the release's MAE and r leave zeros out too)
        keep = references != 0
        if not keep.any():
            return {"acc2": None, "f1": None, "mae": None, "corr": None}
        full = regression_metrics(predictions[keep], references[keep], modality_predictions=modality_predictions[keep])
        return {k: full[k] for k in ("acc2", "f1", "mae", "corr", *(f"acc2_{m}" for m in MODALITIES))}
    y, p = references.astype(np.int64), predictions.astype(np.int64)
    full = classification_metrics(p, y, modality_predictions=modality_predictions)
    out = {k: full[k] for k in ("accuracy", "weighted_f1", *(f"accuracy_{m}" for m in MODALITIES))}
    # the release's UA: macro recall over the classes in the references or the predictions (sklearn's default),
    # where the default protocol averages over the classes present in the references only
    out["unweighted_accuracy"] = float(recall_score(y, p, average="macro", zero_division=0))
    return out


# ---------------------------------------------------------------------- data


class _SpeakerCollator:
    """The library's collator padded to ``L``, plus ``guest`` ``[B, L]`` (the second IEMOCAP actor speaks)."""

    def __init__(self, base, length: int):
        self.base = base
        self.length = length

    def __call__(self, rows):
        batch = self.base(rows)
        guest = np.zeros((len(rows), self.length), dtype=bool)
        for b, row in enumerate(rows):
            speakers = list(row.get("speakers") or [])
            guest[b, : len(speakers)] = [s == "M" for s in speakers]
        batch["guest"] = guest
        return batch


def _apply_masks(batch: dict, missing_rate: float) -> dict:
    """Draws the batch's masks from NumPy's global stream and applies them (features zeroed where missing)."""
    real = batch[ATTENTION_MASK].numpy().astype(bool)
    bsz, length = real.shape
    masks = released_batch_masks(bsz, length, batch.pop("guest"), missing_rate) * real[..., None]
    mask_t = torch.from_numpy(masks.astype(np.float32))
    batch[MODALITY_MASK] = mask_t
    for i, m in enumerate(MODALITIES):
        batch[m] = batch[m] * mask_t[..., i : i + 1]
    return batch


def _load_released_splits(cfg: TrainConfig, fold: int | None):
    """``(train, test, model kwargs)``: every training conversation (validation hold-out merged back / unused), the
    test split, and the model-configuration arguments the corpus implies."""
    from datasets import concatenate_datasets

    import hub_datasets
    from recipes.common import load_corpus

    plain = dataclasses.replace(cfg, missing_rate=0.0, selection="test")  # masks are drawn per batch here
    dsd = load_corpus(plain, fold)
    train = dsd["train"]
    data_kwargs = hub_datasets.model_config_kwargs(train)  # before merging: a concatenation has no provenance
    if cfg.is_iemocap and "validation" in dsd and len(dsd["validation"]):
        # IEMOCAP folds: the library held some training-session dialogues out as validation; the release trains
        # on all of them. (MOSI/MOSEI's validation split is the official one, which the release ignores.)
        train = concatenate_datasets([train, dsd["validation"]])
    return train, dsd["test"], data_kwargs


# ---------------------------------------------------------------------- loop


def _run_epoch(model, loader, missing_rate, device, optimizer=None, task="regression"):
    """One pass; with ``optimizer`` a training pass, else an evaluation returning flat predictions."""
    from recipes.common import model_inputs

    training = optimizer is not None
    model.train(training)
    loss_sum, batches = 0.0, 0
    preds, mods, refs = [], [], []
    for batch in loader:
        batch = _apply_masks(batch, missing_rate)
        inputs = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in model_inputs(batch).items()}
        with torch.set_grad_enabled(training):
            out = model(**inputs)
        if training:
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        if out.loss is not None:
            loss_sum += float(out.loss.detach())
            batches += 1
        if not training:
            real = batch[ATTENTION_MASK].bool()
            preds.append(out.logits.detach().cpu()[real].numpy())
            mods.append(out.modality_logits.detach().cpu()[real].numpy())
            refs.append(batch[LABELS][real].numpy())
    mean_loss = loss_sum / max(batches, 1)
    if training:
        return mean_loss, None
    logits, modality, references = np.concatenate(preds), np.concatenate(mods), np.concatenate(refs)
    if task == "classification":
        logits, modality = logits.argmax(-1), modality.argmax(-1)
    metrics = released_metrics(task, logits, references, modality)
    metrics["loss"] = mean_loss
    return mean_loss, metrics


def _summary_lines(cfg: TrainConfig, summary: Mapping[str, Any], run_dir: Path | None) -> list[str]:
    task = summary["task"]
    test = summary["test"] or {}
    if task == "classification":
        main = f"WA {100 * test['accuracy']:.2f}  UA {100 * test['unweighted_accuracy']:.2f}"
    else:
        corr = "n/a" if test.get("corr") is None else f"{test['corr']:.3f}"
        main = f"Acc2 {100 * test['acc2']:.2f}  F1 {100 * test['f1']:.2f}  MAE {test['mae']:.3f}  r {corr}"
    fold = f", fold {summary['fold']}" if summary.get("fold") is not None else ""
    label = " (synthetic)" if summary.get("synthetic") else ""
    lines = [
        "",
        f"ComP on {cfg.dataset}{label} - RELEASED protocol, missing rate {cfg.missing_rate:g}, seed {cfg.seed}{fold}",
        f"selection: {summary['selection_rule']}",
        f"test (epoch {summary['epoch']}, non-zero labels for CMU): {main}",
        f"mean test over the last {summary['last_epochs']} epochs: {summary['last_epochs_mean_text']}",
        f"NOTE: {OPTIMISTIC_NOTE}",
    ]
    if run_dir is not None:
        lines.append(f"selected model: {run_dir / 'model'}")
    return lines


def _optimistic_card(card: str, metric: str) -> str:
    """The model card with the released protocol stated right under its title."""
    block = (
        "\n> **Protocol: released (OPTIMISTIC).** Trained and evaluated with the authors' released protocol "
        f"(`--protocol released`): the epoch with the best TEST {metric} over all epochs was kept, test masks and "
        "test batches were redrawn every epoch, no validation hold-out, CMU metrics on non-zero labels only. "
        "Use these numbers only to compare with the paper's tables; they overstate held-out performance.\n"
    )
    head, sep, rest = card.partition("\n# ")
    if not sep:
        return block + card
    title, nl, body = rest.partition("\n")
    return f"{head}{sep}{title}{nl}{block}{body}"


def train_released_run(
    cfg: TrainConfig,
    run_dir: str | Path | None,
    fold: int | None = None,
    *,
    save_model: bool = True,
    last_epochs: int = 10,
    verbose: bool = True,
) -> dict[str, Any]:
    """Trains one model (one fold) with the released protocol and returns its final summary.

    Args:
        cfg: validated configuration with ``protocol="released"``.
        run_dir: run directory (``config.yaml``, ``metrics.json``, ``model/``), or None to write nothing.
        fold: IEMOCAP fold or None.
        save_model: save the selected epoch's weights and model card under ``run_dir/model``.
        last_epochs: size of the window of the "mean over the last epochs" figure (less selection bias).
        verbose: print the summary.

    Returns:
        ``metrics.json``'s ``final`` entry (``protocol``, ``optimistic``, selected ``epoch``, ``test`` metrics,
        ``last_epochs_mean``, ``task``, ``fold``); every epoch's metrics are in ``history`` of ``metrics.json``.
    """
    import yaml

    import hub_datasets
    from modeling_comp import ComPConfig, ComPForEmotionRecognition
    from recipes.common import check_output_dir, corpus_task, read_json, write_json_atomic, write_text_atomic

    check_released_config(cfg)
    if int(__import__("os").environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise RecipeError("--protocol released runs in one process (launch without --num_processes / --multi_gpu)")
    if run_dir is not None:
        run_dir = check_output_dir(run_dir)
        done = run_dir / "metrics.json"
        if done.is_file():
            previous = read_json(done)
            if previous.get("finished") and cfg.resume_from_checkpoint is not None:
                return previous["final"]
            if previous.get("finished") and not cfg.overwrite_output_dir:
                raise RecipeError(
                    f"output_dir {str(run_dir)!r} already holds a run (metrics.json); pass --overwrite_output_dir "
                    "true to replace it"
                )
    seed = cfg.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    train_ds, test_ds, data_kwargs = _load_released_splits(cfg, fold)
    length = int(cfg.model.get("max_utterances", released_seq_len(cfg)))
    try:
        model_config = ComPConfig(**{**data_kwargs, "max_utterances": length, **cfg.model, "reference_compat": True})
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model configuration rejected: {str(err).splitlines()[0]}") from None
    longest = max(int(max(ds["num_utterances"])) for ds in (train_ds, test_ds))
    if longest > length:
        raise ConfigError(
            f"model.max_utterances={length} (the released padded length) is shorter than the longest conversation "
            f"({longest} utterances) of {cfg.dataset!r}"
        )
    task = corpus_task(model_config)
    metric = "f1" if task == "regression" else "accuracy"
    rule = _SELECTION_RULE.format(metric=metric)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    torch.manual_seed(seed)
    model = ComPForEmotionRecognition(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    collate = _SpeakerCollator(hub_datasets.ComPDataCollator(max_utterances=length, pad_to="max_utterances"), length)

    def loader(ds):  # a shuffling sampler on torch's global stream, for the test split too (as the release)
        return torch.utils.data.DataLoader(
            ds, batch_size=cfg.batch_size, sampler=torch.utils.data.RandomSampler(ds), collate_fn=collate
        )

    train_dl, test_dl = loader(train_ds), loader(test_ds)
    if run_dir is not None:
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    history: list[dict[str, Any]] = []
    best_epoch, best_value, best_weights = None, None, None
    for epoch in range(cfg.epochs):
        stage = 1 if epoch < cfg.stage1_epochs else 2
        model.set_training_stage(stage)
        started = time.perf_counter()
        train_loss, _ = _run_epoch(model, train_dl, cfg.missing_rate, device, optimizer, task)
        seconds = time.perf_counter() - started
        _, test_metrics = _run_epoch(model, test_dl, cfg.missing_rate, device, None, task)
        record = {"epoch": epoch, "stage": stage, "train": {"loss": train_loss}, "train_seconds": seconds}
        record["test"] = test_metrics
        value = test_metrics.get(metric)
        if value is not None and (best_value is None or value > best_value):
            best_epoch, best_value = epoch, value
            if save_model and run_dir is not None:
                best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        record["best_epoch"] = best_epoch
        history.append(record)
        if run_dir is not None:
            write_json_atomic(
                run_dir / "metrics.json",
                {
                    "finished": False,
                    "protocol": RELEASED,
                    "optimistic": True,
                    "selection_rule": rule,
                    "epochs": history,
                },
            )
    if best_epoch is None:
        raise RecipeError(f"no epoch could be selected (test {metric} was never defined)")
    window = history[-min(last_epochs, len(history)) :]
    keys = [k for k, v in history[-1]["test"].items() if isinstance(v, float)]
    last_mean = {
        k: float(np.mean([r["test"][k] for r in window if r["test"].get(k) is not None]))
        for k in keys
        if any(r["test"].get(k) is not None for r in window)
    }
    summary: dict[str, Any] = {
        "task": task,
        "fold": fold,
        "protocol": RELEASED,
        "optimistic": True,
        "optimistic_note": OPTIMISTIC_NOTE,
        "epoch": best_epoch,
        "selection": "test",
        "selection_metric": metric,
        "selection_rule": rule,
        "selection_stage": 1,
        "metric_definitions": "released (CMU: every metric on non-zero labels; IEMOCAP: WA, macro recall)",
        "validation": None,
        "test": history[best_epoch]["test"],
        "last_epochs": len(window),
        "last_epochs_mean": last_mean,
        "stage1": None,
        "provenance_test": None,
        "synthetic": None,
        "padded_length": length,
    }
    prov = dict(hub_datasets.dataset_provenance(test_ds))
    # The split was loaded without masks; the released masks are drawn per batch, so no fixed realised rate exists.
    prov.update(realised_missing_rate=None, missing_rate=cfg.missing_rate, masks="released: redrawn per batch")
    summary["synthetic"] = bool(prov.get("synthetic")) or cfg.is_synthetic
    main_key = "accuracy" if task == "classification" else "acc2"
    summary["last_epochs_mean_text"] = (
        f"{main_key} {100 * last_mean[main_key]:.2f}" if main_key in last_mean else "n/a"
    )
    if run_dir is not None:
        if save_model and best_weights is not None:
            from recipes.common import replace_dir_atomic
            from recipes.model_card import render_model_card

            model.load_state_dict(best_weights)
            model.set_training_stage(2)
            staging = run_dir / ".model.partial"
            if staging.exists():
                import shutil

                shutil.rmtree(staging)
            model.to("cpu").save_pretrained(str(staging))
            run_record = {
                "config": cfg.to_dict(),
                "provenance": {"test": prov},
                "final": copy.deepcopy(summary),
                "task": task,
                "repo_id": None,
                "protocol": RELEASED,
                "optimistic": True,
            }
            write_json_atomic(staging / "comp_run.json", run_record)
            write_text_atomic(staging / "README.md", _optimistic_card(render_model_card(run_record), metric))
            replace_dir_atomic(staging, run_dir / "model")
        write_json_atomic(
            run_dir / "metrics.json",
            {
                "finished": True,
                "protocol": RELEASED,
                "optimistic": True,
                "selection_rule": rule,
                "epochs": history,
                "final": summary,
            },
        )
    if verbose:
        for line in _summary_lines(cfg, summary, run_dir if save_model else None):
            print(line, flush=True)
    return summary
