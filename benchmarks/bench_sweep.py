"""Cells per hour of one sweep, side by side in one run: one after another, on N local workers, as Ray tasks.

    python benchmarks/bench_sweep.py                                   # sequential, --workers 2, Ray (local)
    python benchmarks/bench_sweep.py --repeats 2 --json bench_sweep.json
    python benchmarks/bench_sweep.py --size mosi --variants sequential,workers2,workers4,workers8 --compile both

Every variant is the whole ``recipes/sweep.py`` command of this working tree, in a fresh process and a fresh
output folder, on the same cells (``--missing_rates`` x ``--seeds``; each cell a training run of ``--epochs``
epochs). Two figures per variant:

* ``command``: cells x 3600 / the command's wall-clock seconds (start-up, worker start-up, every cell, the tables
  and plots included): what a person waiting for the sweep gets;
* ``steady``: cells x 3600 / (last cell's end - first cell's start), read from the cells' ``attempts.jsonl``:
  without the sweep's own start-up, but with the workers' (a worker's first cells run while the others import);
* ``warm``: the cells started once every worker had finished its first cell, over the time from then to the
  last end: the rate a long sweep runs at after its start-up, which it pays once.

``--size synthetic`` (default): the built-in synthetic corpus and model of ``recipes/configs/synthetic.yaml``
(hidden 64, 120 conversations), a few seconds per cell. ``--size mosi``: a synthetic corpus of MOSI's size and
feature dims (93 videos, 2,199 utterances) with the README's MOSI model (hidden 256, 4 layers, 2 heads, batch 32):
the cells to measure on a GPU. ``--compile both`` runs every variant with and without ``--compile``.

The machine may be shared: the 1-minute load average is printed before and after every command, variants are
interleaved across ``--repeats`` so that a change of load hits all of them, and the "parallel capacity" (the work
two busy processes get done relative to one, 2.00 on two free cores) is measured at the start and the end: N
workers cannot run faster than that allows. On a machine with ``nvidia-smi`` the
GPU's utilisation is sampled every 0.5 s during each command and its mean and maximum printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "recipes" / "sweep.py"
DIMS = {"audio": 512, "text": 1024, "video": 1024}
SIZES = {
    "synthetic": [],
    "mosi": [
        "--dataset", "synthetic", "--dataset_config", "mosi",
        "--dataset_kwargs", json.dumps({"num_conversations": 93, "min_utterances": 9, "max_utterances": 63,
                                        "total_utterances": 2199, "dims": DIMS}),
        "--batch_size", "32", "--learning_rate", "1e-4",
        "--model.hidden_size", "256", "--model.num_hidden_layers", "4", "--model.num_attention_heads", "2",
        "--model.hidden_dropout_prob", "0.5", "--model.max_utterances", "65",
    ],
}  # fmt: skip


def load() -> float:
    return os.getloadavg()[0]


_SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(12_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def parallel_capacity() -> float:
    """How much more CPU work two busy processes get done than one, right now (2.0: two free cores; near 1.0:
    the machine's other jobs, or this session's CPU share, leave room for one). Measured with a pure-Python
    loop, one process alone then two at once."""

    def spin(count: int) -> list[float]:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE, text=True)
                 for _ in range(count)]  # fmt: skip
        return [float(p.communicate()[0]) for p in procs]

    alone = spin(1)[0]
    together = max(spin(2))
    return 2 * alone / together


def variant_args(name: str) -> list[str]:
    """``sequential`` | ``workers<N>`` | ``ray`` → the sweep's options."""
    if name == "sequential":
        return []
    if name.startswith("workers") and name[len("workers") :].isdigit():
        return ["--workers", name[len("workers") :]]
    if name == "ray":
        return ["--backend", "ray"]
    raise SystemExit(f"unknown variant {name!r}: expected sequential, workers<N> or ray")


class GpuSampler:
    """``nvidia-smi`` utilisation samples (percent) while a command runs; empty without nvidia-smi."""

    def __init__(self):
        self.samples: list[float] = []
        self.memory: list[float] = []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.splitlines()
                values = [[float(v) for v in line.split(",")] for line in out if line.strip()]
                if values:
                    self.samples.append(max(v[0] for v in values))
                    self.memory.append(sum(v[1] for v in values))
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.5)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        return {
            "util_mean": statistics.fmean(self.samples),
            "util_max": max(self.samples),
            "memory_max_mib": max(self.memory) if self.memory else None,
        }


def cell_times(root: Path) -> list[tuple[int, float, float, bool]]:
    """(worker pid, start, end, done) of each cell's last attempt, from the cells' ``attempts.jsonl``."""
    cells = []
    for path in root.rglob("attempts.jsonl"):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        starts = [r for r in records if r["event"] == "start"]
        end = next((r for r in reversed(records) if r["event"] == "end"), None)
        if starts and end is not None:
            cells.append(
                (starts[-1]["pid"], starts[-1]["time"], starts[-1]["time"] + end["seconds"], end["status"] == "done")
            )
    return cells


def steady_window(cells) -> float | None:
    """Seconds from the first cell's start to the last cell's end."""
    return max(c[2] for c in cells) - min(c[1] for c in cells) if cells else None


def warm_rate(cells) -> tuple[float | None, int]:
    """Cells per hour once every worker has finished its first cell (its imports, first-use costs and the other
    workers' start-up behind it): the cells started after that moment, over the time from it to the last end."""
    first_end: dict[int, float] = {}
    for pid, _start, end, _ in sorted(cells, key=lambda c: c[1]):
        first_end.setdefault(pid, end)
    if not first_end:
        return None, 0
    since = max(first_end.values())
    warm = [c for c in cells if c[1] >= since and c[3]]
    if not warm:
        return None, 0
    return 3600.0 * len(warm) / (max(c[2] for c in warm) - since), len(warm)


