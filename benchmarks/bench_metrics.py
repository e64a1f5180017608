"""What computing the recipes' metrics through the `evaluate` module costs, beside calling the functions directly.

The recipes evaluate once per epoch and split. This script measures, on seeded random predictions of the sizes the
recipes meet (the synthetic corpus's test split, an IEMOCAP-sized and a MOSEI-sized one):

1. ``import evaluate`` after the training loop's own imports, then ``evaluate.load(<recipes/comp_metric inside the installed package>, task)``: the first load in a process with an
   empty ``HF_MODULES_CACHE`` (copies and imports the module) and a second load in the same process;
2. one evaluation through the loaded metric (``metric.compute(...)``: it writes the inputs to an Arrow file, reads
   them back and calls the same functions);
3. one evaluation through ``recipes.metrics.compute_metrics`` directly;

each the median of ``--repeats`` runs, and checks that both give the same dict.

Run::

    PYTHONPATH=. python benchmarks/bench_metrics.py --repeats 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


SIZES = {  # split -> number of real utterances
    "synthetic test (classification)": ("classification", 228),
    "IEMOCAP-4 test fold (classification)": ("classification", 1241),
    "MOSEI test (regression)": ("regression", 4659),
}


def _inputs(task: str, n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    if task == "classification":
        refs = rng.integers(0, 4, n)
        preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, 4, n))
        modality = rng.integers(0, 4, (n, 3))
        return preds, refs, modality, {"num_labels": 4, "label_names": ["neu", "hap", "ang", "sad"]}
    refs = np.round(rng.uniform(-3, 3, n) * 3) / 3
    preds = refs + rng.normal(0, 1.0, n)
    modality = preds[:, None] + rng.normal(0, 0.5, (n, 3))
    return preds, refs, modality, {}


def _median_ms(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="runs per figure (median reported; default 20)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as cache:
        # an empty modules cache, so that the first load is a first load
        os.environ["HF_MODULES_CACHE"] = os.path.join(cache, "modules")
        os.environ["HF_EVALUATE_OFFLINE"] = "1"
        start = time.perf_counter()
        import recipes.common  # noqa: F401  (what a training process imports anyway: torch, transformers, ...)
        from recipes.metrics import compute_metrics, metric_module_path

        base_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        import evaluate

        import_ms = (time.perf_counter() - start) * 1000
        path = str(metric_module_path())
        print(
            f"import recipes.common (the training loop's imports): {base_ms:.0f} ms; then import evaluate: {import_ms:.0f} ms"
        )
        print(f"module: {path}")
        loads = {}
        for task in ("classification", "regression"):
            start = time.perf_counter()
            loads[task] = evaluate.load(path, task)
            first = (time.perf_counter() - start) * 1000
            start = time.perf_counter()
            evaluate.load(path, task)
            second = (time.perf_counter() - start) * 1000
            print(f"evaluate.load(..., {task!r}): first {first:.0f} ms, again in the same process {second:.0f} ms")
        print(f"\none evaluation, median of {args.repeats} (ms):")
        print(f"{'split (real utterances)':46s} {'direct':>9s} {'evaluate':>9s} {'ratio':>7s}")
        for name, (task, n) in SIZES.items():
            preds, refs, modality, extra = _inputs(task, n, seed=0)
            direct_ms, direct = _median_ms(
                lambda task=task, preds=preds, refs=refs, modality=modality, extra=extra: compute_metrics(
                    task, preds, refs, modality_predictions=modality, **extra
                ),
                args.repeats,
            )
            metric = loads[task]
            via_ms, via = _median_ms(
                lambda metric=metric, preds=preds, refs=refs, modality=modality, extra=extra: metric.compute(
                    predictions=preds, references=refs, modality_predictions=modality, **extra
                ),
                args.repeats,
            )
            same = "same dict" if via == direct else "DIFFERENT"
            print(f"{name + f' ({n})':46s} {direct_ms:9.2f} {via_ms:9.2f} {via_ms / direct_ms:6.1f}x  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
