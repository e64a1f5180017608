"""`comp-sweep --workers N`: cells on long-lived local worker processes, the paper preset and `--dry_run`."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from recipes_helpers import REPO, TINY, repo_env, with_args

from recipes.config import ConfigError
from recipes.sweep import main as sweep_main
from recipes.sweep_pool import plan_placement
from recipes.sweep_worker import read_attempts


TINY_SWEEP = with_args(TINY, epochs=2, stage1_epochs=1)


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_workers_give_the_sequential_numbers_bit_exactly(tmp_path, capsys):
    """Two worker processes produce byte-identical results to the same cells run one after another."""
    grid = ["--missing_rates", "0.0,0.5", "--seeds", "0,1"]
    assert sweep_main(TINY_SWEEP + grid + ["--output_dir", str(tmp_path / "seq")]) == 0
    assert sweep_main(TINY_SWEEP + grid + ["--workers", "2", "--output_dir", str(tmp_path / "par")]) == 0
    out = capsys.readouterr().out
    assert "worker 0 (CPU, 1 thread)" in out and "worker 1 (CPU, 1 thread)" in out
    assert "sweep: 4 of 4 cells finished, 0 failed, 0 not run" in out
    assert "tables: " in out and "table.md" in out and "plots:  " in out
    seq, par = (tmp_path / "seq" / "results.csv").read_text(), (tmp_path / "par" / "results.csv").read_text()
    assert len(_rows(tmp_path / "par" / "results.csv")) == 4
    assert seq == par
    assert (tmp_path / "seq" / "table.md").read_text() == (tmp_path / "par" / "table.md").read_text()
    # Each cell: its own folder and log, one attempt; the workers were two processes, neither the sweep's own.
    pids = set()
    for cell in (tmp_path / "par" / "cells").rglob("metrics.json"):
        attempts = read_attempts(cell.parent)
        assert [a["event"] for a in attempts] == ["start", "end"] and attempts[1]["status"] == "done"
        assert attempts[0]["start_epoch"] == 0 and attempts[1]["epochs_after"] == 2
        pids.add(attempts[0]["pid"])
        log = (cell.parent / "train.log").read_text()
        assert "selected model:" in log and "cell ComP, MR" in log
    assert len(pids) == 2 and os.getpid() not in pids
    timing = json.loads((tmp_path / "par" / "sweep_timing.json").read_text())
    assert timing["workers"] == 2 and timing["cells"] == 4 and timing["cells_per_hour"] > 0
    # A rerun finds every cell finished and starts no worker.
    assert sweep_main(TINY_SWEEP + grid + ["--workers", "2", "--output_dir", str(tmp_path / "par")]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 cells already finished" in out and "worker 0" not in out
    assert (tmp_path / "par" / "results.csv").read_text() == par


def test_corpus_cache_keeps_the_numbers(tmp_path, monkeypatch):
    """A worker's cached corpus (cells sharing data) gives the same run as a freshly loaded one."""
    import recipes.common as common
    from recipes.config import parse_train_args
    from recipes.sweep_worker import execute_cell, install_data_cache

    monkeypatch.setattr(common, "_LOADED_CORPORA", None)  # no cache yet; the test's cache is dropped after it
    calls = []
    original = common._load_corpus

    def counting(cfg, fold=None):
        calls.append(fold)
        return original(cfg, fold)

    monkeypatch.setattr(common, "_load_corpus", counting)  # the loads the cache lets through
    install_data_cache()
    cfg = parse_train_args(TINY_SWEEP + ["--output_dir", str(tmp_path / "a")])
    first = execute_cell(cfg, tmp_path / "a", None, redirect=False)
    second = execute_cell(cfg, tmp_path / "b", None, redirect=False)
    assert len(calls) == 1  # loaded once
    assert first["status"] == second["status"] == "done"
    assert first["final"]["test"] == second["final"]["test"]
    assert first["final"]["validation"] == second["final"]["validation"]


