"""`comp-sweep --backend ray` on a local Ray instance of 2 CPU workers."""

import socket
import subprocess
import sys
import time

import pytest
from recipes_helpers import TINY, repo_env, with_args
from test_sweep_workers import _kill_cell_args, _kill_mid_cell, _rows, _run_and_kill

from recipes.sweep import main as sweep_main


TINY_SWEEP = with_args(TINY, epochs=2, stage1_epochs=1)


def test_ray_missing_is_one_line(tmp_path):
    """Without Ray installed, `--backend ray` says which extra to install."""
    code = (
        "import importlib.abc, sys\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ray':\n"
        "            raise ImportError('ray is blocked')\n"
        "sys.meta_path.insert(0, _Block())\n"
        "from recipes.sweep import main\n"
        f"sys.exit(main({TINY_SWEEP + ['--backend', 'ray', '--output_dir', str(tmp_path)]!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=repo_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        "error: --backend ray needs Ray, which is not installed: pip install comp-emotion[cluster]"
    )


def test_ray_address_that_does_not_answer(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    args = TINY_SWEEP + ["--backend", "ray", "--address", f"127.0.0.1:{port}", "--output_dir", str(tmp_path)]
    assert sweep_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"the Ray cluster at --address '127.0.0.1:{port}' does not answer" in err
    assert time.monotonic() - started < 30


def test_ray_cells_match_sequential(tmp_path, capsys):
    """Cells as Ray tasks: the same results.csv as the sequential path; a rerun skips every finished cell."""
    pytest.importorskip("ray")
    grid = ["--missing_rates", "0.2", "--seeds", "0,1"]
    assert sweep_main(TINY_SWEEP + grid + ["--output_dir", str(tmp_path / "seq")]) == 0
    ray_args = TINY_SWEEP + grid + ["--backend", "ray", "--output_dir", str(tmp_path / "ray")]
    assert sweep_main(ray_args) == 0
    out = capsys.readouterr().out
    assert "Ray cluster: 2 CPU, 0 GPU" in out and "sweep: 2 of 2 cells finished" in out
    assert (tmp_path / "ray" / "results.csv").read_text() == (tmp_path / "seq" / "results.csv").read_text()
    assert len(_rows(tmp_path / "ray" / "results.csv")) == 2
    for log in (tmp_path / "ray" / "cells").rglob("train.log"):
        assert "selected model:" in log.read_text()
    assert sweep_main(ray_args) == 0  # the restarted driver submits nothing
    out = capsys.readouterr().out
    assert "2 of 2 cells already finished" in out and "Ray cluster" not in out


@pytest.mark.slow
def test_ray_worker_killed_mid_cell(tmp_path):
    """SIGKILL the Ray worker running a cell: Ray retries the task, which resumes from the cell's checkpoint;
    nothing is lost or computed twice."""
    pytest.importorskip("ray")
    out = _kill_mid_cell(tmp_path, ["--backend", "ray", "--max_retries", "2"])
    assert "Ray cluster: 2 CPU" in out


@pytest.mark.slow
def test_ray_cell_that_fails_every_retry(tmp_path):
    """`--max_retries 0` and the task's worker killed: one line naming the cell, the other cells kept."""
    pytest.importorskip("ray")
    _, root, args = _kill_cell_args(tmp_path, ["--backend", "ray", "--max_retries", "0"])
    returncode, out, victim, _ = _run_and_kill(args, root)
    assert returncode == 1, out[-3000:]
    seed = victim.name.removeprefix("seed")
    failed = [line for line in out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: ComP, MR 0.30, seed {seed}: ")
    assert "its worker died on each of 1 attempts" in failed[0]
    assert "sweep: 2 of 3 cells finished, 1 failed, 0 not run" in out and "to resume: comp-sweep " in out
    assert sorted(r["seed"] for r in _rows(root / "results.csv")) == sorted({"0", "1", "2"} - {seed})
