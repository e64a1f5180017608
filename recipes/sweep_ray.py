"""``comp-sweep --backend ray``: every cell a Ray task, on a local Ray instance or a running cluster.

Each cell asks for ``--cpus_per_cell`` CPUs and ``--gpus_per_cell`` GPUs (a fraction such as 0.25 puts four cells on
one GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` for the task). Ray reuses its worker processes, so the imports and the
corpus cache of a worker serve every cell it runs. A worker that dies mid-cell (killed, out of memory, node lost)
has its task retried by Ray up to ``--max_retries`` times; the retry resumes from the cell's newest checkpoint
(``checkpoint_every`` epochs). A cell whose run raises is not retried (the same configuration fails the same way).

Ray is an optional dependency: ``pip install comp-emotion[cluster]``. On a cluster every node needs the package
(and the corpus under the same ``--data_dir``) and a shared file system for ``--output_dir``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from recipes.config import ConfigError
from recipes.sweep_worker import execute_cell, install_data_cache, usable_cores


__all__ = ["connect", "run_ray", "ray_cell"]

INSTALL_HINT = "pip install comp-emotion[cluster]"
_JOINED_HERE = {"ray": False}  # whether connect() called ray.init (then run_ray shuts it down at the end)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` (optionally ``ray://``) → (host, port); None for addresses Ray resolves itself."""
    text = address.split("://", 1)[-1].strip().rstrip("/")
    if ":" not in text:
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--address {address!r} is invalid: expected auto, host:port or ray://host:port")
    return host.strip("[]"), int(port)


def connect(address: str | None, *, num_cpus: int | None = None, timeout: float = 15.0) -> dict[str, float]:
    """Joins the Ray cluster at ``address`` (``auto``: the one running on this machine's network), or starts a
    local instance with ``num_cpus`` CPUs and no dashboard. Returns the cluster's resources.

    Raises:
        ConfigError: one line naming the address when nothing answers there within ``timeout`` seconds.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    _JOINED_HERE["ray"] = True
    if address is not None and address != "local":
        target = _host_port(address)
        if target is not None:
            try:
                socket.create_connection(target, timeout=timeout).close()
            except OSError as err:
                reason = err.strerror or type(err).__name__
                raise ConfigError(
                    f"the Ray cluster at --address {address!r} does not answer ({reason}, waited up to {timeout:g} s)"
                ) from None
        # ray.init retries for a minute or more against an address that accepts connections but is no Ray
        # cluster: it runs in a thread that is given up after `timeout` seconds.
        outcome: dict[str, BaseException | None] = {}

        def join() -> None:
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
                outcome["error"] = None
            except BaseException as err:  # noqa: BLE001 - reported below, in one line
                outcome["error"] = err

        thread = threading.Thread(target=join, name="comp-sweep-ray-connect", daemon=True)
        thread.start()
        thread.join(timeout)
        if "error" not in outcome:
            raise ConfigError(
                f"the Ray cluster at --address {address!r} does not answer (no Ray reply within {timeout:g} s)"
            )
        err = outcome["error"]
        if err is not None:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot join the Ray cluster at --address {address!r}: {first}") from None
    else:
        ray.init(
            num_cpus=num_cpus or usable_cores(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return dict(ray.cluster_resources())


def ray_cell(cfg, run_dir: str, fold: int | None, label: str, threads: int) -> dict[str, Any]:
    """The Ray task of one cell (a module-level function: Ray workers import it from the installed package)."""
    install_data_cache()
    return execute_cell(cfg, run_dir, fold, label=label, threads=threads)


def run_ray(
    cells: list[dict[str, Any]],
    todo: Iterable[int],
    *,
    on_event: Callable[[str, int, dict[str, Any] | None], None],
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_cell: float = 1.0,
    gpus_per_cell: float | None = None,
    max_retries: int = 2,
    label_of: Callable[[dict[str, Any]], str] = str,
    stop_after_failures: int | None = None,
    shutdown: bool = True,
) -> dict[str, float]:
    """Submits the cells ``todo`` as Ray tasks and reports each as it ends (``on_event`` as in
    :func:`recipes.sweep_pool.run_local_pool`; ``"start"`` is sent when a task can hold resources, Ray does not
    say when it really starts). ``gpus_per_cell`` None: 0.25 on a cluster with GPUs (four small cells share one),
    else 0. Returns the cluster's resources."""
    ray = _import_ray()
    resources = connect(address, num_cpus=num_cpus)
    try:
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if gpus_per_cell is None:
            gpus_per_cell = 0.25 if gpus > 0 else 0.0
        if cpus < cpus_per_cell or (gpus_per_cell > 0 and gpus < gpus_per_cell):
            raise ConfigError(
                f"no node can hold one cell: it asks for {cpus_per_cell:g} CPU and {gpus_per_cell:g} GPU, the "
                f"cluster has {cpus:g} CPU and {gpus:g} GPU"
            )
        slots = int(cpus // cpus_per_cell)
        if gpus_per_cell > 0:
            slots = min(slots, int(gpus // gpus_per_cell + 1e-9))
        task = ray.remote(ray_cell).options(
            num_cpus=cpus_per_cell,
            num_gpus=gpus_per_cell,
            max_retries=max_retries,
            retry_exceptions=False,
            name="comp-sweep-cell",
        )
        threads = max(1, int(cpus_per_cell))
        waiting = list(todo)
        running: dict[Any, int] = {}
        finished = failed = 0

        def submit() -> None:
            # Only as many tasks in flight as the cluster can run: a stopped sweep leaves the rest unsubmitted.
            while waiting and len(running) < max(1, slots):
                if stop_after_failures and failed >= stop_after_failures and not finished:
                    return
                index = waiting.pop(0)
                cell = cells[index]
                ref = task.remote(cell["cfg"], str(cell["run_dir"]), cell["fold"], label_of(cell), threads)
                running[ref] = index
                on_event("start", index, None)

        submit()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in ready:
                index = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as err:
                    kind = type(err).__name__
                    outcome = {
                        "status": "failed",
                        "error": f"{kind}: its worker died on each of {max_retries + 1} attempts"
                        if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError,
                                            ray.exceptions.NodeDiedError))
                        else f"{kind}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}",
                    }  # fmt: skip
                if outcome.get("status") == "done":
                    finished += 1
                    on_event("done", index, outcome)
                else:
                    failed += 1
                    on_event("failed", index, outcome)
            submit()
            time.sleep(0)
        return resources
    finally:
        if shutdown and _JOINED_HERE["ray"]:  # a Ray session of the caller's own is left running
            _JOINED_HERE["ray"] = False
            ray.shutdown()