def test_workers_beyond_the_hardware_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"workers=3 is more than this machine's 2 CPU cores"):
        plan_placement(3, cores=2, gpus=0)
    with pytest.raises(ConfigError, match=r"workers=0 is invalid"):
        plan_placement(0, cores=2, gpus=0)
    # GPUs: workers round-robin over the devices (several share one), each with cores // N threads.
    placed = plan_placement(4, cores=16, gpus=2)
    assert [(p.gpu, p.threads) for p in placed] == [(0, 4), (1, 4), (0, 4), (1, 4)]
    assert sweep_main(TINY_SWEEP + ["--workers", "4096", "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "workers=4096" in err
    assert sweep_main(TINY_SWEEP + ["--workers", "2", "--backend", "ray", "--output_dir", str(tmp_path)]) == 2
    assert "workers=2 applies to --backend local" in capsys.readouterr().err


def _preset(tmp_path, bad_dim):
    """A two-group preset of synthetic cells; the second group's model contradicts the corpus when bad_dim."""
    base = with_args(TINY_SWEEP)
    kwargs = json.loads(base[base.index("--dataset_kwargs") + 1])
    for name in ("good", "bad"):
        text = {
            "dataset": "synthetic", "dataset_config": "iemocap4", "dataset_kwargs": kwargs,
            "model": {"max_utterances": 8, **({"audio_dim": 99} if name == "bad" and bad_dim else {})},
        }  # fmt: skip
        (tmp_path / f"{name}.yaml").write_text(json.dumps(text))
    preset = {
        "groups": [
            {"name": "good", "config": "good.yaml", "missing_rates": "0.0,0.5", "seeds": "0"},
            {"name": "bad", "config": "bad.yaml", "missing_rates": "0.5", "seeds": "0"},
        ]
    }
    path = tmp_path / "preset.yaml"
    path.write_text(json.dumps(preset))
    return path


def _without(args, *names):
    out = list(args)
    for name in names:
        i = out.index(f"--{name}")
        del out[i : i + 2]
    return out


def test_preset_groups_and_a_failing_cell(tmp_path, capsys):
    """A preset's groups each get their tables; a cell that fails is one line naming it, the finished ones are
    kept, the sweep says how to resume, and the rerun (fixed) runs only the missing cell."""
    preset = _preset(tmp_path, bad_dim=True)
    args = _without(TINY_SWEEP, "dataset", "dataset_config", "dataset_kwargs", "model.max_utterances")
    args += ["--preset", str(preset), "--output_dir", str(tmp_path / "out")]
    assert sweep_main(args) == 1
    captured = capsys.readouterr()
    failed = [line for line in captured.out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "bad: ComP, MR 0.50, seed 0" in failed[0] and "audio_dim=99" in failed[0]
    assert "sweep: 2 of 3 cells finished, 1 failed, 0 not run" in captured.out
    assert "to resume: comp-sweep " in captured.out and "--preset" in captured.out
    assert len(_rows(tmp_path / "out" / "good" / "results.csv")) == 2
    assert (tmp_path / "out" / "good" / "table.md").is_file()
    assert not (tmp_path / "out" / "bad" / "results.csv").exists()
    assert "error: model.audio_dim=99" in (tmp_path / "out" / "bad" / "cells" / "comp" / "mr0.50" / "seed0" /
                                            "train.log").read_text()  # fmt: skip
    # Fixed, the same command runs the one missing cell.
    _preset(tmp_path, bad_dim=False)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "good").rglob("model.safetensors")}
    assert sweep_main(args) == 0
    out = capsys.readouterr().out
    assert "2 of 3 cells already finished" in out and "sweep: 3 of 3 cells finished" in out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "good").rglob("model.safetensors")} == stamps
    assert len(_rows(tmp_path / "out" / "bad" / "results.csv")) == 1


