"""Train ComP with accelerate: two-stage schedule, per-epoch evaluation, checkpoints, model selection, Hub push.

Launch::

    accelerate launch recipes/train.py                                    # synthetic corpus, minutes on a CPU
    accelerate launch recipes/train.py --config recipes/configs/mosi.yaml --data_dir ~/data/GCNet
    accelerate launch recipes/train.py --config recipes/configs/iemocap4.yaml --data_dir ~/data/GCNet --fold all
    accelerate launch recipes/train.py --output_dir runs/x --resume_from_checkpoint latest
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 recipes/train.py     # 2 CPU processes

Every option is a key of :class:`recipes.config.TrainConfig` (``--help`` lists them); model hyper-parameters are
``--model.<ComPConfig argument>``. A run directory holds ``config.yaml`` (resolved configuration),
``provenance.json`` (data provenance per split), ``metrics.json`` (every epoch and the final selection),
``checkpoints/`` (accelerate ``save_state``), ``logs/`` (TensorBoard) and ``model/`` (the selected model via
``save_pretrained``, loadable with ``AutoModel``, also with ``trust_remote_code=True`` and no package installed).
"""

from __future__ import annotations

import sys
from pathlib import Path


if __name__ == "__main__" and not __package__:  # `python recipes/train.py` / `accelerate launch recipes/train.py`
    _ROOT = Path(__file__).resolve().parents[1]
    # The script's folder must not shadow libraries (recipes/evaluate.py vs the `evaluate` package).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "recipes"]
    sys.path.insert(0, str(_ROOT))

import math
import re
import shutil
import time
from typing import Any

import numpy as np
import torch
import yaml

from modeling_comp.configuration_comp import MODALITIES
from recipes.common import (
    EpochMaskedDataset,
    check_output_dir,
    corpus_task,
    evaluate_model,
    load_corpus,
    model_inputs,
    read_json,
    replace_dir_atomic,
    synthetic_label,
    write_json_atomic,
    write_text_atomic,
)
from recipes.config import ConfigError, RecipeError, TrainConfig, parse_train_args
from recipes.metrics import default_selection_metric, higher_is_better
from recipes.model_card import render_model_card, selection_description
from recipes.selection import selection_improves, selection_loss  # released-protocol block (tie-breaking)


__all__ = ["main", "train", "train_run", "train_one_epoch", "default_output_dir", "find_checkpoint", "RUN_FILES"]

#: Files a run writes at the top of its directory (besides checkpoints/, logs/ and model/).
RUN_FILES = ("config.yaml", "provenance.json", "metrics.json")
_STATE_FILE = "training_state.json"
_BEST_FILE = "best_model.safetensors"
# Keys that may change between an interrupted run and its resumption.
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
}


# ---------------------------------------------------------------------- run directory


def default_output_dir(cfg: TrainConfig, stamp: str) -> Path:
    """``runs/<corpus>-<protocol>-seed<seed>-<stamp>`` (``runs/`` is git-ignored)."""
    corpus = cfg.dataset.replace("/", "--")
    if cfg.is_synthetic:
        corpus = f"synthetic-{cfg.dataset_config or 'iemocap4'}"
    protocol = f"mr{cfg.missing_rate:g}" if cfg.missing_protocol == "rate" else f"subset-{cfg.observed_modalities}"
    fold = f"-fold{cfg.fold}" if cfg.fold is not None else ""
    return Path("runs") / f"{corpus}-{protocol}{fold}-seed{cfg.seed}-{stamp}"


def _broadcast(value: Any) -> Any:
    """The main process's ``value`` on every process (initialises the process group when launched)."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState()
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


def _check_same_config(cfg: TrainConfig, run_dir: Path) -> None:
    """A resumed run must have the configuration it was started with (except output/resume/reporting keys)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    current = cfg.to_dict()
    for key in sorted(set(saved) | set(current)):
        if key in _RESUME_FREE_KEYS:
            continue
        if saved.get(key) != current.get(key):
            raise RecipeError(f"cannot resume: {key} was {saved.get(key)!r} in {path} but is {current.get(key)!r} now")


# ---------------------------------------------------------------------- helpers


def _epoch_seed(seed: int, epoch: int) -> int:
    """Per-epoch seed: RNG streams of an epoch do not depend on how the run got there (resume-exact)."""
    return (seed * 1_000_003 + 7919 * (epoch + 1)) % (2**31 - 1)


def _selection_value(record: dict, split: str, metric: str) -> float | None:
    value = (record.get(split) or {}).get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value > best if higher_is_better(metric) else value < best


