"""Whole training commands measured side by side, in one run, on one generated corpus.

    python benchmarks/bench_train.py                                  # ours vs ours-before (main), threads
    COMP_AUTHORS_CODE=/path/to/authors python benchmarks/bench_train.py --variants ours,before,authors
    python benchmarks/bench_train.py --size mosei --epochs 4 --json bench_train.json

Every figure printed comes from a command this script ran, on this machine, on the same data, in this run;
nothing is compared with a number measured elsewhere. The corpus is the SYNTHETIC generator's, written in the
GCNet/ComP on-disk layout (MOSI or MOSEI sizes and dims), so that both our loader and the authors' trainer
read the same files. Each variant is a whole training command in a fresh process (start-up, data loading,
every epoch with its evaluation, checkpoints and final outputs), timed by wall clock, with the README's
MOSI hyper-parameters (hidden 256, 4 layers, 2 heads, batch 32, lr 1e-4, missing rate 0.7), ``--epochs``
epochs split evenly between the two stages.

Variants (``--variants``, comma-separated):

* ``ours``: ``recipes/train.py`` of this working tree, for each ``--threads`` value (torch threads per
  process), idle, and with ``--contention`` also next to a competing CPU-bound process (one busy Python
  loop, as another job on a shared machine would be);
* ``ours-device``: the same with ``--keep_on_device true`` (corpus collated once, kept on the device);
* ``before``: ``recipes/train.py`` of ``--before_ref`` (default ``main``), exported with ``git archive`` into
  a temporary folder and run with its own defaults (one torch thread forced through ``OMP_NUM_THREADS``
  like ours);
* ``authors``: the authors' ``train_mr.py`` from a scratch copy of ``$COMP_AUTHORS_CODE`` whose
  ``config.py`` is pointed at the generated corpus (their code is run, never copied into this repository);
  its own "Time of first/second stage" lines give the training-loop time.

On a GPU the device name is printed with the figures. Timings on a shared machine vary with other jobs:
the 1-minute load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("ours", "ours-device", "before", "authors")
#: corpus sizes of the GCNet/ComP releases (conversations, utterances) and feature dims
SIZES = {
    "mosi": {"num_conversations": 93, "total_utterances": 2199, "max_utterances": 63, "pad": 65},
    "mosei": {"num_conversations": 3228, "total_utterances": 22856, "max_utterances": 150, "pad": 150},
}
DIMS = {"audio": 512, "text": 1024, "video": 1024}
_AUTHORS_NAMES = {"mosi": "CMUMOSI", "mosei": "CMUMOSEI"}


def _env(pythonpath: Path, threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    # the tree first; a PYTHONPATH already set (packages installed with --target, say) stays behind it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), os.environ.get("PYTHONPATH", "")) if p)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores)"


def write_corpus(work: Path, size: str, seed: int) -> Path:
    """The generated corpus in the GCNet layout (``<work>/corpus/CMUMOSI|CMUMOSEI``)."""
    from hub_datasets.synthetic import write_synthetic_corpus

    spec = SIZES[size]
    root = work / "corpus"
    if not (root / _AUTHORS_NAMES[size]).is_dir():
        write_synthetic_corpus(
            root,
            size,
            format="gcnet",
            overwrite=True,
            num_conversations=spec["num_conversations"],
            min_utterances=1,
            max_utterances=spec["max_utterances"],
            total_utterances=spec["total_utterances"],
            dims=DIMS,
            seed=seed,
        )
    return root


def _timed(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - started, proc


def _recipe_args(tree: Path, corpus: Path, size: str, epochs: int, out: Path) -> list[str]:
    return [
        sys.executable,
        str(tree / "recipes" / "train.py"),
        "--config",
        str(tree / "recipes" / "configs" / f"{size}.yaml"),
        "--data_dir",
        str(corpus),
        "--epochs",
        str(epochs),
        "--stage1_epochs",
        str(epochs // 2),
        "--missing_rate",
        "0.7",
        "--output_dir",
        str(out),
        "--report_to",
        "none",
        "--progress",
        "false",
    ]


def _warm_cache(tree: Path, corpus: Path, size: str, env: dict[str, str], cwd: Path) -> None:
    """Loads the corpus once (untimed), so that every timed command reads the prepared Arrow cache."""
    code = (
        "import sys, hub_datasets\n"
        f"hub_datasets.load_dataset({size!r}, data_dir={str(corpus)!r}, missing_rate=0.7, seed=66)\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)


def run_recipe(label: str, tree: Path, corpus: Path, size: str, epochs: int, work: Path, *, threads: int | None,
               extra: list[str] | None = None, timeout: float = 3600) -> dict:  # fmt: skip
    """One whole ``recipes/train.py`` command; returns wall time and the per-epoch training seconds it recorded."""
    out = work / "runs" / re.sub(r"[^\w.-]+", "_", label)
    shutil.rmtree(out, ignore_errors=True)
    cmd = _recipe_args(tree, corpus, size, epochs, out) + (extra or [])
    seconds, proc = _timed(cmd, _env(tree, threads), work, timeout)
    result = {"variant": label, "wall_s": seconds, "returncode": proc.returncode}
    if proc.returncode != 0:
        result["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return result
    metrics = json.loads((out / "metrics.json").read_text())
    train_s = [r["train_seconds"] for r in metrics["epochs"]]
    result.update(train_s_total=sum(train_s), train_s_per_epoch=train_s, loop="training steps (no eval)")
    return result


def authors_copy(code: Path, corpus: Path, work: Path) -> Path:
    """A scratch copy of the authors' code whose ``config.py`` points at the generated corpus and ``work``."""
    copy = work / "authors"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(code, copy, ignore=shutil.ignore_patterns("figures", "*.pyc", "__pycache__"))
    config = (copy / "config.py").read_text()
    for name in _AUTHORS_NAMES.values():
        config = re.sub(rf"'{name}':\s*'[^']*'", f"'{name}': {str(corpus / name)!r}", config)
    config = re.sub(r"SAVED_ROOT\s*=.*", f"SAVED_ROOT = {str(work / 'authors-saved')!r}", config)
    (copy / "config.py").write_text(config)
    return copy