def test_paper_preset_dry_run(tmp_path, capsys):
    """`--preset paper --dry_run`: Table 1 and Table 3's cells, placement, and an ETA from a recorded timing."""
    timing = {
        "host": "here", "backend": "local", "workers": 2, "wall_seconds": 100.0, "cells": 2, "cells_per_hour": 72.0,
        "cell_seconds_sum": 190.0, "busy_seconds": 100.0,
        "per_cell": [
            {"cell": "x", "corpus": "mosi", "synthetic": True, "utterances": 1000, "epochs_trained": 10,
             "seconds": seconds, "hidden_size": 256, "num_hidden_layers": 4, "batch_size": 32}
            for seconds in (90.0, 100.0)
        ],
    }  # fmt: skip
    path = tmp_path / "sweep_timing.json"
    path.write_text(json.dumps(timing))
    common = ["--output_dir", str(tmp_path / "paper"), "--dry_run", "--calibration", str(path)]
    assert sweep_main(["--preset", "paper", "--workers", "2", *common]) == 0
    out = capsys.readouterr().out
    assert "sweep plan: 2400 cells, 0 already finished, 2400 to run" in out
    assert "iemocap4: 1000 cells (5 variants x 8 rates x 5 seeds x 5 folds)" in out
    assert "mosi: 200 cells (5 variants x 8 rates x 5 seeds)" in out
    assert "worker 0 (CPU, 1 thread): ~1200 cells" in out and "worker 1 (CPU, 1 thread): ~1200 cells" in out
    # 9.5 ms per utterance and epoch (the recorded cells' mean, same model); 1.9 cells ran at once
    work = 1000 * 200 * 5531 + 1000 * 200 * 7433 + 200 * 300 * 2199 + 200 * 100 * 22856  # cells x epochs x utterances
    seconds = 0.0095 * work / 1.9
    hours, rest = divmod(int(round(seconds)), 3600)
    assert f"ETA: {hours} h {rest // 60:02d} min" in out and str(path) in out
    assert not (tmp_path / "paper").exists()  # a dry run writes nothing
    assert sweep_main(["--preset", "paper-table1", "--list_cells", *common]) == 0
    out = capsys.readouterr().out
    assert "sweep plan: 480 cells" in out
    lines = [line for line in out.splitlines() if "-> this process (sequential)" in line]
    assert len(lines) == 480 and "iemocap6: ComP, MR 0.70, seed 4, fold 5" in lines[399]


