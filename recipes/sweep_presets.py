"""Sweep presets (several corpora in one sweep, e.g. the paper's tables) and ``--dry_run``: the cell count, where
each cell would run, and an ETA from this machine's measured speed.

A preset is a YAML file with a list of ``groups``; each group names a training config (relative to the preset
file) and its grid (``missing_rates``, ``seeds``, ``folds``, ``ablation``, ``balance``, ``deviations``). Built in:
``paper`` (``recipes/configs/paper_sweep.yaml``: Table 1 and Table 3) and ``paper-table1`` (the same without the
ablation). Options on the command line override every group's config and, when given, its grid.

The ETA. A cell's time is ``epochs x utterances of its corpus x seconds per utterance and epoch``, the last from:

* ``--calibration <a previous sweep's sweep_timing.json>``: what its cells took, per model size (hidden size,
  layers), and how many cells it ran at once (sum of cell seconds / wall seconds);
* otherwise a calibration run now, in this process: 2 epochs of the group's own config (synthetic corpus) or of
  a small synthetic corpus shaped like the group's corpus (its feature dims and utterances per conversation, the
  group's model and batch size), evaluation and set-up included (so a slight over-estimate). Concurrency is then
  taken as the number of workers (local) or of the local Ray instance's slots, i.e. cells that do not slow each
  other down: ``benchmarks/bench_sweep.py`` measures how far that holds.

The real corpora's sizes are those of the released feature files (:data:`CORPUS_SIZES`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from recipes.config import CONFIG_DIR, ConfigError, _yaml_load
from recipes.sweep_pool import cell_label
from recipes.sweep_worker import cell_is_finished, execute_cell, usable_cores


__all__ = ["PRESETS", "CORPUS_SIZES", "preset_groups", "dry_run", "load_preset"]

#: built-in presets: name -> (file, ablation forced off)
PRESETS: dict[str, tuple[Path, bool]] = {
    "paper": (CONFIG_DIR / "paper_sweep.yaml", False),
    "paper-table1": (CONFIG_DIR / "paper_sweep.yaml", True),
}
#: the released corpora: conversations, utterances (all splits), mean utterances per conversation, feature dims
CORPUS_SIZES: dict[str, dict[str, Any]] = {
    "iemocap4": {"conversations": 151, "utterances": 5531, "dims": {"audio": 512, "text": 1024, "video": 1024}},
    "iemocap6": {"conversations": 151, "utterances": 7433, "dims": {"audio": 512, "text": 1024, "video": 1024}},
    "mosi": {"conversations": 93, "utterances": 2199, "dims": {"audio": 512, "text": 1024, "video": 1024}},
    "mosei": {"conversations": 3228, "utterances": 22856, "dims": {"audio": 512, "text": 1024, "video": 1024}},
}
_GROUP_KEYS = {"name", "config", "missing_rates", "seeds", "folds", "ablation", "balance", "deviations"}
_GRID_OPTIONS = ("missing_rates", "seeds", "folds")
_SWITCHES = ("ablation", "balance", "deviations")


def load_preset(name: str) -> tuple[Path, list[dict[str, Any]], bool]:
    """A preset's file, its groups (checked) and whether the ablation is dropped."""
    if name in PRESETS:
        path, no_ablation = PRESETS[name]
    else:
        path, no_ablation = Path(name).expanduser(), False
        if not path.is_file():
            raise ConfigError(f"preset {name!r} is neither a built-in preset ({', '.join(PRESETS)}) nor a YAML file")
    try:
        data = _yaml_load(path.read_text(encoding="utf-8"))
    except Exception as err:  # noqa: BLE001 - yaml's errors: one line
        raise ConfigError(f"preset {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups:
        raise ConfigError(f"preset {str(path)!r} must hold a non-empty list under 'groups'")
    names = set()
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise ConfigError(f"preset {str(path)!r}: groups[{i}] must be a mapping")
        unknown = sorted(set(group) - _GROUP_KEYS)
        if unknown:
            raise ConfigError(
                f"preset {str(path)!r}: groups[{i}] has unknown key {unknown[0]!r} (expected {sorted(_GROUP_KEYS)})"
            )
        for key in ("name", "config"):
            if not isinstance(group.get(key), str) or not group[key]:
                raise ConfigError(f"preset {str(path)!r}: groups[{i}].{key} is required (a string)")
        if group["name"] in names or "/" in group["name"]:
            raise ConfigError(f"preset {str(path)!r}: group name {group['name']!r} is repeated or contains '/'")
        names.add(group["name"])
    return path, groups, no_ablation


def _given(argv: list[str], option: str) -> bool:
    return any(a == f"--{option}" or a.startswith(f"--{option}=") for a in argv)


def preset_groups(sweep, argv: list[str] | None, root: Path, parser, grid) -> list[Any]:
    """The :class:`recipes.sweep.SweepGroup` of each preset group, configured from its YAML file and ``argv``."""
    from recipes.sweep import SweepGroup  # recipes.sweep imports this module: a module-level import is a cycle

    argv = list(sys.argv[1:] if argv is None else argv)
    if _given(argv, "config"):
        raise ConfigError("--preset and --config are exclusive: a preset names each group's config")
    path, specs, no_ablation = load_preset(sweep.preset)
    groups = []
    for spec in specs:
        config = (path.parent / spec["config"]).resolve()
        if not config.is_file():
            raise ConfigError(f"preset {str(path)!r}: group {spec['name']!r} names config {str(config)!r}, not a file")
        extra = {}
        if sweep.dry_run and not _given(argv, "data_dir"):
            # A dry run plans without the corpora: any existing folder stands in for --data_dir.
            extra["data_dir"] = tempfile.gettempdir()
        group_sweep, base = parser.parse(["--config", str(config), *argv], extra_defaults=extra)
        for option in _GRID_OPTIONS:
            if not _given(argv, option) and spec.get(option) is not None:
                setattr(group_sweep, option, str(spec[option]))
        for option in _SWITCHES:
            if not _given(argv, option):
                setattr(group_sweep, option, bool(spec.get(option, False)))
        if no_ablation:
            group_sweep.ablation = False
        base = base.validate()
        rates, seeds, folds = grid(group_sweep, base)
        groups.append(
            SweepGroup(
                base, rates, seeds, folds, root / spec["name"], name=spec["name"], ablation=group_sweep.ablation,
                balance=group_sweep.balance, deviations=group_sweep.deviations,
            )
        )  # fmt: skip
    return groups


# ---------------------------------------------------------------------- ETA


def _shape_key(cfg) -> str:
    """Runs with equal keys cost the same per utterance and epoch: corpus shape and model size."""
    return json.dumps([cfg.corpus_shape, cfg.model.get("hidden_size"), cfg.model.get("num_hidden_layers")])


def _model_key(hidden, layers) -> str:
    return json.dumps([hidden, layers])


def corpus_utterances(cfg) -> int | None:
    """Utterances (every split) of ``cfg``'s corpus: the released size, or the synthetic generator's settings."""
    if not cfg.is_synthetic:
        size = CORPUS_SIZES.get(cfg.dataset)
        return None if size is None else size["utterances"]
    kwargs = cfg.dataset_kwargs or {}
    if kwargs.get("total_utterances"):
        return int(kwargs["total_utterances"])
    low, high = int(kwargs.get("min_utterances", 5)), int(kwargs.get("max_utterances", 20))
    return int(round(int(kwargs.get("num_conversations", 120)) * (low + high) / 2))


def _calibration_config(cfg, folder: Path):
    """A 2-epoch run of ``cfg`` itself (synthetic corpus) or of a small synthetic corpus shaped like ``cfg``'s
    corpus (feature dims, utterances per conversation), with ``cfg``'s model and batch size."""
    shape = cfg.corpus_shape
    changes: dict[str, Any] = {
        "epochs": 2, "stage1_epochs": 1, "output_dir": str(folder), "resume_from_checkpoint": None,
        "overwrite_output_dir": True, "report_to": "none", "progress": False, "push_to_hub": None,
        "protocol": "default", "selection": "validation", "selection_stage": 2, "fold": None, "mask_seed": None,
        "checkpoint_interval": 3600.0,
    }  # fmt: skip
    if cfg.is_synthetic:
        changes.pop("fold")
        return dataclasses.replace(cfg, **changes).validate()
    size = CORPUS_SIZES.get(shape)
    if size is None:
        return None
    conversations = 15
    mean = size["utterances"] / size["conversations"]
    longest = int(cfg.model.get("max_utterances") or 150)
    low, high = max(1, int(mean // 2)), min(longest, max(int(mean * 1.5), int(mean // 2) + 1))
    kwargs = {
        "num_conversations": conversations, "min_utterances": low, "max_utterances": high,
        "total_utterances": int(round(mean * conversations)), "dims": size["dims"],
    }  # fmt: skip
    if shape in ("iemocap4", "iemocap6"):
        kwargs["validation_fraction"] = 0.2
    changes.update(
        dataset="synthetic", dataset_config=shape, data_dir=None, dataset_kwargs=kwargs, missing_protocol="rate",
        missing_rate=0.3, observed_modalities=None,
    )  # fmt: skip
    if shape in ("iemocap4", "iemocap6"):
        changes["fold"] = "5"
    return dataclasses.replace(cfg, **changes).validate()


def _measure(cfg) -> float | None:
    """Seconds per utterance and epoch of ``cfg``'s cells, measured now with a calibration run (None when it
    cannot be)."""
    with tempfile.TemporaryDirectory(prefix="comp-sweep-calibration-") as folder:
        run = Path(folder) / "run"
        calib = _calibration_config(cfg, run)
        if calib is None:
            return None
        started = time.perf_counter()
        outcome = execute_cell(calib, run, calib.folds()[-1], label="calibration")
        seconds = time.perf_counter() - started
        if outcome["status"] != "done":
            return None
        provenance = json.loads((run / "provenance.json").read_text(encoding="utf-8"))
        utterances = sum(int(split["num_utterances"]) for split in provenance.values())
    return seconds / (calib.epochs * utterances)


def _from_timing(path: str) -> tuple[dict[str, float], float | None, str]:
    """Seconds per utterance and epoch per model size (hidden, layers), from a previous sweep's
    ``sweep_timing.json``; and how many cells it ran at once."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        per_cell = data["per_cell"]
        costs: dict[str, list[float]] = {}
        for entry in per_cell:
            if entry.get("epochs_trained") and entry.get("utterances"):
                key = _model_key(entry["hidden_size"], entry["num_hidden_layers"])
                costs.setdefault(key, []).append(entry["seconds"] / (entry["epochs_trained"] * entry["utterances"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"calibration file {path!r} is not a sweep_timing.json written by comp-sweep") from None
    busy = data.get("busy_seconds") or data.get("wall_seconds") or 0
    concurrency = data.get("cell_seconds_sum", 0) / busy if busy else None
    note = (
        f"from {path} ({data.get('cells')} cells, {data.get('backend')} backend, {data.get('workers')} worker(s), "
        f"{data.get('cells_per_hour')} cells/hour measured on {data.get('host')})"
    )
    return {k: sum(v) / len(v) for k, v in costs.items()}, concurrency, note


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def dry_run(groups, execution, *, calibration: str | None = None, list_cells: bool = False) -> dict[str, Any]:
    """Prints the sweep's cells, where each would run and an ETA; trains nothing (but the calibration run).

    Returns:
        ``{"cells": n, "finished": k, "eta_seconds": s, "source": "..."}``.
    """
    from recipes.sweep import _check_placement  # import cycle, as in preset_groups

    placements = _check_placement(execution, distributed=False)
    cells = [cell for group in groups for cell in group.plan()]
    finished = [cell_is_finished(c["run_dir"]) is not None for c in cells]
    todo = [c for c, done in zip(cells, finished) if not done]
    if execution.backend == "ray":
        gpus = execution.gpus_per_cell
        where_all = (
            f"a Ray task asking {execution.cpus_per_cell:g} CPU and "
            f"{'0.25 GPU on a GPU cluster, else 0' if gpus is None else f'{gpus:g}'} GPU, "
            f"{'on the cluster at ' + execution.address if execution.address else 'on a local Ray instance'}"
        )
        slots = max(1, int(usable_cores() // execution.cpus_per_cell)) if execution.address is None else None
    else:
        where_all = None
        slots = len(placements) or 1

    def where(position: int) -> str:
        if where_all is not None:
            return "Ray task"
        if not placements:
            return "this process (sequential)"
        return placements[position % len(placements)].describe()

    if list_cells:
        for position, cell in enumerate(todo):
            print(f"{cell_label(cell)} -> {where(position)}  [{cell['run_dir']}]")
    # ETA
    costs: dict[str, float] = {}  # seconds per utterance and epoch, per group shape
    if calibration is not None:
        by_model, concurrency, source = _from_timing(calibration)
        for group in groups:
            model = group.base.model
            value = by_model.get(_model_key(model.get("hidden_size"), model.get("num_hidden_layers")))
            if value is not None:
                costs[_shape_key(group.base)] = value
    else:
        concurrency, source = None, "measured now: a 2-epoch calibration run per corpus shape"
        for group in groups:
            key = _shape_key(group.base)
            if key not in costs:
                name = group.name or group.base.corpus_shape
                print(f"calibrating {name}: 2 epochs of a small corpus of its shape...", flush=True)
                value = _measure(group.base)
                if value is not None:
                    costs[key] = value
    if concurrency is None:
        concurrency = float(slots) if slots else None
    total = 0.0
    unknown = 0
    print(f"sweep plan: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run")
    for group in groups:
        group_todo = [c for c in todo if c in group.cells]
        cost, utterances = costs.get(_shape_key(group.base)), corpus_utterances(group.base)
        variants = len(dict.fromkeys(c["variant"] for c in group.cells))
        folds = [f for f in group.folds if f is not None]
        shape = (
            f"{variants} variant{'s' if variants > 1 else ''} x {len(group.rates)} rates x {len(group.seeds)} seeds"
            + (f" x {len(folds)} folds" if folds else "")
        )
        name = group.name or group.base.corpus_shape
        if cost is None or utterances is None:
            unknown += len(group_todo)
            estimate = "no calibration for this corpus shape and model"
        else:
            seconds = cost * utterances * group.base.epochs
            total += seconds * len(group_todo)
            estimate = f"~{_fmt_duration(seconds)} per cell ({group.base.epochs} epochs x {utterances} utterances)"
        print(f"  {name}: {len(group.cells)} cells ({shape}), {len(group_todo)} to run; {estimate}; {group.root}")
    if where_all is not None:
        print(f"each cell runs as {where_all}")
    elif placements:
        counts: dict[str, int] = {}
        for position in range(len(todo)):
            counts[where(position)] = counts.get(where(position), 0) + 1
        print("placement (cells handed to the next free worker; about):")
        for name, count in counts.items():
            print(f"  {name}: ~{count} cells")
    else:
        print("placement: every cell in this process, one after another")
    eta = total / concurrency if concurrency and unknown < len(todo) else float("nan")
    missing = f"; {unknown} cells without a calibration are not counted" if unknown else ""
    print(
        f"ETA: {_fmt_duration(eta)} on this machine ({len(todo)} cells, "
        f"{'unknown' if not concurrency else round(concurrency, 2)} at once; "
        f"speed {source}){missing}"
    )
    if total and math.isfinite(eta) and eta > 0:
        print(f"     = {3600.0 * (len(todo) - unknown) / eta:.1f} cells/hour")
    return {"cells": len(cells), "finished": len(cells) - len(todo), "eta_seconds": eta, "source": source}
