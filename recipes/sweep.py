"""Sweep missing rates × seeds (× IEMOCAP folds): the paper's tables, a plot, the modality-balance view, ablations.

Examples::

    python recipes/sweep.py --missing_rates 0.0:0.7:0.1 --seeds 0,1,2 --output_dir runs/sweep-synthetic
    comp-sweep --config recipes/configs/iemocap4.yaml --data_dir ~/data/GCNet --folds all \\
        --missing_rates 0.1:0.7:0.1 --seeds 0,1,2 --output_dir runs/sweep-iemocap4
    comp-sweep ... --ablation          # Table 3: full ComP and each component switched off
    comp-sweep ... --balance           # Figure 5: each modality trained alone vs inside ComP
    comp-sweep ... --deviations        # default (fixed) ComP vs reference_compat and each fix undone

Every cell is an ordinary training run in ``<output_dir>/cells/<variant>/mr<rate>/seed<seed>[/fold<k>]``;
finished cells are skipped and interrupted ones resume from their last checkpoint, so rerunning the same
command continues the sweep. Options other than the sweep's own are training options (``train.py --help``).

Outputs in ``<output_dir>``: ``results.csv`` (one row per cell, every test metric), ``table.md`` / ``table.csv``
(variants × missing rates, mean ± std over seeds and folds, in percent), ``accuracy_vs_missing_rate.png``
(fused and per-modality), and with ``--balance`` ``balance.md`` / ``balance.png``; with ``--ablation`` the table
has one row per variant.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np


try:
    from recipes.config import DEFAULT_CONFIG, ConfigError, RecipeArgumentParser, RecipeError, TrainConfig
    from recipes.train import train_run
except ModuleNotFoundError as _err:  # run as a file from a checkout that is neither installed nor on PYTHONPATH
    if _err.name != "recipes":
        raise
    sys.exit("error: the comp-emotion package is not importable: run `pip install -e .` in the repository, or put "
             "its root on PYTHONPATH")  # fmt: skip


__all__ = [
    "ABLATIONS",
    "SweepArguments",
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
    from hub_datasets.constants import MODALITIES  # imported on use: --help stays fast

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
        from recipes.released_protocol import OPTIMISTIC_NOTE

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
    per_mod = [f"{'accuracy' if task == 'classification' else 'acc2'}_{m}" for m in MODALITIES]
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
        for modality in MODALITIES:
            solo = [r.get(main) for r in alone if r["observed_modalities"] == _LETTER[modality]]
            inside = [
                r.get(per_mod[MODALITIES.index(modality)])
                for r in grid
                if r["variant"] == first_variant and r["missing_rate"] == ref_rate
            ]
            bal.append(f"| {modality} | {_cell_text(*_mean_std(solo))} | {_cell_text(*_mean_std(inside))} |")
        files["balance.md"] = "\n".join(bal) + "\n"
    return files


def _plots(rows: list[dict[str, Any]], task: str, synthetic: bool, root: Path) -> list[Path]:
    import matplotlib

    from hub_datasets.constants import MODALITIES  # imported on use: --help stays fast

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
        heads = [(main, "fused prediction")] + [(f"{main}_{m}", f"{m} head") for m in MODALITIES]
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
        xs = np.arange(len(MODALITIES))
        solo = [_mean_std([r.get(main) for r in alone if r["observed_modalities"] == _LETTER[m]]) for m in MODALITIES]
        inside = [
            _mean_std([r.get(f"{main}_{m}") for r in grid if r["variant"] == first and r["missing_rate"] == ref])
            for m in MODALITIES
        ]
        ax.bar(xs - 0.2, [100 * s[0] for s in solo], 0.4, yerr=[100 * s[1] for s in solo], label="trained alone")
        ax.bar(xs + 0.2, [100 * s[0] for s in inside], 0.4, yerr=[100 * s[1] for s in inside], label="inside ComP")
        ax.set_xticks(xs, MODALITIES)
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
) -> dict[str, Any]:
    """Runs (or resumes) every cell, then writes the tables and plots.

    Returns:
        ``{"rows": [...], "files": [...]}``.
    """
    from accelerate import PartialState

    from recipes.common import check_output_dir, write_json_atomic, write_text_atomic

    root = check_output_dir(root)
    cells = plan_cells(base, rates, seeds, folds, root, ablation=ablation, balance=balance, deviations=deviations)
    is_main = PartialState().is_main_process
    rows = []
    task = None
    for i, cell in enumerate(cells, 1):
        if is_main:
            where = f"MR {cell['missing_rate']:.2f}" if cell["alone"] is None else f"only {cell['alone']}"
            fold = f", fold {cell['fold']}" if cell["fold"] is not None else ""
            print(f"[sweep {i}/{len(cells)}] {cell['variant']}, {where}, seed {cell['seed']}{fold}", flush=True)
        final = train_run(cell["cfg"], cell["run_dir"], cell["fold"])
        task = final["task"]
        rows.append(_row(cell, final))
        if is_main:
            _write_results(root, rows)
    files: list[Path] = [root / "results.csv"]
    if is_main and task is not None:
        selection = "released" if base.protocol == "released" else base.selection
        for name, text in summarise(rows, task, base.is_synthetic, selection).items():
            write_text_atomic(root / name, text)
            files.append(root / name)
        files += _plots(rows, task, base.is_synthetic, root)
        config = base.to_dict()
        # The sweep sets each cell's protocol and rate: the base config's own values were not used.
        config.update(missing_protocol=None, missing_rate=None, observed_modalities=None, seed=None, fold=None)
        realised = {f"{x:.2f}": _realised([r for r in rows if r["observed_modalities"] == ""], x) for x in rates}
        write_json_atomic(
            root / "sweep.json",
            {
                "config": config,
                "overridden_by_sweep": ["missing_protocol", "missing_rate", "observed_modalities", "seed", "fold"],
                "missing_rates": rates,
                "realised_test_missing_rates": realised,
                "seeds": seeds,
                "folds": folds,
                "ablation": ablation,
                "balance": balance,
                "deviations": deviations,
                "synthetic": base.is_synthetic,
                "cells": len(cells),
            },
        )
        print("\n" + (root / "table.md").read_text(encoding="utf-8"), flush=True)
        for path in files:
            print(f"wrote {path}", flush=True)
    return {"rows": rows, "files": [str(p) for p in files]}


def _write_results(root: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in keys})
    from recipes.common import write_text_atomic

    write_text_atomic(root / "results.csv", buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``comp-sweep``)."""
    try:
        sweep, base = parse_sweep_args(argv)
        if not base.output_dir:
            raise ConfigError("--output_dir is required (the sweep's root directory; rerun it to resume)")
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
        if base.torch_threads is not None:
            import torch

            torch.set_num_threads(base.torch_threads)
        run_sweep(
            base,
            rates,
            seeds,
            folds,
            Path(base.output_dir).expanduser(),
            ablation=sweep.ablation,
            balance=sweep.balance,
            deviations=sweep.deviations,
        )
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
