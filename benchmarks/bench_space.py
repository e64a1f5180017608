"""Latency of the ComP Space: one prediction for a 20-utterance conversation, and 20 concurrent API requests.

Measures, with the Space's bundled synthetic checkpoint and held-out synthetic examples (or ``--checkpoint`` /
``--examples``):

1. the prediction handler called in-process (validation, the masked and the all-modalities forward passes,
   tables and chart data: everything but HTTP), median and p95 over ``--runs`` calls;
2. the model forward pass alone (one conversation), for the breakdown;
   (also with as many torch threads as CPU cores, as a ratio to the Space's default of one);
3. the same prediction through HTTP with ``gradio_client`` against the app launched on 127.0.0.1 (sequential);
4. ``--concurrent`` clients (default 20) sending one request each at the same moment: how many are answered,
   whether every answer equals the sequential one, per-request latency and the wall time.

Usage::

    python benchmarks/bench_space.py                  # prints the figures; target: median <= 200 ms
    python benchmarks/bench_space.py --runs 100 --concurrent 20

The target applies to (1), "one prediction"; the HTTP figures add the server's queue and serialisation.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import threading
import time
from pathlib import Path


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SPACE_DIR = REPO_ROOT / "spaces" / "comp-demo"
TARGET_MS = 200.0


def _load_app():
    sys.path.insert(0, str(REPO_ROOT))
    spec = importlib.util.spec_from_file_location("comp_space_app_bench", SPACE_DIR / "app.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stats(seconds: list[float]) -> str:
    ms = sorted(1000.0 * s for s in seconds)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms   (n={len(ms)})"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="Hub id or folder (default: the bundled one)")
    parser.add_argument("--examples", default=None, help="examples parquet (default: the bundled one)")
    parser.add_argument("--utterances", type=int, default=20, help="length of the benchmarked conversation")
    parser.add_argument("--missing_rate", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=50, help="timed calls per sequential measurement")
    parser.add_argument("--concurrent", type=int, default=20, help="simultaneous API clients")
    args = parser.parse_args(argv)

    import torch
    from gradio_client import Client

    app_module = _load_app()
    env = {}
    if args.checkpoint:
        env["COMP_CHECKPOINT"] = args.checkpoint
    if args.examples:
        env["COMP_EXAMPLES"] = args.examples
    settings = app_module.SpaceSettings.from_env({**os.environ, **env})
    app = app_module.SpaceApp(settings)
    (label, ref), *_ = settings.checkpoints.items()
    candidates = [k for k, c in app.examples.items() if c.num_utterances == args.utterances]
    if not candidates:
        print(f"error: no example with {args.utterances} utterances in {settings.examples_path}", file=sys.stderr)
        return 2
    example = candidates[0]
    source = app_module.SOURCE_EXAMPLE
    grid, note = app.draw_mask(source, example, None, args.missing_rate, 0)
    ckpt = app.store.get(ref)

    print(
        "ComP Space benchmark (data: SYNTHETIC held-out examples, checkpoint trained on the synthetic corpus)"
        if ckpt.synthetic
        else "ComP Space benchmark"
    )
    print(f"checkpoint: {label} -> {ref} (hidden {ckpt.config.hidden_size}, max_utterances {ckpt.max_utterances})")
    print(f"conversation: {example}, {args.utterances} utterances; {note}")
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads")

    def handler():
        return app.predict_outputs(ref, source, example, None, grid)

    for _ in range(5):
        handler()
    timings = []
    for _ in range(args.runs):
        start = time.perf_counter()
        handler()
        timings.append(time.perf_counter() - start)
    handler_median = statistics.median(timings) * 1000.0
    print(f"[1] one prediction, in-process handler     {_stats(timings)}")

    from comp_space.inference import run_model
    from comp_space.inputs import mask_from_grid

    conv = app.examples[example]
    mask = mask_from_grid(grid, conv.num_utterances)
    forward = []
    for _ in range(args.runs):
        start = time.perf_counter()
        run_model(ckpt, conv, mask)
        forward.append(time.perf_counter() - start)
    print(f"[2] model forward only (one pass)          {_stats(forward)}")
    threads = torch.get_num_threads()
    many = os.cpu_count() or 1
    if many != threads:  # why the Space defaults to COMP_TORCH_THREADS=1
        torch.set_num_threads(many)
        for _ in range(5):
            run_model(ckpt, conv, mask)
        wide = []
        for _ in range(args.runs):
            start = time.perf_counter()
            run_model(ckpt, conv, mask)
            wide.append(time.perf_counter() - start)
        torch.set_num_threads(threads)
        ratio = statistics.median(wide) / statistics.median(forward)
        label = f"    same with {many} torch threads"
        print(f"{label:<43}{_stats(wide)}   (ratio to {threads}: {ratio:.2f})")

    demo = app_module.build_demo(settings)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app_module.launch_options(settings))
    try:
        client = Client(demo.local_url, verbose=False, download_files=False)
        payload = {"headers": list(grid.columns), "data": grid.values.tolist()}
        reference = client.predict(ref, source, example, None, payload, api_name="/predict")
        http = []
        for _ in range(args.runs):
            start = time.perf_counter()
            client.predict(ref, source, example, None, payload, api_name="/predict")
            http.append(time.perf_counter() - start)
        print(f"[3] one prediction over HTTP (sequential)  {_stats(http)}")

        clients = [Client(demo.local_url, verbose=False, download_files=False) for _ in range(args.concurrent)]
        barrier = threading.Barrier(args.concurrent)
        results: list[object] = [None] * args.concurrent
        latencies: list[float] = [0.0] * args.concurrent

        def visit(i: int) -> None:
            barrier.wait()
            start = time.perf_counter()
            try:
                results[i] = clients[i].predict(ref, source, example, None, payload, api_name="/predict")
            except Exception as err:  # noqa: BLE001 -- counted as unanswered
                results[i] = err
            latencies[i] = time.perf_counter() - start

        threads = [threading.Thread(target=visit, args=(i,)) for i in range(args.concurrent)]
        wall = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - wall
        answered = sum(isinstance(r, tuple) for r in results)
        identical = sum(isinstance(r, tuple) and r[4] == reference[4] and r[1] == reference[1] for r in results)
        print(
            f"[4] {args.concurrent} concurrent clients: answered {answered}/{args.concurrent}, identical to the "
            f"sequential answer {identical}/{args.concurrent}, wall {1000 * wall:.0f} ms "
            f"(concurrency limit {settings.concurrency})"
        )
        print(f"    per-request latency                    {_stats(latencies)}")
    finally:
        demo.close()
    print(
        f"target: median one-prediction latency <= {TARGET_MS:.0f} ms -> {handler_median:.1f} ms "
        f"(ratio {handler_median / TARGET_MS:.3f} of the target): {'met' if handler_median <= TARGET_MS else 'MISSED'}"
    )
    return 0 if answered == args.concurrent else 1


if __name__ == "__main__":
    sys.exit(main())
