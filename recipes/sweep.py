"""Sweep missing rates × seeds (× IEMOCAP folds): the paper's tables, a plot, the modality-balance view, ablations.

Examples::

    python recipes/sweep.py --missing_rates 0.0:0.7:0.1 --seeds 0,1,2 --output_dir runs/sweep-synthetic
    comp-sweep --config recipes/configs/iemocap4.yaml --data_dir ~/data/GCNet --folds all \\
        --missing_rates 0.1:0.7:0.1 --seeds 0,1,2 --output_dir runs/sweep-iemocap4
    comp-sweep ... --ablation          # Table 3: full ComP and each component switched off
    comp-sweep ... --balance           # Figure 5: each modality trained alone vs inside ComP
    comp-sweep ... --deviations        # default (fixed) ComP vs reference_compat and each fix undone

    comp-sweep ... --workers 4         # 4 cells at once on this machine (worker processes sharing its GPUs/cores)
    comp-sweep ... --backend ray --address auto --gpus_per_cell 0.25   # Ray tasks (pip install .[cluster])
    comp-sweep --preset paper --data_dir ~/data/GCNet --output_dir runs/paper --dry_run   # Table 1 + 3: count, ETA

Every cell is an ordinary training run in ``<output_dir>/cells/<variant>/mr<rate>/seed<seed>[/fold<k>]`` whose
output goes to its ``train.log``, wherever it runs (this process, a local worker, a Ray task); finished cells are
skipped and interrupted ones resume from their last checkpoint, so rerunning the same command continues the
sweep. Options other than the sweep's own are training options (``train.py --help``). Local workers:
``recipes/sweep_pool.py``; Ray: ``recipes/sweep_ray.py``; presets and the ETA: ``recipes/sweep_presets.py``.

Outputs in ``<output_dir>``: ``results.csv`` (one row per cell, every test metric), ``table.md`` / ``table.csv``
(variants × missing rates, mean ± std over seeds and folds, in percent), ``accuracy_vs_missing_rate.png``
(fused and per-modality), and with ``--balance`` ``balance.md`` / ``balance.png``; with ``--ablation`` the table
has one row per variant.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm


try:
    from recipes.config import DEFAULT_CONFIG, ConfigError, RecipeArgumentParser, RecipeError, TrainConfig
    from recipes.sweep_pool import LocalPool, cell_label, plan_placement
    from recipes.sweep_presets import dry_run, preset_groups
    from recipes.sweep_ray import connect, run_ray
    from recipes.sweep_worker import cell_is_finished, execute_cell
except ModuleNotFoundError as _err:  # run as a file from a checkout that is neither installed nor on PYTHONPATH
    if _err.name != "recipes":
        raise
    sys.exit("error: the comp-emotion package is not importable: run `pip install -e .` in the repository, or put "
             "its root on PYTHONPATH")  # fmt: skip


__all__ = [
    "ABLATIONS",
    "Execution",
    "SweepArguments",
    "SweepGroup",
    "run_groups",
    "parse_sweep_args",
    "parse_rates",
    "parse_int_list",
    "plan_cells",
    "run_sweep",
    "summarise",
    "main",
]

#: Table 3 of the paper: the full model and each component switched off (ComPConfig switches).
ABLATIONS: dict[str, dict[str, bool]] = {
    "ComP": {},
    "w/o KP": {"use_knowledge_propagation": False},
    "w/o PG": {"use_prompt_generation": False},
    "w/o Cr": {"use_coordinator": False},
    "w/o GM": {"use_gradient_modulation": False},
}
#: The default (fixed) method against the released behaviour and each default-mode fix undone on its own.
DEVIATIONS: dict[str, dict[str, Any]] = {
    "ComP": {},
    "reference_compat": {"reference_compat": True},
    "batch prototypes": {"prototype_scope": "batch"},
    "w/o GM": {"use_gradient_modulation": False},
}
#: The subset-protocol letter of each modality (the balance cells observe one modality alone).
_LETTER = {"audio": "a", "text": "t", "video": "v"}


@dataclass
class SweepArguments:
    """The sweep's own options (every other option is a training option; ``--output_dir`` is the sweep's root)."""

    missing_rates: str | None = field(
        default=None, metadata={"help": "start:stop:step (inclusive) or a list 0.1,0.4,0.7 (when unset: missing_rate)"}
    )
    seeds: str | None = field(default=None, metadata={"help": "comma-separated seeds, e.g. 0,1,2 (when unset: seed)"})
    folds: str | None = field(default=None, metadata={"help": "IEMOCAP folds: 1,2 or all (when unset: fold)"})
    ablation: bool = field(default=False, metadata={"help": "add the paper's Table 3 variants (each component off)"})
    balance: bool = field(default=False, metadata={"help": "add each modality trained alone (Figure 5 view)"})
    deviations: bool = field(
        default=False, metadata={"help": "add reference_compat and each fix to the released code undone"}
    )
    workers: int = field(
        default=1,
        metadata={"help": "cells run at once on this machine, each worker on its share of the hardware (a GPU, a "
                          "fraction of one, or cores/N CPU threads); 1: one after another in this process"},
    )  # fmt: skip
    backend: str = field(default="local", metadata={"help": "local (this machine) | ray (Ray tasks: --address)"})
    address: str | None = field(
        default=None, metadata={"help": "Ray cluster to join: auto or host:port (unset: start a local Ray instance)"}
    )
    cpus_per_cell: float = field(default=1.0, metadata={"help": "Ray: CPUs (and torch threads) per cell"})
    gpus_per_cell: float | None = field(
        default=None, metadata={"help": "Ray: GPUs per cell, e.g. 0.25 = four cells per GPU (unset: 0.25 on GPUs)"}
    )
    max_retries: int = field(
        default=2, metadata={"help": "times a cell whose worker died is run again (from its last checkpoint)"}
    )
    preset: str | None = field(
        default=None,
        metadata={"help": "a grid of several corpora: paper (Table 1 + Table 3), paper-table1, paper-table3, "
                          "or a preset YAML file"},
    )  # fmt: skip
    dry_run: bool = field(
        default=False, metadata={"help": "print the cells, where each would run and an ETA; train nothing"}
    )
    list_cells: bool = field(default=False, metadata={"help": "with --dry_run: one line per cell"})
    calibration: str | None = field(
        default=None,
        metadata={"help": "with --dry_run: a previous sweep's sweep_timing.json to take cells/hour from "
                          "(unset: measure a short calibration run of each corpus shape now)"},
    )  # fmt: skip


_PARSER = RecipeArgumentParser(
    [SweepArguments, TrainConfig],
    prog="comp-sweep",
    description="Sweep missing rates x seeds (x IEMOCAP folds) with the training recipe; writes tables and plots.",
    default_config=DEFAULT_CONFIG,
    model_overrides=True,
    epilog="--model.NAME VALUE   any ComPConfig argument. Every cell is a training run in "
    "<output_dir>/cells/...; rerunning the same command resumes the sweep.",
)


def parse_sweep_args(argv: list[str] | None = None) -> tuple[SweepArguments, TrainConfig]:
    """The sweep's options and the validated base training configuration."""
    sweep, base = _PARSER.parse(argv)
    return sweep, base.validate()


