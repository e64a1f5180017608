"""``python -m hub_datasets``: help, writing a synthetic corpus, info, publish."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hub_datasets.__main__ import main


REPO_ROOT = Path(__file__).resolve().parents[2]


def test_module_help_runs_as_a_subprocess():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "hub_datasets", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "write-synthetic" in out.stdout and "publish" in out.stdout


def test_write_info_and_publish(tmp_path, capsys):
    assert (
        main(
            [
                "write-synthetic",
                str(tmp_path / "raw"),
                "--config",
                "mosi",
                "--num-conversations",
                "10",
                "--dims",
                "3,4,5",
            ]
        )
        == 0
    )
    assert (tmp_path / "raw" / "CMUMOSI" / "CMUMOSI_features_raw_2way.pkl").is_file()
    assert (
        main(
            [
                "info",
                "mosi",
                "--data-dir",
                str(tmp_path / "raw"),
                "--missing-rate",
                "0.5",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train: 7 conversations" in out and '"corpus_label": "synthetic-mosi"' in out
    assert main(["publish", "synthetic", "--config", "mosi", "--output-dir", str(tmp_path / "repo")]) == 0
    assert (tmp_path / "repo" / "synthetic-mosi" / "test-00000-of-00001.parquet").is_file()
