"""Missing-rate × seed sweeps: resumable cells, the paper's table layout, plots, balance view and ablation."""

import csv
import json

import pytest
from recipes_helpers import TINY, with_args

from recipes.sweep import main as sweep_main


TINY_SWEEP = with_args(TINY, epochs=2, stage1_epochs=1)


def test_sweep_tables_plots_balance_and_resume(tmp_path, capsys):
    root = tmp_path / "sweep"
    args = TINY_SWEEP + ["--missing_rates", "0.0,0.5", "--seeds", "0,1", "--balance", "--output_dir", str(root)]
    assert sweep_main(args) == 0
    printed = capsys.readouterr().out
    assert "[sweep 10/10]" in printed  # 2 rates x 2 seeds + 3 modalities alone x 2 seeds
    with open(root / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10
    grid = [r for r in rows if r["observed_modalities"] == ""]
    assert sorted({(r["missing_rate"], r["seed"]) for r in grid}) == [
        ("0.0", "0"),
        ("0.0", "1"),
        ("0.5", "0"),
        ("0.5", "1"),
    ]
    for r in grid:  # the cells really ran at their missing rate
        assert float(r["realised_missing_rate"]) == pytest.approx(float(r["missing_rate"]), abs=0.15)
    # Each table cell is the mean ± std (population) of that cell's seeds, in percent.
    cell = [float(r["accuracy"]) for r in grid if r["missing_rate"] == "0.5"]
    mean, std = sum(cell) / 2, abs(cell[0] - cell[1]) / 2
    table = (root / "table.md").read_text()
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in table
    assert "(synthetic)" in table and "| variant | MR 0.0 | MR 0.5 |" in table
    with open(root / "table.csv") as handle:
        table_rows = list(csv.reader(handle))
    assert table_rows[0] == ["variant", "metric", "0.00", "0.50"]
    assert (
        table_rows[1][:2] == ["ComP (synthetic)", "accuracy"]
        and table_rows[1][3] == f"{100 * mean:.2f} ± {100 * std:.2f}"
    )
    balance = (root / "balance.md").read_text()
    assert "| audio |" in balance and "| video |" in balance and "synthetic" in balance
    for png in ("accuracy_vs_missing_rate.png", "balance.png"):
        assert (root / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    alone = [r for r in rows if r["observed_modalities"] == "t"]
    assert len(alone) == 2

    # Rerunning the same command skips every finished cell (no new files, same numbers).
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("model.safetensors")}
    assert sweep_main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("model.safetensors")} == stamps
    with open(root / "results.csv") as handle:
        assert list(csv.DictReader(handle)) == rows


def test_sweep_ablation_table(tmp_path):
    root = tmp_path / "ablation"
    args = TINY_SWEEP + ["--missing_rates", "0.3", "--seeds", "0", "--ablation", "--output_dir", str(root)]
    assert sweep_main(args) == 0
    table = (root / "table.md").read_text()
    for variant in ("ComP", "w/o KP", "w/o PG", "w/o Cr", "w/o GM"):
        assert f"| {variant} (synthetic) |" in table
    cfg = json.loads((root / "cells" / "wo-kp" / "mr0.30" / "seed0" / "model" / "config.json").read_text())
    assert cfg["use_knowledge_propagation"] is False
    # One seed: the value alone, no "± 0.00" spread that was never measured.
    assert "±" not in table and "n = 1" in table
    with open(root / "results.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r["variant"] == "ComP")
    assert f"| ComP (synthetic) | {100 * float(row['accuracy']):.2f} / " in table
    # sweep.json: the base config's rate is marked overridden; the realised rate is recorded.
    record = json.loads((root / "sweep.json").read_text())
    assert record["config"]["missing_rate"] is None and "missing_rate" in record["overridden_by_sweep"]
    assert record["realised_test_missing_rates"]["0.30"] == f"{float(row['realised_missing_rate']):.3f}"


def test_sweep_bad_arguments(tmp_path, capsys):
    assert sweep_main(TINY_SWEEP + ["--missing_rates", "0.2:0.1:0.1", "--output_dir", str(tmp_path)]) == 2
    assert "missing_rates" in capsys.readouterr().err
    assert sweep_main(TINY_SWEEP + ["--missing_rates", "0.1"]) == 2
    assert "--output_dir is required" in capsys.readouterr().err
    assert sweep_main(TINY_SWEEP + ["--folds", "7", "--output_dir", str(tmp_path)]) == 2
    assert "fold 7" in capsys.readouterr().err


def test_sweep_deviation_cells(tmp_path):
    """`--deviations` plans the default method against the released behaviour and each fix undone (C.2)."""
    from recipes.config import parse_train_args
    from recipes.sweep import DEVIATIONS, plan_cells

    base = parse_train_args(TINY_SWEEP)
    cells = plan_cells(base, [0.3], [0, 1], [None], tmp_path, ablation=False, balance=False, deviations=True)
    assert [c["variant"] for c in cells[::2]] == list(DEVIATIONS)
    by_variant = {c["variant"]: c["cfg"].model for c in cells}
    assert by_variant["reference_compat"]["reference_compat"] is True
    assert by_variant["batch prototypes"]["prototype_scope"] == "batch"
    assert by_variant["w/o GM"]["use_gradient_modulation"] is False
    assert "reference_compat" not in by_variant["ComP"]
    assert len({str(c["run_dir"]) for c in cells}) == len(cells) == 8