def parse_rates(text: str) -> list[float]:
    """``"0.0:0.7:0.1"`` (inclusive) or ``"0.1,0.4,0.7"`` → sorted distinct rates in [0, 1)."""
    try:
        if ":" in text:
            parts = [Decimal(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ConfigError(f"missing_rates={text!r} is invalid: expected start:stop:step with step > 0")
            count = int((parts[1] - parts[0]) / parts[2] + Decimal("1e-9")) + 1
            rates = [float(parts[0] + i * parts[2]) for i in range(count)]
        else:
            rates = [float(Decimal(p)) for p in text.split(",") if p.strip()]
    except (InvalidOperation, ValueError):
        raise ConfigError(f"missing_rates={text!r} is invalid: expected 0.0:0.7:0.1 or 0.1,0.4,0.7") from None
    if not rates or any(not 0.0 <= r < 1.0 for r in rates):
        raise ConfigError(f"missing_rates={text!r} is invalid: every rate must be in [0, 1)")
    return sorted(set(rates))


def parse_int_list(text: str, name: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]`` (one-line ConfigError otherwise)."""
    try:
        values = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"{name}={text!r} is invalid: expected comma-separated integers") from None
    if not values:
        raise ConfigError(f"{name}={text!r} is empty")
    return values


def _modalities() -> tuple[str, ...]:
    """The modality order (:data:`hub_datasets.constants.MODALITIES`), imported on use: ``--help`` stays fast."""
    from hub_datasets.constants import MODALITIES

    return MODALITIES


def plan_cells(
    base: TrainConfig,
    rates: list[float],
    seeds: list[int],
    folds: list[int | None],
    root: Path,
    *,
    ablation: bool,
    balance: bool,
    deviations: bool = False,
) -> list[dict[str, Any]]:
    """Every (variant, rate, seed, fold) cell with its run directory and configuration."""
    chosen: dict[str, dict[str, Any]] = {"ComP": {}}
    if ablation:
        chosen.update(ABLATIONS)
    if deviations:
        chosen.update(DEVIATIONS)
    variants: dict[str, dict[str, Any]] = {name: {"model": overrides} for name, overrides in chosen.items()}
    cells = []
    for variant, spec in variants.items():
        for rate in rates:
            for seed in seeds:
                for fold in folds:
                    cells.append(_cell(base, root, variant, spec["model"], rate, seed, fold, protocol=None))
    if balance:
        for modality in _modalities():
            for seed in seeds:
                for fold in folds:
                    cells.append(
                        _cell(base, root, f"{modality} alone", {}, None, seed, fold, protocol=_LETTER[modality])
                    )
    return cells


def _slug(variant: str) -> str:
    return variant.lower().replace("/", "").replace(" ", "-")


def _cell(base, root, variant, model_overrides, rate, seed, fold, protocol):
    name = f"mr{rate:.2f}" if protocol is None else f"only-{protocol}"
    run_dir = root / "cells" / _slug(variant) / name / f"seed{seed}"
    if fold is not None:
        run_dir = run_dir / f"fold{fold}"
    changes: dict[str, Any] = {
        "seed": seed,
        "fold": None if fold is None else str(fold),
        "output_dir": str(run_dir),
        "resume_from_checkpoint": "latest",
        "overwrite_output_dir": False,
        "push_to_hub": None,
        "model": {**base.model, **model_overrides},
    }
    if protocol is None:
        changes.update(missing_protocol="rate", missing_rate=rate, observed_modalities=None)
    else:
        changes.update(missing_protocol="subset", missing_rate=0.0, observed_modalities=protocol)
    cfg = dataclasses.replace(base, **changes).validate()
    return {
        "variant": variant,
        "missing_rate": rate,
        "seed": seed,
        "fold": fold,
        "run_dir": run_dir,
        "cfg": cfg,
        "alone": protocol,
    }


def _row(cell: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    test = final.get("test") or {}
    prov = final.get("provenance_test") or {}
    row = {
        "variant": cell["variant"],
        "missing_rate": cell["missing_rate"] if cell["missing_rate"] is not None else "",
        "observed_modalities": cell["alone"] or "",
        "realised_missing_rate": prov.get("realised_missing_rate"),
        "seed": cell["seed"],
        "fold": cell["fold"] if cell["fold"] is not None else "",
        "selected_epoch": final.get("epoch"),
        "selection": final.get("selection"),
    }
    row.update({k: v for k, v in test.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return row


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan"), 0
    return float(arr.mean()), float(arr.std()), int(arr.size)


def _cell_text(mean: float, std: float, n: int, percent: bool = True) -> str:
    """``mean ± std`` over several runs; the value alone for one run (no spread was measured)."""
    if n == 0 or np.isnan(mean):
        return "n/a"
    scale = 100.0 if percent else 1.0
    if n == 1:
        return f"{scale * mean:.2f}"
    return f"{scale * mean:.2f} ± {scale * std:.2f}"


def _realised(rows: list[dict[str, Any]], rate: float) -> str:
    values = [r.get("realised_missing_rate") for r in rows if r["missing_rate"] == rate]
    values = [float(v) for v in values if v is not None]
    return f"{np.mean(values):.3f}" if values else "n/a"


def summarise(rows: list[dict[str, Any]], task: str, synthetic: bool, selection: str) -> dict[str, str]:
    """Builds the Markdown and CSV tables (paper layout) from the per-cell rows.

    Returns:
        ``{"table.md", "table.csv", "balance.md" (if balance cells exist)}`` → file contents.
    """
    modalities = _modalities()

    main, second = ("accuracy", "unweighted_accuracy") if task == "classification" else ("acc2", "f1")
    main_label = "WA/UA" if task == "classification" else "Acc-2/F1"
    label = " (synthetic)" if synthetic else ""
    grid = [r for r in rows if r["observed_modalities"] == ""]
    rates = sorted({r["missing_rate"] for r in grid})
    variants = list(dict.fromkeys(r["variant"] for r in grid))
    note = (
        "model selected on the TEST set (paper protocol, optimistic)"
        if selection == "test"
        else "model selected on validation; test metrics at the selected epoch"
    )
    if selection == "released":
        from recipes.released_protocol import OPTIMISTIC_NOTE  # imports torch (seconds): kept off --help

        note = f"--protocol released ({OPTIMISTIC_NOTE}); CMU metrics on non-zero labels only"
    runs = max((sum(1 for r in grid if r["variant"] == v and r["missing_rate"] == x) for v in variants for x in rates),
               default=0)  # fmt: skip
    spread = "mean ± std over seeds and folds" if runs > 1 else "one run per cell (n = 1, no spread measured)"
    md = [
        f"# {main_label}{label}, percent, {spread}",
        "",
        f"Each cell: {main_label} (test); {note}. Missing rates above 2/3 realise 0.667 (every utterance keeps "
        "one modality).",
        "",
        "Realised test missing rate per requested rate: "
        + ", ".join(f"{x:.1f} → {_realised(grid, x)}" for x in rates)
        + ".",
        "",
        "| variant | " + " | ".join(f"MR {r:.1f}" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    out_csv = io.StringIO()
    writer = csv.writer(out_csv)
    writer.writerow(["variant", "metric", *[f"{r:.2f}" for r in rates]])
    for variant in variants:
        cells_md = []
        per_metric: dict[str, list[str]] = {main: [], second: []}
        for rate in rates:
            group = [r for r in grid if r["variant"] == variant and r["missing_rate"] == rate]
            texts = []
            for metric in (main, second):
                text = _cell_text(*_mean_std([r.get(metric) for r in group]))
                per_metric[metric].append(text)
                texts.append(text)
            cells_md.append(" / ".join(texts))
        md.append(f"| {variant}{label} | " + " | ".join(cells_md) + " |")
        for metric in (main, second):
            writer.writerow([variant + label, metric, *per_metric[metric]])
    per_mod = [f"{'accuracy' if task == 'classification' else 'acc2'}_{m}" for m in modalities]
    md += [
        "",
        f"Per-modality head accuracy of {variants[0] if variants else 'ComP'}{label}, percent:",
        "",
        "| modality | " + " | ".join(f"MR {r:.1f}" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    first_variant = variants[0] if variants else None
    for metric in per_mod:
        texts = []
        for rate in rates:
            group = [r for r in grid if r["variant"] == first_variant and r["missing_rate"] == rate]
            texts.append(_cell_text(*_mean_std([r.get(metric) for r in group])))
        md.append(f"| {metric.split('_', 1)[1]} | " + " | ".join(texts) + " |")
        writer.writerow([f"{first_variant}{label}", metric, *texts])
    files = {"table.md": "\n".join(md) + "\n", "table.csv": out_csv.getvalue()}
    alone = [r for r in rows if r["observed_modalities"] != ""]
    if alone and rates:
        ref_rate = rates[0]
        bal = [
            f"# Modality balance{label} (paper Figure 5 view), test {main}, percent",
            "",
            f"'alone': a model trained and tested with only that modality (subset protocol); 'inside ComP': the "
            f"modality's own head in the full model at missing rate {ref_rate:.1f}.",
            "",
            "| modality | alone | inside ComP |",
            "|---|---|---|",
        ]
        for modality in modalities:
            solo = [r.get(main) for r in alone if r["observed_modalities"] == _LETTER[modality]]
            inside = [
                r.get(per_mod[modalities.index(modality)])
                for r in grid
                if r["variant"] == first_variant and r["missing_rate"] == ref_rate
            ]
            bal.append(f"| {modality} | {_cell_text(*_mean_std(solo))} | {_cell_text(*_mean_std(inside))} |")
        files["balance.md"] = "\n".join(bal) + "\n"
    return files


def _plots(rows: list[dict[str, Any]], task: str, synthetic: bool, root: Path) -> list[Path]:
    try:
        import matplotlib
    except ImportError:  # the tables are written; a machine without matplotlib only misses the plots
        print("plots skipped: matplotlib is not installed (pip install comp-emotion[train])", flush=True)
        return []

    modalities = _modalities()

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = "accuracy" if task == "classification" else "acc2"
    label = " (synthetic)" if synthetic else ""
    grid = [r for r in rows if r["observed_modalities"] == ""]
    first = next(iter(dict.fromkeys(r["variant"] for r in grid)), None)
    written = []
    if grid:
        rates = sorted({r["missing_rate"] for r in grid})
        seeds = len({r["seed"] for r in grid})
        folds = len({r["fold"] for r in grid})
        runs = f"{seeds} seed{'s' if seeds > 1 else ''}" + (f" x {folds} folds" if folds > 1 else "")
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        heads = [(main, "fused prediction")] + [(f"{main}_{m}", f"{m} head") for m in modalities]
        for metric, name in heads:
            stats = [
                _mean_std([r.get(metric) for r in grid if r["variant"] == first and r["missing_rate"] == x])
                for x in rates
            ]
            ax.errorbar(
                rates, [100 * s[0] for s in stats], yerr=[100 * s[1] for s in stats], marker="o", capsize=3, label=name
            )
        ax.set_xticks(rates, [f"{x:.2f}\n({_realised(grid, x)})" for x in rates])
        ax.set_xlabel("missing rate: requested (realised on the test split)")
        ax.set_ylabel(f"test {main} (%)")
        ax.set_title(f"ComP{label}: {main} vs missing rate, mean ± std over {runs}")
        ax.grid(alpha=0.3)
        ax.legend(title="ComP's outputs (audio/text/video: its modality heads)", fontsize=8, title_fontsize=8)
        fig.tight_layout()
        path = root / "accuracy_vs_missing_rate.png"
        fig.savefig(path.with_suffix(".tmp.png"), dpi=120)
        plt.close(fig)
        path.with_suffix(".tmp.png").replace(path)
        written.append(path)
    alone = [r for r in rows if r["observed_modalities"] != ""]
    if alone and grid:
        ref = min(r["missing_rate"] for r in grid)
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = np.arange(len(modalities))
        solo = [_mean_std([r.get(main) for r in alone if r["observed_modalities"] == _LETTER[m]]) for m in modalities]
        inside = [
            _mean_std([r.get(f"{main}_{m}") for r in grid if r["variant"] == first and r["missing_rate"] == ref])
            for m in modalities
        ]
        ax.bar(xs - 0.2, [100 * s[0] for s in solo], 0.4, yerr=[100 * s[1] for s in solo], label="trained alone")
        ax.bar(xs + 0.2, [100 * s[0] for s in inside], 0.4, yerr=[100 * s[1] for s in inside], label="inside ComP")
        ax.set_xticks(xs, modalities)
        ax.set_ylabel(f"test {main} (%)")
        ax.set_title(f"Modality balance{label} (MR {ref:.1f})")
        ax.legend()
        fig.tight_layout()
        path = root / "balance.png"
        fig.savefig(path.with_suffix(".tmp.png"), dpi=120)
        plt.close(fig)
        path.with_suffix(".tmp.png").replace(path)
        written.append(path)
    return written


@dataclass
class SweepGroup:
    """One base configuration and its grid; ``name`` None: the sweep's only group, written in the root itself."""

    base: TrainConfig
    rates: list[float]
    seeds: list[int]
    folds: list[int | None]
    root: Path
    name: str | None = None
    ablation: bool = False
    balance: bool = False
    deviations: bool = False
    cells: list[dict[str, Any]] = field(default_factory=list)

    def plan(self) -> list[dict[str, Any]]:
        self.cells = plan_cells(
            self.base, self.rates, self.seeds, self.folds, self.root,
            ablation=self.ablation, balance=self.balance, deviations=self.deviations,
        )  # fmt: skip
        for cell in self.cells:
            cell["group"] = self.name
        return self.cells


@dataclass
class Execution:
    """Where the cells run: in this process one after another (``workers=1``), on ``workers`` local processes, or
    as Ray tasks (``backend="ray"``)."""

    backend: str = "local"
    workers: int = 1
    address: str | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float | None = None
    max_retries: int = 2
    progress: bool = True
    resume_hint: str = "rerun the same command"

    @property
    def sequential(self) -> bool:
        return self.backend == "local" and self.workers == 1


class _Progress:
    """One bar over the cells (done / running / failed, ETA) and one line per cell that ends."""

    def __init__(self, total: int, done: int, show: bool, enabled: bool):
        self.total, self.done, self.running, self.failed = total, done, 0, 0
        self.show = show
        self.bar = tqdm(
            total=total, initial=done, desc="sweep", unit="cell", disable=not (show and enabled), dynamic_ncols=True
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"done {self.done}, running {self.running}, failed {self.failed}", refresh=True)

    def line(self, text: str) -> None:
        if self.show:
            self.bar.write(text, file=sys.stdout)
            sys.stdout.flush()

    def start(self) -> None:
        self.running += 1
        self._postfix()

    def end(self, ok: bool) -> None:
        self.running = max(0, self.running - 1)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        self.bar.close()


def _check_placement(execution: Execution, distributed: bool) -> list[Any]:
    """The local workers' placement, or [] (one-line ConfigError for impossible requests)."""
    if execution.backend not in ("local", "ray"):
        raise ConfigError(f"backend={execution.backend!r} is invalid: expected local or ray")
    if execution.max_retries < 0:
        raise ConfigError(f"max_retries={execution.max_retries} is invalid: expected 0 or more")
    if execution.backend == "ray":
        if execution.workers != 1:
            raise ConfigError(
                f"workers={execution.workers} applies to --backend local; with Ray, --cpus_per_cell and "
                "--gpus_per_cell size the cells and the cluster decides how many run at once"
            )
        if execution.cpus_per_cell <= 0:
            raise ConfigError(f"cpus_per_cell={execution.cpus_per_cell} is invalid: expected a positive number")
        if execution.gpus_per_cell is not None and execution.gpus_per_cell < 0:
            raise ConfigError(f"gpus_per_cell={execution.gpus_per_cell} is invalid: expected 0 or more")
    elif execution.address is not None:
        raise ConfigError(f"address={execution.address!r} applies to --backend ray only")
    if distributed and not execution.sequential:
        raise ConfigError(
            "--workers > 1 and --backend ray start their own processes: run comp-sweep without accelerate launch"
        )
    if execution.backend == "local" and execution.workers != 1:
        return plan_placement(execution.workers)
    return []


def run_groups(groups: list[SweepGroup], root: Path, execution: Execution | None = None) -> dict[str, Any]:
    """Runs (or resumes) every cell of every group with ``execution``, then writes each group's results, tables
    and plots (one code path whatever ran the cells).

    Returns:
        ``{"rows": [...] (every group's finished cells, in plan order), "files": [...], "failed": {label: error},
        "not_run": [labels]}``.
    """
    execution = execution or Execution()
    if execution.sequential:  # under `accelerate launch` every process runs every cell (one DDP run per cell)
        from recipes.trainer import process_state  # the launch's process state, read as the trainer reads it

        state = process_state()
        is_main, distributed = state.is_main_process, state.num_processes > 1
    else:
        is_main, distributed = True, int(os.environ.get("WORLD_SIZE", "1")) > 1
    placements = _check_placement(execution, distributed)
    cells = [cell for group in groups for cell in group.plan()]
    finals: dict[int, dict[str, Any]] = {}
    for index, cell in enumerate(cells):
        final = cell_is_finished(cell["run_dir"])
        if final is not None:
            finals[index] = final
    todo = [i for i in range(len(cells)) if i not in finals]
    if execution.backend == "ray" and todo:  # join (or start) Ray before anything else: a bad address is one line
        connect(execution.address)
    pool = None
    if placements and todo:
        # Started before this process imports torch and the rest: the workers' start-up overlaps it.
        log_dir = Path(root) / "workers"
        with contextlib.suppress(OSError):  # an unwritable root is reported by check_output_dir below
            log_dir.mkdir(parents=True, exist_ok=True)
            pool = LocalPool(placements, str(log_dir))
    try:
        return _run_cells(groups, root, execution, placements, cells, finals, todo, pool, is_main)
    finally:
        if pool is not None:
            pool.close()


def _run_cells(groups, root, execution, placements, cells, finals, todo, pool, is_main) -> dict[str, Any]:
    from recipes.common import check_output_dir  # imports torch (seconds): kept off --help

    root = check_output_dir(root)
    errors: dict[int, str] = {}
    group_of = {id(cell): group for group in groups for cell in group.cells}
    show = is_main
    progress = _Progress(len(cells), len(finals), show, execution.progress)
    if finals:
        progress.line(f"[sweep] {len(finals)} of {len(cells)} cells already finished (kept, not rerun)")
    started = time.time()
    timing: list[dict[str, Any]] = []

    def on_event(kind: str, index: int, outcome: dict[str, Any] | None) -> None:
        cell = cells[index]
        if kind == "start":
            progress.start()
        elif kind == "retry":
            progress.running = max(0, progress.running - 1)
            progress.line(f"[sweep] {cell_label(cell)}: {outcome['error']}; retrying from its last checkpoint")
        elif kind == "done":
            finals[index] = outcome["final"]
            progress.end(True)
            timing.append(_timing_entry(cell, outcome))
            count = len(finals) + len(errors)
            progress.line(f"[sweep {count}/{len(cells)}] {cell_label(cell)}: done in {outcome['seconds']:.1f} s")
            if is_main:
                group = group_of[id(cell)]
                _write_results(group.root, _group_rows(group, cells, finals))
        else:
            errors[index] = outcome["error"]
            progress.end(False)
            log = Path(cell["run_dir"]) / "train.log"
            count = len(finals) + len(errors)
            progress.line(
                f"[sweep {count}/{len(cells)}] cell {cell_label(cell)} failed: {outcome['error']} (log: {log})"
            )

    stop = max(3, execution.workers)
    interrupted = False
    try:
        if not todo:
            pass
        elif execution.sequential:
            for index in todo:
                if len(errors) >= stop and len(finals) == len(cells) - len(todo):
                    break
                on_event("start", index, None)
                cell = cells[index]
                outcome = execute_cell(cell["cfg"], cell["run_dir"], cell["fold"], label=cell_label(cell),
                                       record=is_main)  # fmt: skip
                on_event("done" if outcome["status"] == "done" else "failed", index, outcome)
        elif execution.backend == "local":
            for placement in placements:
                progress.line(f"[sweep] {placement.describe()}")
            pool.run(cells, todo, on_event=on_event, max_retries=execution.max_retries, stop_after_failures=stop)
        else:
            resources = run_ray(
                cells, todo, on_event=on_event, address=execution.address, cpus_per_cell=execution.cpus_per_cell,
                gpus_per_cell=execution.gpus_per_cell, max_retries=execution.max_retries, label_of=cell_label,
                stop_after_failures=stop,
            )  # fmt: skip
            progress.line(f"[sweep] Ray cluster: {resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
    except KeyboardInterrupt:  # the finished cells are kept: tables of what is there, and how to resume
        interrupted = True
    finally:
        progress.close()
    wall = time.time() - started
    rows: list[dict[str, Any]] = []
    files: list[Path] = []
    for group in groups:
        group_rows = _group_rows(group, cells, finals)
        rows += group_rows
        if is_main and group_rows:
            index = {id(c): i for i, c in enumerate(cells)}
            task = next(finals[index[id(c)]].get("task") for c in group.cells if index[id(c)] in finals)
            files += _write_group_outputs(group, group_rows, task, len(groups) == 1)
    not_run = [i for i in range(len(cells)) if i not in finals and i not in errors]
    if is_main:
        if timing:
            _write_timing(root, execution, placements, timing, wall)
        if interrupted:
            print("sweep interrupted", flush=True)
        _print_summary(cells, finals, errors, not_run, files, execution, len(groups) == 1, root)
    return {
        "rows": rows,
        "files": [str(p) for p in files],
        "failed": {cell_label(cells[i]): e for i, e in errors.items()},
        "not_run": [cell_label(cells[i]) for i in not_run],
        "interrupted": interrupted,
    }


def _timing_entry(cell: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    cfg = cell["cfg"]
    utterances = None
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        provenance = json.loads((Path(cell["run_dir"]) / "provenance.json").read_text(encoding="utf-8"))
        utterances = sum(int(split["num_utterances"]) for split in provenance.values())
    return {
        "cell": str(cell["run_dir"]),
        "corpus": cfg.corpus_shape,
        "synthetic": cfg.is_synthetic,
        "utterances": utterances,
        "epochs_trained": outcome.get("epochs_trained"),
        "seconds": round(float(outcome.get("seconds", 0.0)), 3),
        "ended": round(time.time(), 3),
        "hidden_size": cfg.model.get("hidden_size"),
        "num_hidden_layers": cfg.model.get("num_hidden_layers"),
        "batch_size": cfg.batch_size,
    }


def _write_timing(root: Path, execution: Execution, placements, timing: list[dict[str, Any]], wall: float) -> None:
    """``sweep_timing.json``: what this sweep measured (wall time, cells/hour, each cell's seconds and epochs);
    ``--dry_run --calibration <it>`` turns it into an ETA."""
    from recipes.common import write_json_atomic  # imports torch (seconds): kept off --help

    write_json_atomic(
        root / "sweep_timing.json",
        {
            "host": socket.gethostname(),
            "backend": execution.backend,
            "workers": execution.workers,
            "placement": [p.describe() for p in placements],
            "wall_seconds": round(wall, 3),
            "cells": len(timing),
            "cells_per_hour": round(3600.0 * len(timing) / wall, 2) if wall > 0 else None,
            "cell_seconds_sum": round(sum(t["seconds"] for t in timing), 3),
            # from the first cell's start to the last cell's end: the sweep without its start-up
            "busy_seconds": round(max(t["ended"] for t in timing) - min(t["ended"] - t["seconds"] for t in timing), 3),
            "per_cell": timing,
        },
    )


def _group_rows(group: SweepGroup, cells: list[dict[str, Any]], finals: dict[int, dict[str, Any]]):
    """The group's finished cells as result rows, in plan order (whatever order they finished in)."""
    index = {id(c): i for i, c in enumerate(cells)}
    return [_row(c, finals[index[id(c)]]) for c in group.cells if index[id(c)] in finals]


def _write_group_outputs(group: SweepGroup, rows: list[dict[str, Any]], task: str, print_table: bool) -> list[Path]:
    """results.csv, table.md / table.csv, plots and sweep.json of one group."""
    from recipes.common import write_json_atomic, write_text_atomic  # imports torch (seconds): kept off --help

    root, base = group.root, group.base
    _write_results(root, rows)
    files: list[Path] = [root / "results.csv"]
    selection = "released" if base.protocol == "released" else base.selection
    for name, text in summarise(rows, task, base.is_synthetic, selection).items():
        write_text_atomic(root / name, text)
        files.append(root / name)
    files += _plots(rows, task, base.is_synthetic, root)
    config = base.to_dict()
    # The sweep sets each cell's protocol and rate: the base config's own values were not used.
    config.update(missing_protocol=None, missing_rate=None, observed_modalities=None, seed=None, fold=None)
    realised = {f"{x:.2f}": _realised([r for r in rows if r["observed_modalities"] == ""], x) for x in group.rates}
    write_json_atomic(
        root / "sweep.json",
        {
            "config": config,
            "overridden_by_sweep": ["missing_protocol", "missing_rate", "observed_modalities", "seed", "fold"],
            "missing_rates": group.rates,
            "realised_test_missing_rates": realised,
            "seeds": group.seeds,
            "folds": group.folds,
            "ablation": group.ablation,
            "balance": group.balance,
            "deviations": group.deviations,
            "synthetic": base.is_synthetic,
            "cells": len(group.cells),
            "cells_finished": len(rows),
        },
    )
    files.append(root / "sweep.json")
    if print_table:
        print("\n" + (root / "table.md").read_text(encoding="utf-8"), flush=True)
    return files


def _print_summary(cells, finals, errors, not_run, files, execution: Execution, one_group: bool, root: Path) -> None:
    print(f"sweep: {len(finals)} of {len(cells)} cells finished, {len(errors)} failed, {len(not_run)} not run",
          flush=True)  # fmt: skip
    tables = [p for p in files if p.suffix in (".md", ".csv")]
    plots = [p for p in files if p.suffix == ".png"]
    if tables:
        print("tables: " + ", ".join(str(p) for p in tables), flush=True)
    if plots:
        print("plots:  " + ", ".join(str(p) for p in plots), flush=True)
    for index, error in errors.items():
        print(f"failed: {cell_label(cells[index])}: {error} (log: {Path(cells[index]['run_dir']) / 'train.log'})",
              flush=True)  # fmt: skip
    if errors or not_run:
        print(f"every finished cell is kept in {root}; to resume: {execution.resume_hint}", flush=True)


def run_sweep(
    base: TrainConfig,
    rates: list[float],
    seeds: list[int],
    folds: list[int | None],
    root: Path,
    *,
    ablation: bool = False,
    balance: bool = False,
    deviations: bool = False,
    execution: Execution | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) every cell of one grid, then writes the tables and plots.

    Returns:
        ``{"rows": [...], "files": [...], "failed": {...}, "not_run": [...]}`` (see :func:`run_groups`).
    """
    group = SweepGroup(base, rates, seeds, folds, Path(root), ablation=ablation, balance=balance,
                       deviations=deviations)  # fmt: skip
    return run_groups([group], Path(root), execution)


def _write_results(root: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in keys})
    from recipes.common import write_text_atomic  # imports torch (seconds): kept off --help

    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "results.csv", buffer.getvalue())


def _grid(sweep: SweepArguments, base: TrainConfig) -> tuple[list[float], list[int], list[int | None]]:
    """The rates, seeds and folds of ``sweep`` over ``base`` (the base config's own values where unset)."""
    rates = parse_rates(sweep.missing_rates or str(base.missing_rate))
    seeds = parse_int_list(sweep.seeds or str(base.seed), "seeds")
    if sweep.folds is None:
        folds = base.folds()
    elif str(sweep.folds).lower() == "all":
        folds = [1, 2, 3, 4, 5]
    else:
        folds = parse_int_list(sweep.folds, "folds")
    if folds != [None] and not base.is_iemocap:
        raise ConfigError(f"folds only apply to IEMOCAP, not to {base.dataset!r}")
    bad = [f for f in folds if f is not None and f not in range(1, 6)]
    if bad:
        raise ConfigError(f"fold {bad[0]} is invalid: expected 1..5")
    return rates, seeds, folds


def _resume_hint(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return "comp-sweep " + " ".join(shlex.quote(a) for a in args if a != "--dry_run")


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``comp-sweep``)."""
    try:
        sweep, base = parse_sweep_args(argv)
        if not base.output_dir and not sweep.dry_run:
            raise ConfigError("--output_dir is required (the sweep's root directory; rerun it to resume)")
        root = Path(base.output_dir or "runs/sweep").expanduser()
        execution = Execution(
            backend=sweep.backend, workers=sweep.workers, address=sweep.address, cpus_per_cell=sweep.cpus_per_cell,
            gpus_per_cell=sweep.gpus_per_cell, max_retries=sweep.max_retries, progress=base.progress,
            resume_hint=_resume_hint(argv),
        )  # fmt: skip
        if sweep.preset is not None:
            groups = preset_groups(sweep, argv, root, _PARSER, _grid)
        else:
            rates, seeds, folds = _grid(sweep, base)
            groups = [SweepGroup(base, rates, seeds, folds, root, ablation=sweep.ablation, balance=sweep.balance,
                                 deviations=sweep.deviations)]  # fmt: skip
        if execution.backend == "ray" and not sweep.dry_run:  # Ray workers (on other nodes too) have another cwd
            root = root.resolve()
            for group in groups:
                group.root = group.root.resolve()
                if group.base.data_dir is not None:
                    group.base = dataclasses.replace(
                        group.base, data_dir=str(Path(group.base.data_dir).expanduser().resolve())
                    )
        if sweep.dry_run:
            dry_run(groups, execution, calibration=sweep.calibration, list_cells=sweep.list_cells)
            return 0
        if base.torch_threads is not None and execution.sequential:
            import torch

            torch.set_num_threads(base.torch_threads)
        result = run_groups(groups, root, execution)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    if result["interrupted"]:
        return 130
    return 1 if result["failed"] or result["not_run"] else 0


if __name__ == "__main__":
    sys.exit(main())