def test_dry_run_calibrates_when_no_timing_is_given(tmp_path, capsys):
    args = TINY_SWEEP + ["--missing_rates", "0.0:0.7:0.1", "--seeds", "0,1", "--output_dir", str(tmp_path / "s")]
    assert sweep_main(args + ["--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "calibrating" in out and "sweep plan: 16 cells" in out
    assert "speed measured now: a 2-epoch calibration run" in out and "cells/hour" in out
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_killed_worker_cell_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a local worker mid-cell: the cell is rerun on a fresh worker from its last checkpoint; no cell is
    lost or finished twice, and the killed cell ends with the uninterrupted run's numbers."""
    _kill_mid_cell(tmp_path, ["--workers", "2"])


def _kill_cell_args(tmp_path, backend_args):
    kwargs = {"num_conversations": 60, "min_utterances": 2, "max_utterances": 6, "dims": {"audio": 8, "text": 8,
              "video": 8}}  # fmt: skip
    cell_args = with_args(TINY, epochs=8, stage1_epochs=2, checkpoint_interval=0, dataset_kwargs=json.dumps(kwargs))
    root = tmp_path / "sweep"
    args = cell_args + ["--missing_rates", "0.3", "--seeds", "0,1,2", "--output_dir", str(root), *backend_args]
    return cell_args, root, args


def _run_and_kill(args, root):
    """Runs the sweep command ``args`` and SIGKILLs the process running the first cell seen mid-run (3 epochs
    done); returns (exit code, output, the cell's folder, epochs it had done)."""
    proc = subprocess.Popen([sys.executable, str(REPO / "recipes" / "sweep.py"), *args], env=repo_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    victim, killed_at = None, None
    deadline = time.monotonic() + 240
    try:
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            for metrics in root.glob("cells/*/*/*/metrics.json"):
                try:
                    record = json.loads(metrics.read_text())
                except ValueError:
                    continue
                attempts = read_attempts(metrics.parent)
                if not record.get("finished") and len(record.get("epochs", [])) >= 3 and attempts:
                    victim = metrics.parent
                    os.kill(attempts[-1]["pid"], signal.SIGKILL)
                    killed_at = len(record["epochs"])
                    break
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert victim is not None, "no cell was caught mid-run"
    return proc.returncode, out, victim, killed_at


def _kill_mid_cell(tmp_path, backend_args):
    cell_args, root, args = _kill_cell_args(tmp_path, backend_args)
    returncode, out, victim, killed_at = _run_and_kill(args, root)
    assert returncode == 0, out[-3000:]
    _check_resumed_once(tmp_path, cell_args, root, victim, killed_at, attempts_of_victim=2)
    return out


def _check_resumed_once(tmp_path, cell_args, root, victim, killed_at, attempts_of_victim):
    rows = _rows(root / "results.csv")
    assert sorted(r["seed"] for r in rows) == ["0", "1", "2"]  # every cell, once
    for metrics in root.glob("cells/*/*/*/metrics.json"):
        record = json.loads(metrics.read_text())
        assert record["finished"] and len(record["epochs"]) == 8
        attempts = read_attempts(metrics.parent)
        starts = [a for a in attempts if a["event"] == "start"]
        ends = [a for a in attempts if a["event"] == "end"]
        if metrics.parent != victim:
            assert len(starts) == len(ends) == 1 and ends[0]["epochs_after"] == 8  # computed once
            continue
        assert len(starts) == attempts_of_victim and starts[0]["pid"] != starts[-1]["pid"]
        assert [e["status"] for e in ends] == ["done"]
        resumed_at = starts[-1]["start_epoch"]
        assert 1 <= resumed_at <= killed_at  # resumed from a checkpoint, not from scratch
        assert killed_at - resumed_at <= 1  # at most the epoch the kill interrupted is trained again
        assert "resumed from" in (victim / "train.log").read_text()
    # the resumed cell's numbers are those of the same cell run uninterrupted
    from recipes.config import parse_train_args
    from recipes.train import train_run

    seed = victim.name.removeprefix("seed")
    fresh = train_run(parse_train_args(with_args(cell_args, seed=seed, output_dir=tmp_path / "fresh")),
                      tmp_path / "fresh", None)  # fmt: skip
    row = next(r for r in rows if r["seed"] == seed)
    assert float(row["accuracy"]) == fresh["test"]["accuracy"]
    assert float(row["unweighted_accuracy"]) == fresh["test"]["unweighted_accuracy"]


@pytest.mark.slow
def test_cell_whose_worker_dies_every_time(tmp_path):
    """`--max_retries 0`: the cell whose worker is killed fails with one line naming it; the other cells finish and
    are kept, the sweep prints how to resume, and the same command then finishes the cell from its checkpoint."""
    cell_args, root, args = _kill_cell_args(tmp_path, ["--workers", "2", "--max_retries", "0"])
    returncode, out, victim, killed_at = _run_and_kill(args, root)
    assert returncode == 1, out[-3000:]
    seed = victim.name.removeprefix("seed")
    failed = [line for line in out.splitlines() if line.startswith("failed: ")]
    assert failed == [
        f"failed: ComP, MR 0.30, seed {seed}: its worker died (exit code -9) on each of 1 attempts "
        f"(log: {victim / 'train.log'})"
    ]
    assert "sweep: 2 of 3 cells finished, 1 failed, 0 not run" in out and "to resume: comp-sweep " in out
    assert len(_rows(root / "results.csv")) == 2
    rerun = subprocess.run([sys.executable, str(REPO / "recipes" / "sweep.py"), *args], env=repo_env(),
                           capture_output=True, text=True, timeout=400)  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "2 of 3 cells already finished" in rerun.stdout
    _check_resumed_once(tmp_path, cell_args, root, victim, killed_at, attempts_of_victim=2)
