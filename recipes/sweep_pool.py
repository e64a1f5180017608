"""``comp-sweep --workers N``: N long-lived worker processes on this machine, each on its share of the hardware.

The workers are started once per sweep (``spawn``: a clean interpreter, safe with CUDA) and pay the imports and
the set-up once; then each takes one cell at a time from the sweep's process, which hands an idle worker the next
cell, preferring one whose corpus that worker already holds (its cache keeps the last two corpora it loaded).
Placement: with CUDA, worker ``k`` sees GPU ``k mod G`` only (``CUDA_VISIBLE_DEVICES``), so ``N > G`` workers share
the GPUs, ``N / G`` per GPU; every worker gets ``cores // N`` CPU threads. A worker that dies mid-cell (killed,
out of memory) is replaced and its cell is run again up to ``max_retries`` times, resuming from the cell's newest
checkpoint.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from recipes.config import ConfigError
from recipes.sweep_worker import data_key, execute_cell, prepare_process, usable_cores


__all__ = ["LocalPool", "Placement", "plan_placement", "run_local_pool", "cell_label"]


@dataclass(frozen=True)
class Placement:
    """Where a worker runs: its index, its GPU (None: CPU) and its CPU thread budget."""

    worker: int
    gpu: int | None
    threads: int

    def describe(self) -> str:
        device = f"GPU {self.gpu}" if self.gpu is not None else "CPU"
        return f"worker {self.worker} ({device}, {self.threads} thread{'s' if self.threads > 1 else ''})"


def _gpu_count() -> int:
    """Visible CUDA devices, counted without initialising CUDA in this process (nvidia-smi / the environment)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def plan_placement(workers: int, *, cpu: bool = False, cores: int | None = None, gpus: int | None = None):
    """Each worker's GPU and thread budget.

    Args:
        workers: worker processes wanted.
        cpu: place every worker on the CPU even when GPUs exist.
        cores: CPU cores available (default: this process's).
        gpus: CUDA devices available (default: counted).

    Raises:
        ConfigError: ``workers`` < 1, or more workers than CPU cores (each worker drives its cells from one
            core at least, GPU or not).
    """
    cores = usable_cores() if cores is None else cores
    gpus = (0 if cpu else _gpu_count()) if gpus is None else gpus
    if workers < 1:
        raise ConfigError(f"workers={workers} is invalid: expected 1 or more worker processes")
    if workers > cores:
        raise ConfigError(
            f"workers={workers} is more than this machine's {cores} CPU core{'s' if cores > 1 else ''}: every "
            f"worker needs one core at least (GPUs: {gpus}); pass --workers {cores} or fewer"
        )
    threads = max(1, cores // workers)
    return [Placement(k, (k % gpus) if gpus else None, threads) for k in range(workers)]


def _worker_main(placement: Placement, tasks, results, log_path: str | None) -> None:
    """A worker process: set up once, then run the cells it is handed until it gets None."""
    if log_path is not None:  # what the worker prints between cells (its cells' output goes to their folders)
        descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.close(descriptor)
    try:
        gpu = None if placement.gpu is None else str(placement.gpu)
        prepare_process(placement.threads, gpu)
    except BaseException as err:  # noqa: BLE001 - reported to the sweep, which stops
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        results.put(("setup_failed", placement.worker, os.getpid(), None, message))
        return
    pid = os.getpid()
    results.put(("ready", placement.worker, pid, None, None))
    while True:
        item = tasks.get()
        if item is None:
            return
        index, cfg, run_dir, fold, label = item
        results.put(("start", placement.worker, pid, index, None))
        outcome = execute_cell(cfg, run_dir, fold, label=label, threads=placement.threads)
        results.put(("end", placement.worker, pid, index, outcome))


@dataclass
class _Worker:
    placement: Placement
    process: Any
    tasks: Any
    cell: int | None = None
    keys: list[str] = field(default_factory=list)
    ready: bool = False


class LocalPool:
    """The worker processes of a sweep, started at construction (their start-up overlaps whatever the sweep's
    process does next) and stopped by :meth:`close`."""

    def __init__(self, placements: list[Placement], log_dir: str | None = None):
        self.ctx = mp.get_context("spawn")
        self.results = self.ctx.Queue()
        self.log_dir = log_dir
        self.workers: dict[int, _Worker] = {p.worker: self._start(p) for p in placements}

    def _start(self, placement: Placement) -> _Worker:
        tasks = self.ctx.Queue()
        log = None if self.log_dir is None else os.path.join(self.log_dir, f"worker{placement.worker}.log")
        process = self.ctx.Process(
            target=_worker_main, args=(placement, tasks, self.results, log), name=f"comp-sweep-{placement.worker}"
        )
        process.daemon = True
        process.start()
        return _Worker(placement, process, tasks)

    def run(
        self,
        cells: list[dict[str, Any]],
        todo: Iterable[int],
        *,
        on_event: Callable[[str, int, dict[str, Any] | None], None],
        max_retries: int = 1,
        stop_after_failures: int | None = None,
    ) -> None:
        """Runs the cells ``todo`` (indices into ``cells``).

        ``on_event(kind, index, outcome)`` is called in this process with ``kind`` one of ``"start"``, ``"done"``,
        ``"retry"`` (its worker died; the cell is queued again), ``"failed"`` (outcome: ``execute_cell``'s record,
        or ``{"error": ...}`` when the cell's worker died more than ``max_retries`` times). ``stop_after_failures``:
        no new cell is handed out once that many cells failed without any finishing (a corpus that cannot be
        loaded fails every cell the same way).
        """
        workers, results = self.workers, self.results
        pending = list(todo)
        retries: dict[int, int] = {}
        counts = {"finished": 0, "failed": 0}

        def stopped() -> bool:
            return bool(stop_after_failures) and counts["failed"] >= stop_after_failures and not counts["finished"]

        def hand_out(worker: _Worker) -> None:
            if not pending or stopped() or not worker.ready:
                return
            keys = worker.keys
            pick = next((i for i in pending if data_key(cells[i]["cfg"], cells[i]["fold"]) in keys), pending[0])
            pending.remove(pick)
            cell = cells[pick]
            worker.cell = pick
            key = data_key(cell["cfg"], cell["fold"])
            worker.keys = [k for k in keys if k != key][-1:] + [key]
            worker.tasks.put((pick, cell["cfg"], str(cell["run_dir"]), cell["fold"], cell_label(cell)))

        for worker in workers.values():  # workers that became ready before the cells were known
            hand_out(worker)
        while (pending and not stopped()) or any(w.cell is not None for w in workers.values()):
            try:
                kind, wid, pid, index, payload = results.get(timeout=0.5)
            except queue.Empty:
                kind = None
            if kind is not None and workers[wid].process.pid != pid:
                kind = None  # from a worker that has since died and been replaced: its cell is being redone
            if kind == "setup_failed":
                raise ConfigError(f"sweep worker {wid} could not start: {payload}")
            if kind == "ready":
                workers[wid].ready = True
                hand_out(workers[wid])
            elif kind == "start":
                on_event("start", index, None)
            elif kind == "end":
                worker = workers[wid]
                worker.cell = None
                if payload["status"] == "done":
                    counts["finished"] += 1
                    on_event("done", index, payload)
                else:
                    counts["failed"] += 1
                    on_event("failed", index, payload)
                hand_out(worker)
            # A worker that died: replace it; its cell goes back to the queue (resuming from its checkpoint).
            for wid, worker in list(workers.items()):
                if worker.process.is_alive():
                    continue
                worker.process.join(timeout=1)
                lost, code = worker.cell, worker.process.exitcode
                if not worker.ready:  # died while starting: it would again
                    log = "" if self.log_dir is None else f"; see {os.path.join(self.log_dir, f'worker{wid}.log')}"
                    raise ConfigError(f"sweep worker {wid} died while starting (exit code {code}){log}")
                workers[wid] = self._start(worker.placement)
                if lost is None:
                    continue
                retries[lost] = retries.get(lost, 0) + 1
                if retries[lost] > max_retries:
                    counts["failed"] += 1
                    reason = f"its worker died (exit code {code}) on each of {retries[lost]} attempts"
                    on_event("failed", lost, {"status": "failed", "error": reason})
                else:
                    on_event("retry", lost, {"error": f"worker died (exit code {code})"})
                    pending.insert(0, lost)

    def close(self) -> None:
        """Asks every worker to stop, and stops those that do not within 10 s."""
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.tasks.put(None)
        deadline = time.monotonic() + 10
        for worker in self.workers.values():
            worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)


def run_local_pool(
    cells: list[dict[str, Any]],
    todo: Iterable[int],
    placements: list[Placement],
    *,
    on_event: Callable[[str, int, dict[str, Any] | None], None],
    max_retries: int = 1,
    log_dir: str | None = None,
    stop_after_failures: int | None = None,
) -> None:
    """Starts a :class:`LocalPool`, runs the cells ``todo`` on it (see :meth:`LocalPool.run`) and stops it."""
    pool = LocalPool(placements, log_dir)
    try:
        pool.run(cells, todo, on_event=on_event, max_retries=max_retries, stop_after_failures=stop_after_failures)
    finally:
        pool.close()


def cell_label(cell: dict[str, Any]) -> str:
    """``ComP, MR 0.30, seed 1, fold 2`` (a cell's name in progress lines and errors)."""
    where = f"MR {cell['missing_rate']:.2f}" if cell.get("alone") is None else f"only {cell['alone']}"
    fold = f", fold {cell['fold']}" if cell.get("fold") is not None else ""
    group = f"{cell['group']}: " if cell.get("group") else ""
    return f"{group}{cell['variant']}, {where}, seed {cell['seed']}{fold}"