def _state_dict_cpu(model) -> dict[str, torch.Tensor]:
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
    label = synthetic_label(cfg)
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

    Args:
        model: the prepared model, already switched to its stage.
        loader: the prepared training dataloader.
        optimizer: the prepared optimizer.
        accelerator: the run's accelerator (mixed precision and gradient accumulation live there).
        max_grad_norm: clip the gradient norm when set.
        desc: progress-bar label.
        show_progress: show the bar (main process only).

    Returns:
        ``(mean loss over processes, mean loss terms of this process, seconds)``.
    """
    from tqdm.auto import tqdm

    model.train()
    started = time.perf_counter()
    loss_sum, terms_sum, batches = 0.0, {}, 0
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
        loss_sum += float(out.loss.detach())
        for name, value in (out.loss_terms or {}).items():
            terms_sum[name] = terms_sum.get(name, 0.0) + float(value)
        batches += 1
    seconds = time.perf_counter() - started
    local = torch.tensor([loss_sum / max(batches, 1)], device=accelerator.device)
    mean_loss = float(accelerator.gather(local).mean())
    return mean_loss, {k: v / max(batches, 1) for k, v in terms_sum.items()}, seconds


# ---------------------------------------------------------------------- one run


def train_run(cfg: TrainConfig, run_dir: Path, fold: int | None = None) -> dict[str, Any]:
    """Trains one model (one fold) in ``run_dir`` and returns its final summary.

    Args:
        cfg: validated configuration.
        run_dir: the run directory (created).
        fold: IEMOCAP fold or None.

    Returns:
        ``metrics.json``'s ``final`` entry: selected epoch, selection rule, validation/test metrics, stage-1
        metrics, fold, task.
    """
    # ---- released-protocol block: begin
    if cfg.protocol == "released":
        from recipes.released_protocol import train_released_run

        return train_released_run(cfg, run_dir, fold)
    # ---- released-protocol block: end
    from accelerate.utils import set_seed
    from safetensors.torch import load_file, save_file

    import hub_datasets
    from modeling_comp import ComPConfig, ComPForEmotionRecognition
    from recipes.common import make_accelerator

    run_dir = Path(run_dir)
    done = run_dir / "metrics.json"
    if cfg.resume_from_checkpoint is not None and done.is_file():
        previous = read_json(done)
        if previous.get("finished"):
            return previous["final"]
    resume_dir = _resolve_resume(cfg, run_dir)
    _prepare_run_dir(cfg, run_dir, resuming=cfg.resume_from_checkpoint is not None)
    if resume_dir is not None or cfg.resume_from_checkpoint is not None:
        _check_same_config(cfg, run_dir)

    accelerator = make_accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        project_dir=run_dir,
        checkpoint_total_limit=cfg.checkpoint_total_limit,
        report_to=cfg.report_to,
        seed=cfg.seed,
    )
    is_main = accelerator.is_main_process
    show = cfg.progress and accelerator.is_local_main_process
    set_seed(cfg.seed)

    with accelerator.main_process_first():
        dsd = load_corpus(cfg, fold)
    eval_splits = [s for s in ("validation", "test") if s in dsd]
    try:
        data_kwargs = hub_datasets.model_config_kwargs(dsd["train"])
        model_config = ComPConfig(**{**data_kwargs, **cfg.model})
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model configuration rejected: {str(err).splitlines()[0]}") from None
    for split in ("train", *eval_splits):
        if len(dsd[split]) == 0:
            raise RecipeError(f"the {split!r} split of {cfg.dataset!r} has no conversation (fold {fold})")
    longest = max(int(max(dsd[s]["num_utterances"])) for s in dsd if len(dsd[s]))
    if longest > model_config.max_utterances:
        raise ConfigError(
            f"model.max_utterances={model_config.max_utterances} is shorter than the longest conversation "
            f"({longest} utterances) of {cfg.dataset!r}"
        )
    task = corpus_task(model_config)
    metric = cfg.selection_metric or default_selection_metric(task)
    rule = selection_description(cfg.selection, metric, cfg.selection_stage)
    provenance = {split: hub_datasets.dataset_provenance(dsd[split]) for split in dsd}
    for entry in provenance.values():
        entry.update(selection=cfg.selection, selection_metric=metric, selection_rule=rule, training_seed=cfg.seed)
    if is_main:
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        write_json_atomic(run_dir / "provenance.json", provenance)

    set_seed(cfg.seed)
    model = ComPForEmotionRecognition(model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    collate = hub_datasets.ComPDataCollator(max_utterances=model_config.max_utterances)
    train_data = EpochMaskedDataset(dsd["train"])
    train_dl = torch.utils.data.DataLoader(
        train_data, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate, num_workers=cfg.num_workers
    )
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    eval_dls = [
        torch.utils.data.DataLoader(dsd[s], batch_size=eval_bs, shuffle=False, collate_fn=collate) for s in eval_splits
    ]
    model, optimizer, train_dl, *eval_dls = accelerator.prepare(model, optimizer, train_dl, *eval_dls)
    eval_loaders = dict(zip(eval_splits, eval_dls))
    unwrapped = accelerator.unwrap_model(model)
    id2label = {int(k): v for k, v in (model_config.id2label or {}).items()} if task == "classification" else None

    # ---- resume
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": None, "value": None}
    best_weights: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    if resume_dir is not None:
        accelerator.load_state(str(resume_dir), load_kwargs={"weights_only": True})
        state = read_json(resume_dir / _STATE_FILE)
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        if (resume_dir / _BEST_FILE).is_file():
            best_weights = load_file(str(resume_dir / _BEST_FILE))
        if is_main:
            print(f"resumed from {resume_dir} (epoch {state['epoch']} done)", flush=True)
    # Checkpoints newer than the starting point are stale (interrupted mid-save, or from an abandoned branch):
    # remove them so that save_state never meets an existing folder.
    if is_main and (run_dir / "checkpoints").is_dir():
        for stale in (run_dir / "checkpoints").iterdir():
            number = _checkpoint_number(stale)
            if number is not None and number >= start_epoch:
                shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    if cfg.report_to == "tensorboard":
        accelerator.init_trackers("comp", config=_hparams(cfg, fold))

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.epochs, initial=start_epoch, desc="epochs", disable=not show, dynamic_ncols=True)
    for epoch in range(start_epoch, cfg.epochs):
        stage = 1 if epoch < cfg.stage1_epochs else 2
        unwrapped.set_training_stage(stage)
        set_seed(_epoch_seed(cfg.seed, epoch), device_specific=True)
        train_data.set_epoch(epoch)
        train_dl.set_epoch(epoch)
        mean_loss, terms, train_seconds = train_one_epoch(
            model,
            train_dl,
            optimizer,
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
        for split, loader in eval_loaders.items():
            record[split] = evaluate_model(
                model,
                loader,
                accelerator,
                task=task,
                num_labels=model_config.num_labels,
                label_names=id2label,
                num_conversations=len(dsd[split]),
                desc=f"{split} {epoch}",
                show_progress=show,
            )
        eligible = stage >= cfg.selection_stage
        value = _selection_value(record, cfg.selection, metric)
        record["selection_value"] = value
        # ---- released-protocol block (tie-breaking, recipes/selection.py): begin
        if eligible and value is not None and selection_improves(value, record, best, cfg.selection, metric):
            best = {"epoch": epoch, "value": value, "loss": selection_loss(record, cfg.selection)}
            best_weights = _state_dict_cpu(unwrapped)
        # ---- released-protocol block: end
        record["best_epoch"] = best["epoch"]
        history.append(record)
        if cfg.report_to == "tensorboard":
            logs = {f"train/{k}": v for k, v in record["train"].items()}
            for split in eval_splits:
                logs.update({f"{split}/{k}": v for k, v in record[split].items() if isinstance(v, (int, float))})
            logs["stage"] = stage
            accelerator.log(logs, step=epoch)
        if is_main:
            write_json_atomic(run_dir / "metrics.json", {"finished": False, "selection_rule": rule, "epochs": history})
        last = epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.checkpoint_every == 0 or last:
            # Name checkpoints after the epoch (checkpoint_<epoch>): the counter is set explicitly, so a resumed
            # run never clobbers or misnames one.
            accelerator.project_configuration.iteration = epoch
            path = Path(accelerator.save_state())
            if is_main:
                if best_weights is not None:
                    save_file(best_weights, str(path / _BEST_FILE))
                # Written last: its presence marks the checkpoint complete.
                write_json_atomic(path / _STATE_FILE, {"epoch": epoch, "best": best, "history": history})
            accelerator.wait_for_everyone()
        if show:
            shown = record.get(cfg.selection, {}).get(metric)
            bar.set_postfix(stage=stage, loss=f"{mean_loss:.3f}", **{f"{cfg.selection[:3]}_{metric}": shown})
        bar.update(1)
    bar.close()

    # ---- selection and outputs
    if best["epoch"] is None or best_weights is None:
        raise RecipeError(f"no epoch could be selected ({cfg.selection} {metric} was never defined)")
    selected = history[best["epoch"]]
    stage1_records = [r for r in history if r["stage"] == 1]
    summary: dict[str, Any] = {
        "task": task,
        "fold": fold,
        "epoch": best["epoch"],
        "selection": cfg.selection,
        "selection_metric": metric,
        "selection_rule": rule,
        "selection_stage": cfg.selection_stage,
        "validation": selected.get("validation"),
        "test": selected.get("test"),
        "stage1": (
            {
                "epoch": stage1_records[-1]["epoch"],
                "test": stage1_records[-1].get("test"),
                "validation": stage1_records[-1].get("validation"),
            }
            if stage1_records
            else None
        ),
        "provenance_test": provenance.get("test"),
        "synthetic": cfg.is_synthetic,
    }
    unwrapped.load_state_dict(best_weights)
    unwrapped.set_training_stage(2)
    if is_main:
        staging = run_dir / ".model.partial"
        if staging.exists():
            shutil.rmtree(staging)
        unwrapped.save_pretrained(str(staging))
        run_record = {
            "config": cfg.to_dict(),
            "provenance": provenance,
            "final": summary,
            "task": task,
            "repo_id": cfg.push_to_hub,
        }
        write_json_atomic(staging / "comp_run.json", run_record)
        write_text_atomic(staging / "README.md", render_model_card(run_record))
        replace_dir_atomic(staging, run_dir / "model")
        write_json_atomic(
            run_dir / "metrics.json", {"finished": True, "selection_rule": rule, "epochs": history, "final": summary}
        )
        for line in _summary_lines(cfg, summary, run_dir):
            print(line, flush=True)
    accelerator.wait_for_everyone()
    if cfg.report_to == "tensorboard":
        accelerator.end_training()
    return summary


# ---------------------------------------------------------------------- folds, push, entry point


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
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    private = cfg.hub_private if cfg.hub_private is not None else cfg.is_iemocap and not cfg.is_synthetic
    api = HfApi(token=cfg.hub_token)
    try:
        url = api.create_repo(cfg.push_to_hub, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            repo_id=cfg.push_to_hub,
            folder_path=str(run_dir / "model"),
            commit_message=f"Upload ComP trained on {cfg.dataset}{synthetic_label(cfg)} with comp-emotion",
        )
    except (HfHubHTTPError, OSError) as err:
        raise RecipeError(f"push to the Hub repo {cfg.push_to_hub!r} failed: {str(err).splitlines()[0]}") from None
    return str(url)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Runs a configuration: one run, or one per IEMOCAP fold with mean ± std; pushes to the Hub if asked.

    Args:
        cfg: validated configuration.

    Returns:
        ``{"run_dir", "final"}`` for one run or ``{"run_dir", "folds", "mean_std"}`` for several folds.
    """
    if cfg.output_dir is not None:
        out = Path(cfg.output_dir).expanduser()
    elif cfg.resume_from_checkpoint not in (None, "latest"):
        # runs/x/checkpoints/checkpoint_3 (or runs/x/fold2/checkpoints/...) -> the run directory
        out = Path(cfg.resume_from_checkpoint).expanduser().resolve().parents[1]
    elif cfg.resume_from_checkpoint == "latest":
        raise ConfigError("--resume_from_checkpoint latest needs --output_dir (the run directory to continue)")
    else:
        out = default_output_dir(cfg, _broadcast(time.strftime("%Y%m%d-%H%M%S")))
    check_output_dir(out)
    folds = cfg.folds()
    if len(folds) == 1:
        summary = train_run(cfg, out, folds[0])
        result: dict[str, Any] = {"run_dir": str(out), "final": summary}
        model_dir = out
    else:
        if cfg.resume_from_checkpoint not in (None, "latest"):
            raise ConfigError("with --fold all, resume with --resume_from_checkpoint latest (folds resume in order)")
        summaries = []
        for fold in folds:
            summaries.append(train_run(cfg, out / f"fold{fold}", fold))
        mean_std = _aggregate_folds(summaries)
        result = {"run_dir": str(out), "folds": summaries, "mean_std": mean_std}
        from accelerate import PartialState

        if PartialState().is_main_process:
            write_json_atomic(
                out / "metrics.json",
                {"finished": True, "folds": summaries, "mean_std": mean_std, "synthetic": cfg.is_synthetic},
            )
            main = "accuracy" if summaries[0]["task"] == "classification" else "acc2"
            m = mean_std.get(main)
            if m:
                print(
                    f"\n{len(folds)}-fold test {main}{synthetic_label(cfg)}: {100 * m['mean']:.2f} ± {100 * m['std']:.2f}"
                    f" ({summaries[0]['selection_rule']})",
                    flush=True,
                )
        model_dir = None
    if cfg.push_to_hub:
        if model_dir is None:
            raise ConfigError("--push_to_hub needs a single run: pick one fold with --fold N")
        from accelerate import PartialState

        if PartialState().is_main_process:
            url = push_run_to_hub(cfg, model_dir)
            print(f"pushed to {url}", flush=True)
            result["hub_url"] = url
    return result


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``comp-train``)."""
    try:
        cfg = parse_train_args(argv)
        train(cfg)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