def run_authors(code: Path, corpus: Path, size: str, epochs: int, work: Path, threads: int | None,
                timeout: float = 7200) -> dict:  # fmt: skip
    """The authors' ``train_mr.py`` with the README's MOSI/MOSEI command, on the same corpus."""
    from hub_datasets.schema import DEFAULT_FEATURE_NAMES

    copy = authors_copy(code, corpus, work)
    script_dir = copy / "ComP" if (copy / "ComP" / "train_mr.py").is_file() else copy
    cmd = [
        sys.executable,
        "train_mr.py",
        "--dataset", _AUTHORS_NAMES[size],
        "--audio-feature", DEFAULT_FEATURE_NAMES["audio"],
        "--text-feature", DEFAULT_FEATURE_NAMES["text"],
        "--video-feature", DEFAULT_FEATURE_NAMES["video"],
        "--seed", "66", "--batch-size", "32", "--lr", "0.0001", "--l2", "0.00001",
        "--hidden", "256", "--depth", "4", "--num_heads", "2", "--drop_rate", "0.5",
        "--epochs", str(epochs), "--stage_epoch", str(epochs // 2), "--mask_rate", "0.7", "--lbd", "0.3",
        "--gpu", "0",
    ]  # fmt: skip
    env = _env(copy, threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(copy), str(script_dir), os.environ.get("PYTHONPATH", "")) if p)
    seconds, proc = _timed(cmd, env, script_dir, timeout)
    result = {"variant": "authors train_mr.py", "wall_s": seconds, "returncode": proc.returncode}
    if proc.returncode != 0:
        result["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return result
    stages = [float(x) for x in re.findall(r"Time of (?:first|second) stage: ([\d.]+)s", proc.stdout)]
    if stages:
        result["train_s_total"] = sum(stages)
        result["loop"] = "their stage timers (training + test eval)"
    return result


class _Competitor:
    """A CPU-bound process running next to a measurement (another job on a shared machine)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def _before_tree(ref: str, work: Path) -> Path:
    """``git archive <ref>`` of this repository, unpacked into ``<work>/before``."""
    tree = work / "before"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _line(result: dict, reference: dict | None) -> str:
    result.setdefault("load_1min_after", os.getloadavg()[0])
    if reference is not None and reference.get("variant") == result.get("variant"):
        reference = None
    if result.get("returncode") != 0:
        return f"  {result['variant']:<34} FAILED: {' '.join(result.get('error', []))}"
    text = f"  {result['variant']:<34} whole command {result['wall_s']:6.1f} s"
    if "train_s_total" in result:
        text += f" | {result.get('loop', 'training steps')} {result['train_s_total']:6.1f} s"
    if reference is not None and reference.get("returncode") == 0:
        text += f" | {result['wall_s'] / reference['wall_s']:.2f}x the wall time of {reference['variant']}"
    return text + f" | load {result['load_1min_after']:.1f}"


def main(argv: list[str] | None = None) -> int:
    """Runs the requested variants one after another and prints the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="mosi", choices=sorted(SIZES))
    parser.add_argument("--epochs", type=int, default=4, help="epochs per command (half in each stage)")
    parser.add_argument(
        "--variants", default="ours,ours-device,before", help=f"comma-separated: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--threads", default="1,2", help="torch threads per process for 'ours' (comma-separated)")
    parser.add_argument("--contention", action=argparse.BooleanOptionalAction, default=True,
                        help="also run 'ours' next to a competing CPU-bound process")  # fmt: skip
    parser.add_argument("--before_ref", default="main", help="git ref of 'before'")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over every variant (fastest one reported)")
    parser.add_argument("--work_dir", type=Path, default=None, help="corpus, runs and caches (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or args.epochs < 2:
        parser.error(f"unknown variant {unknown[0]!r}" if unknown else "--epochs must be at least 2")
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    authors = os.environ.get("COMP_AUTHORS_CODE")
    if "authors" in variants and not authors:
        parser.error("the 'authors' variant needs COMP_AUTHORS_CODE=<folder of the authors' code>")

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("COMP_EMOTION_CACHE", str(work / "cache"))
    device = _device_name()
    print(f"device: {device}; 1-min load average at start {os.getloadavg()[0]:.2f}", flush=True)
    corpus = write_corpus(work, args.size, seed=0)
    print(f"corpus: {args.size.upper()}-sized synthetic, GCNet layout, in {corpus}; {args.epochs} epochs per command",
          flush=True)  # fmt: skip
    _warm_cache(ROOT, corpus, args.size, _env(ROOT, 1), work)

    jobs: list[tuple[str, object]] = []  # (label, function running one command)
    if "ours" in variants:
        for n in threads:
            for contended in (False, True) if args.contention else (False,):
                label = f"ours, {n} thread{'s' if n > 1 else ''}" + (", competing process" if contended else "")
                extra = ["--torch_threads", str(n)]

                def job(label=label, n=n, extra=extra, contended=contended):
                    with _Competitor() if contended else contextlib.nullcontext():
                        return run_recipe(label, ROOT, corpus, args.size, args.epochs, work, threads=n, extra=extra)

                jobs.append((label, job))
    if "ours-device" in variants:
        label = "ours, --keep_on_device, 1 thread"
        extra = ["--torch_threads", "1", "--keep_on_device", "true"]
        jobs.append(
            (label, lambda: run_recipe(label, ROOT, corpus, args.size, args.epochs, work, threads=1, extra=extra))
        )
    if "before" in variants:
        tree = _before_tree(args.before_ref, work)
        _warm_cache(tree, corpus, args.size, _env(tree, 1), work)
        before = f"before ({args.before_ref}), 1 thread"
        jobs.append((before, lambda: run_recipe(before, tree, corpus, args.size, args.epochs, work, threads=1)))
    if "authors" in variants:
        jobs.append(
            ("authors train_mr.py", lambda: run_authors(Path(authors), corpus, args.size, args.epochs, work, 1))
        )

    # Rounds: every variant once per round, in the same order, so that a change in the machine's load hits
    # all of them; the fastest of a variant's rounds is compared (the least disturbed).
    results: list[dict] = []
    for round_ in range(args.repeats):
        print(f"round {round_ + 1}/{args.repeats}", flush=True)
        for _label, job in jobs:
            result = job()
            result["round"] = round_
            results.append(result)
            print(_line(result, None), flush=True)
    best: dict[str, dict] = {}
    for result in results:
        if result.get("returncode") == 0:
            label = result["variant"]
            if label not in best or result["wall_s"] < best[label]["wall_s"]:
                best[label] = result
    if best:
        print(f"fastest of {args.repeats} round(s) per variant:")
        first = next(iter(best.values()))
        for result in best.values():
            print(_line(result, first), flush=True)
    print(f"1-min load average at the end {os.getloadavg()[0]:.2f} (other jobs on the machine slow every figure)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": device, "size": args.size, "epochs": args.epochs, "results": results}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
