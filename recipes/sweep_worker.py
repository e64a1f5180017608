"""One sweep cell, run in whichever process holds it: a local worker of ``comp-sweep --workers N``, a Ray task, or
the sweep's own process.

A cell is an ordinary training run (:func:`recipes.train.train_run`) in its own folder. Whatever the run prints
goes to ``<cell>/train.log`` (appended: a retried or resumed cell adds to the same file), and every attempt
appends one line to ``<cell>/attempts.jsonl`` when it starts (process id, host, the epochs already in
``metrics.json``) and one when it ends (epochs done, seconds, outcome), so a cell's history can be read back:
which worker ran it, whether it was retried, and how many epochs each attempt trained.

Nothing heavy is imported at module level (the sweep's ``--help`` answers before torch is imported).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from recipes.config import RecipeError


__all__ = [
    "LOG_NAME",
    "ATTEMPTS_NAME",
    "cell_is_finished",
    "data_key",
    "execute_cell",
    "install_data_cache",
    "prepare_process",
    "read_attempts",
    "usable_cores",
]

LOG_NAME = "train.log"
ATTEMPTS_NAME = "attempts.jsonl"
_CACHE_SIZE = 2


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def cell_is_finished(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``final`` summary of a finished cell (``metrics.json`` says ``finished``), else None."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("finished") and isinstance(record.get("final"), dict):
        return record["final"]
    return None


def _epochs_done(run_dir: Path) -> int:
    path = run_dir / "metrics.json"
    try:
        return len(json.loads(path.read_text(encoding="utf-8")).get("epochs") or [])
    except (OSError, ValueError):
        return 0


def _resume_point(run_dir: Path) -> int:
    """The epoch a run in ``run_dir`` starts from: one after its newest complete checkpoint (0 without one)."""
    done = []
    for state in (run_dir / "checkpoints").glob("checkpoint_*/training_state.json"):
        suffix = state.parent.name.rsplit("_", 1)[-1]
        if suffix.isdigit():
            done.append(int(suffix) + 1)
    return max(done, default=0)


def read_attempts(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``<cell>/attempts.jsonl`` (start and end lines, in order)."""
    path = Path(run_dir) / ATTEMPTS_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _append_attempt(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / ATTEMPTS_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def data_key(cfg, fold) -> str:
    """What the corpus of a run depends on: runs with equal keys load identical data."""
    fields = {
        "dataset": cfg.dataset,
        "dataset_config": cfg.dataset_config,
        "data_dir": cfg.data_dir,
        "dataset_kwargs": cfg.dataset_kwargs,
        "mask_seed": cfg.resolved_mask_seed,
        "missing_protocol": cfg.missing_protocol,
        "missing_rate": cfg.missing_rate if cfg.missing_protocol != "subset" else None,
        "observed_modalities": cfg.observed_modalities if cfg.missing_protocol == "subset" else None,
        "selection": getattr(cfg, "selection", None),
        "fold": fold,
    }
    return json.dumps(fields, sort_keys=True, default=str)


def install_data_cache(maxsize: int = _CACHE_SIZE) -> None:
    """Keeps the last ``maxsize`` corpora this process loads, keyed by :func:`data_key` (a worker running cells that
    share data loads them once; see :func:`recipes.common.keep_loaded_corpora`). Idempotent."""
    from recipes.common import keep_loaded_corpora  # torch and the trainer's stack: imported in the worker only

    keep_loaded_corpora(maxsize, data_key)


def prepare_process(threads: int | None, cuda_device: str | None = None) -> None:
    """A worker's set-up, once: its GPU (``CUDA_VISIBLE_DEVICES``, before torch is imported), its CPU thread
    budget, the heavy imports and the corpus cache."""
    if cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_device
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    import accelerate  # noqa: F401 - the imports every cell would otherwise pay, paid once here

    import recipes.common  # noqa: F401
    import recipes.train  # noqa: F401

    install_data_cache()


@contextlib.contextmanager
def _output_to(path: Path):
    """Sends this process's stdout and stderr (file descriptors 1 and 2, so C libraries and child processes
    too) to ``path`` (appended), and restores them afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    handle = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in the finally below
    try:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            yield handle
    finally:
        with contextlib.suppress(Exception):
            handle.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        handle.close()


def execute_cell(
    cfg,
    run_dir: str | Path,
    fold: int | None,
    *,
    label: str = "",
    redirect: bool = True,
    threads: int | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Runs one cell here and reports how it went; never raises for a failing run.

    Args:
        cfg: the cell's validated ``TrainConfig`` (``resume_from_checkpoint="latest"``: an interrupted cell
            continues from its newest checkpoint).
        run_dir: the cell's folder.
        fold: IEMOCAP fold or None.
        label: the cell's name, written into its log.
        redirect: send the run's output to ``<run_dir>/train.log`` (False: leave it where it goes).
        threads: the CPU thread budget of this process's share of the machine (None: leave torch's setting).
            The cell runs with ``cfg.torch_threads`` threads (as it would on its own) when that fits the budget,
            else with the budget; unset ``torch_threads``: the budget.
        record: append the attempt to ``<run_dir>/attempts.jsonl`` (False on the other processes of a
            distributed run).

    Returns:
        ``{"status": "done", "final": ..., "seconds": ..., "epochs_trained": ...}`` or
        ``{"status": "failed", "error": "<one line>", ...}``.
    """
    from recipes.train import train_run

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start_epochs = _resume_point(run_dir) if cell_is_finished(run_dir) is None else _epochs_done(run_dir)
    started = time.time()
    if record:
        _append_attempt(
        run_dir,
        {"event": "start", "pid": os.getpid(), "host": socket.gethostname(), "start_epoch": start_epochs,
         "time": started},
    )  # fmt: skip
    result: dict[str, Any]
    context = _output_to(run_dir / LOG_NAME) if redirect else contextlib.nullcontext()
    with context:
        if redirect:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"==== {stamp} cell {label or run_dir} (pid {os.getpid()}, starting at epoch {start_epochs})")
        try:
            if threads is not None:
                import torch

                torch.set_num_threads(min(cfg.torch_threads, threads) if cfg.torch_threads else threads)
            final = train_run(cfg, run_dir, fold)
            result = {"status": "done", "final": final}
        except RecipeError as err:
            result = {"status": "failed", "error": str(err).splitlines()[0] if str(err) else type(err).__name__}
            print(f"error: {result['error']}", flush=True)
        except Exception as err:  # noqa: BLE001 - a cell's failure is reported, the sweep goes on
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            result = {"status": "failed", "error": f"{type(err).__name__}: {first}".rstrip(": ")}
            traceback.print_exc()
    seconds = time.time() - started
    end_epochs = _epochs_done(run_dir)
    result.update(seconds=seconds, epochs_trained=max(0, end_epochs - start_epochs), pid=os.getpid())
    if record:
        _append_attempt(
        run_dir,
        {"event": "end", "pid": os.getpid(), "status": result["status"], "epochs_after": end_epochs,
         "seconds": round(seconds, 3)},
    )  # fmt: skip
    return result
