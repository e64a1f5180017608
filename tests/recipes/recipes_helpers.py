"""Shared helpers of the recipes tests: tiny synthetic configurations and subprocess runners."""

import json
import os
import subprocess
import sys
from pathlib import Path

from package_blocker import BLOCK_PACKAGES  # noqa: F401 - re-exported for the recipes tests


REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "recipes" / "train.py"

# A tiny synthetic corpus and model: every epoch takes a fraction of a second on one CPU core.
TINY = [
    "--dataset", "synthetic", "--dataset_config", "iemocap4",
    "--dataset_kwargs", json.dumps({"num_conversations": 25, "min_utterances": 2, "max_utterances": 6,
                                    "dims": {"audio": 8, "text": 8, "video": 8}}),
    "--missing_rate", "0.3", "--seed", "0",
    "--epochs", "3", "--stage1_epochs", "1", "--batch_size", "3", "--learning_rate", "0.01",
    "--model.hidden_size", "16", "--model.num_hidden_layers", "2", "--model.num_attention_heads", "2",
    "--model.max_utterances", "8", "--model.hidden_dropout_prob", "0.1",
    "--progress", "false", "--report_to", "none",
]  # fmt: skip


def with_args(base, **overrides):
    """``base`` argv with ``--key value`` pairs replaced or appended."""
    args = list(base)
    for key, value in overrides.items():
        flag = f"--{key}"
        if flag in args:
            args[args.index(flag) + 1] = str(value)
        else:
            args += [flag, str(value)]
    return args


def repo_env(**extra):
    """Environment for a subprocess that imports the repository without installation."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_train(args, cwd, env=None, timeout=300):
    """Runs ``python recipes/train.py ARGS`` and returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        cwd=cwd,
        env=env or repo_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
