"""Train ComP with accelerate: two-stage schedule, per-epoch evaluation, checkpoints, model selection, Hub push.

Launch::

    accelerate launch --config_file recipes/accelerate_configs/default.yaml recipes/train.py   # synthetic corpus
    accelerate launch recipes/train.py --config recipes/configs/mosi.yaml --data_dir ~/data/GCNet
    accelerate launch recipes/train.py --config recipes/configs/iemocap4.yaml --data_dir ~/data/GCNet --fold all
    accelerate launch recipes/train.py --output_dir runs/x --resume_from_checkpoint latest
    ACCELERATE_USE_CPU=1 accelerate launch --config_file recipes/accelerate_configs/cpu_2proc.yaml recipes/train.py

Every option is a key of :class:`recipes.config.TrainConfig` (``--help`` lists them); model hyper-parameters are
``--model.<ComPConfig argument>``. This module is the command line: it parses and checks the options, then runs
the training loop of :mod:`recipes.trainer` (imported only then, with torch and accelerate, so that ``--help`` and a
bad option answer at once). A user error prints one line and exits with status 2, also under ``accelerate launch``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil


try:
    from recipes.config import RecipeError, TrainConfig, parse_train_args
except ModuleNotFoundError as _err:  # run as a file from a checkout that is neither installed nor on PYTHONPATH
    if _err.name != "recipes":
        raise
    sys.exit("error: the comp-emotion package is not importable: run `pip install -e .` in the repository, or put "
             "its root on PYTHONPATH")  # fmt: skip


__all__ = ["main", "train", "train_run", "default_output_dir"]

EXIT_USER_ERROR = 2


def default_output_dir(cfg: TrainConfig, stamp: str) -> Path:
    """``runs/<corpus>-<protocol>-seed<seed>-<stamp>`` (``runs/`` is git-ignored)."""
    corpus = cfg.dataset.replace("/", "--")
    if cfg.is_synthetic:
        corpus = f"synthetic-{cfg.dataset_config or 'iemocap4'}"
    protocol = f"mr{cfg.missing_rate:g}" if cfg.missing_protocol == "rate" else f"subset-{cfg.observed_modalities}"
    if cfg.protocol != "default":
        protocol += f"-{cfg.protocol}"
    fold = f"-fold{cfg.fold}" if cfg.fold is not None else ""
    return Path("runs") / f"{corpus}-{protocol}{fold}-seed{cfg.seed}-{stamp}"


def train_run(cfg: TrainConfig, run_dir: Path, fold: int | None = None) -> dict[str, Any]:
    """Trains one model (one fold) in ``run_dir`` and returns its final summary (:func:`recipes.trainer.train_run`)."""
    from recipes import trainer  # the training stack (torch, accelerate, the model): only once a run starts

    return trainer.train_run(cfg, run_dir, fold)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Runs a configuration: one run, or one per IEMOCAP fold (:func:`recipes.trainer.train`)."""
    from recipes import trainer  # the training stack (torch, accelerate, the model): only once a run starts

    return trainer.train(cfg, default_output_dir)


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def _launcher_pid() -> int | None:
    """The pid of the ``accelerate launch`` process that started this one (which sets ``ACCELERATE_DYNAMO_BACKEND``
    for its children, one process or several), or None."""
    if "ACCELERATE_DYNAMO_BACKEND" not in os.environ:
        return None
    try:
        parent = psutil.Process(os.getppid())
        args = parent.cmdline()
    except (psutil.Error, OSError):
        return None
    launcher = any("accelerate" in a for a in args) and any(a == "launch" or a.endswith(".launch") for a in args)
    return parent.pid if launcher else None


def _stop_the_launcher() -> None:
    """After a user error under ``accelerate launch``: stop the launcher with SIGTERM, on which it exits (status 143)
    without a word, instead of letting it turn this process's exit status into a traceback (its simple launcher
    raises ``CalledProcessError`` with the child's stderr again, torchrun ``ChildFailedError``). Under torchrun the
    elastic agent still logs that it stops its workers (its own warning lines); the other ranks, which met the same
    error, wait for that instead of exiting first."""
    launcher = _launcher_pid()
    if launcher is None:
        return
    if _rank() != 0:
        time.sleep(5)  # rank 0 stops the launcher, which then stops this process
        return
    time.sleep(0.3)  # the launcher copies the error line from this process's stderr first
    os.kill(launcher, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``comp-train``): 0 on success, 2 after printing a user error in one line (under
    ``accelerate launch``, the launcher is stopped so that it adds no traceback; it then exits with status 143)."""
    try:
        cfg = parse_train_args(argv)
        train(cfg)
    except RecipeError as err:
        if _rank() == 0:  # the same error on every process of a launch: said once
            print(f"error: {err}", file=sys.stderr, flush=True)
        _stop_the_launcher()
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