def run_variant(name: str, compiled: bool, args, scratch: Path, repeat: int) -> dict:
    out = scratch / f"{name}{'-compile' if compiled else ''}-{repeat}"
    command = [
        sys.executable, str(SWEEP), *SIZES[args.size], "--missing_rates", args.missing_rates, "--seeds", args.seeds,
        "--epochs", str(args.epochs), "--stage1_epochs", str(max(1, args.epochs // 2)), "--report_to", "none",
        "--progress", "false", "--checkpoint_interval", "3600", "--output_dir", str(out), *variant_args(name),
    ]  # fmt: skip
    if compiled:
        command += ["--compile", "true"]
    if args.train_args:
        command += args.train_args.split()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    before = load()
    started = time.perf_counter()
    with GpuSampler() as gpu:
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc = None
    wall = time.perf_counter() - started
    after = load()
    if proc is None:  # cut short: the cells it finished still count, over the time it was given
        print(f"  {name}{' --compile' if compiled else ''}: stopped after --timeout {args.timeout:g} s", flush=True)
    elif proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-1500:]
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{tail}")
    times = cell_times(out)
    steady, cells = steady_window(times), sum(1 for c in times if c[3])
    warm, warm_cells = warm_rate(times)
    record = {
        "variant": name + (" --compile" if compiled else ""),
        "repeat": repeat,
        "cells": cells,
        "timed_out": proc is None,
        "wall_s": wall,
        "command_cells_per_hour": 3600.0 * cells / wall,
        "steady_s": steady,
        "steady_cells_per_hour": 3600.0 * cells / steady if steady else None,
        "warm_cells_per_hour": warm,
        "warm_cells": warm_cells,
        "load_before": before,
        "load_after": after,
        "gpu": gpu.summary(),
    }
    if args.keep_timing is not None and (out / "sweep_timing.json").is_file():
        args.keep_timing.mkdir(parents=True, exist_ok=True)
        name_out = record["variant"].replace(" --", "-")
        shutil.copy(out / "sweep_timing.json", args.keep_timing / f"{name_out}.json")
    shutil.rmtree(out, ignore_errors=True)
    return record


def device_name() -> str:
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
            if out:
                return out.splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return f"CPU only ({os.cpu_count()} cores: {platform_cpu()})"


def platform_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="sequential,workers2,ray", help="sequential, workers<N>, ray")
    parser.add_argument("--size", choices=sorted(SIZES), default="synthetic")
    parser.add_argument("--missing_rates", default="0.0,0.2,0.4,0.6")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compile", choices=("no", "yes", "both"), default="no")
    parser.add_argument("--train_args", default="", help="extra training options for every cell, space-separated")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here (after every command)")
    parser.add_argument(
        "--keep_timing", type=Path, default=None, help="copy each variant's sweep_timing.json into this folder"
    )
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in names:
        variant_args(name)
    compiles = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    print(f"device: {device_name()}")
    print(
        f"cells: missing rates {args.missing_rates} x seeds {args.seeds}, {args.epochs} epochs each, "
        f"size {args.size}; "
        f"1-min load average now {load():.2f}",
        flush=True,
    )
    capacity = parallel_capacity()
    print(f"parallel capacity now: two busy processes do {capacity:.2f}x the work of one (2.00 = two free cores)")
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        for repeat in range(args.repeats):
            for compiled in compiles:
                for name in names:
                    record = run_variant(name, compiled, args, Path(scratch), repeat)
                    records.append(record)
                    if args.json:  # after every command: a run cut short keeps what it measured
                        write_json(args, records)
                    gpu = record["gpu"]
                    gpu_text = (
                        f", GPU util mean {gpu['util_mean']:.0f} % max {gpu['util_max']:.0f} %, "
                        f"memory {gpu['memory_max_mib']:.0f} MiB"
                        if gpu
                        else ""
                    )
                    steady = record["steady_cells_per_hour"]
                    print(
                        f"  [{repeat}] {record['variant']:<22} {record['cells']} cells in {record['wall_s']:6.1f} s: "
                        f"{record['command_cells_per_hour']:7.1f} cells/h (command), "
                        f"{steady if steady is None else round(steady, 1)} cells/h (steady), "
                        f"{fmt(record['warm_cells_per_hour'])} cells/h (warm, {record['warm_cells']} cells); "
                        f"load {record['load_before']:.2f} -> {record['load_after']:.2f}{gpu_text}",
                        flush=True,
                    )
    print("\nbest of the repeats (cells/hour; x = over sequential of the same --compile setting):")
    best: dict[str, dict[str, float]] = {}
    for record in records:
        entry = best.setdefault(record["variant"], {})
        for kind in ("command", "steady", "warm"):
            value = record[f"{kind}_cells_per_hour"]
            if value is not None and value > entry.get(kind, 0.0):
                entry[kind] = value
    for key, entry in best.items():
        base = best.get("sequential --compile" if key.endswith("--compile") else "sequential", {})
        parts = []
        for kind in ("command", "steady", "warm"):
            text = f"{kind} {fmt(entry.get(kind))}"
            if base is not entry and entry.get(kind) and base.get(kind):
                text += f" (x{entry[kind] / base[kind]:.2f})"
            parts.append(text)
        print(f"  {key:<22} " + ", ".join(parts))
    print(f"1-min load average at the end {load():.2f}; parallel capacity at the start {capacity:.2f}x, "
          f"at the end {parallel_capacity():.2f}x")  # fmt: skip
    if args.json:
        write_json(args, records)
        print(f"wrote {args.json}")
    return 0


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def write_json(args, records) -> None:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.json.write_text(json.dumps({"device": device_name(), "args": settings, "records": records}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
