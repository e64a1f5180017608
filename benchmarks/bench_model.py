"""Model throughput and memory: forward+backward of a stage-2 training step on CPU; operators and host
synchronisations per training step, beside a baseline version of the model (default: the `main` branch).

    python benchmarks/bench_model.py [--steps 5] [--corpora mosi,mosei] [--threads 2] [--sections counts,histogram,throughput]
        [--baseline main]

Section `histogram` (not run by default): the per-operator breakdown of this tree's counts (forward and backward
of a stage-1 and a stage-2 step), to see where the operators go.

Section `counts` (needs no GPU): for a 32-conversation MOSEI-shaped batch (regression, released sizes), counts the
aten operators dispatched by one training step's forward + backward (a `TorchDispatchMode` counter) and the host
synchronisations among them (`_local_scalar_dense` (`.item()`), `nonzero`, `masked_select`, boolean-mask
indexing `index`/`index_put_` with a bool index, `is_nonzero`, `equal`, `unique`...), in stage 1 and stage 2, for
the model of this tree (with `utterance_index` given, as the collator does, and without it) and for the
baseline's `modeling_comp` (taken with `git archive <baseline> modeling_comp` into a temporary folder). It also
times a full training step (forward, backward, Adam step; median of `--steps`) of both on the same batches, in
the same run, and prints the ratio.

Batches of 32 conversations at the released hyper-parameters (hidden 256, depth 4, 2 heads), with conversation
lengths drawn (seeded) like CMU-MOSI (≈ 24 utterances per video, padded length 65) and CMU-MOSEI (≈ 7 utterances
per video, padded length 150). Each case runs in its own subprocess so its peak resident memory is its own.
Printed: real utterances per second and seconds per step (median step, best of `--repeats` runs), peak RSS, and the ratios dynamic/fixed padding and
default/reference_compat. Fixed padding pads every batch to `max_utterances` (what the released code does);
dynamic padding pads to the batch's longest conversation (what our collator does). `reference_compat` always
pads internally to `max_utterances`, as the released model must.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
CORPUS_SHAPES = {
    # name: (padded length, mean utterances per conversation, min, max)
    "mosi": (65, 23.6, 9, 63),
    "mosei": (150, 7.1, 1, 150),
}


def conversation_lengths(corpus: str, batches: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    import numpy as np

    padded, mean, low, high = CORPUS_SHAPES[corpus]
    rng = np.random.default_rng(seed)
    if corpus == "mosei":
        lengths = rng.geometric(1.0 / mean, size=batches * batch_size)
    else:
        lengths = rng.poisson(mean, size=batches * batch_size)
    lengths = np.clip(lengths, low, high)
    return lengths.reshape(batches, batch_size).tolist()


def run_case(corpus: str, padding: str, mode: str, steps: int, threads: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from modeling_comp import ComPConfig, ComPForEmotionRecognition

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    padded, *_ = CORPUS_SHAPES[corpus]
    config = ComPConfig(
        audio_dim=512,
        text_dim=1024,
        video_dim=1024,
        hidden_size=256,
        num_layers=4,
        num_attention_heads=2,
        max_utterances=padded,
        num_labels=1,
        problem_type="regression",
        hidden_dropout_prob=0.5,
        reference_compat=mode == "reference",
    )
    model = ComPForEmotionRecognition(config).train()
    model.set_training_stage(2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    batches = conversation_lengths(corpus, steps + 1, 32)
    g = torch.Generator().manual_seed(1)

    def make(lengths):
        width = padded if padding == "fixed" else max(lengths)
        attention = torch.zeros(len(lengths), width)
        for i, n in enumerate(lengths):
            attention[i, :n] = 1
        mask = (torch.rand(len(lengths), width, 3, generator=g) < 0.6).float()
        mask[..., 1] = torch.maximum(mask[..., 1], 1 - mask.amax(-1))
        return {
            "audio": torch.randn(len(lengths), width, 512, generator=g) * attention[..., None],
            "text": torch.randn(len(lengths), width, 1024, generator=g) * attention[..., None],
            "video": torch.randn(len(lengths), width, 1024, generator=g) * attention[..., None],
            "modality_mask": mask * attention[..., None],
            "attention_mask": attention,
            "labels": (torch.rand(len(lengths), width, generator=g) * 6 - 3) * attention,
        }

    data = [make(lengths) for lengths in batches]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def step(batch):
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(data[0])  # warm-up
    times = []
    for batch in data[1:]:
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    # median step time (robust to other processes on a shared machine); utterances per step on average
    median = sorted(times)[len(times) // 2]
    utterances = sum(sum(lengths) for lengths in batches[1:]) / steps
    return {
        "corpus": corpus,
        "padding": padding,
        "mode": mode,
        "seconds_per_step": median,
        "utterances_per_s": utterances / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
    }


# aten operators that make the host wait for the device (a value read back, or an output size that depends on data)
_SYNC_OPS = (
    "_local_scalar_dense",
    "item",
    "nonzero",
    "masked_select",
    "is_nonzero",
    "equal",
    "unique",
    "masked_scatter",
)


def _is_sync(func, args) -> bool:
    name = func.__name__.split(".")[0]
    if name in _SYNC_OPS:
        return True
    if name in ("index", "index_put", "index_put_", "_index_put_impl_"):  # boolean-mask indexing
        indices = args[1] if len(args) > 1 else ()
        return any(getattr(i, "dtype", None) == __import__("torch").bool for i in indices or ())
    return False


def mosei_batch(batch_size: int = 32, seed: int = 1, lengths: list[int] | None = None, width: int | None = None):
    """A MOSEI-shaped regression batch: `lengths` (default: drawn once, the same for every seed) padded to `width`
    (default: the longest; longer conversations are cut to it); features, masks and labels drawn from `seed`."""
    import torch

    if lengths is None:
        lengths = conversation_lengths("mosei", 1, batch_size, seed=0)[0]
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    attention = torch.zeros(batch_size, width)
    for i, n in enumerate(lengths):
        attention[i, : min(n, width)] = 1
    mask = (torch.rand(batch_size, width, 3, generator=g) < 0.6).float()
    mask[..., 1] = torch.maximum(mask[..., 1], 1 - mask.amax(-1))
    return {
        "audio": torch.randn(batch_size, width, 512, generator=g) * attention[..., None],
        "text": torch.randn(batch_size, width, 1024, generator=g) * attention[..., None],
        "video": torch.randn(batch_size, width, 1024, generator=g) * attention[..., None],
        "modality_mask": mask * attention[..., None],
        "attention_mask": attention,
        "labels": (torch.rand(batch_size, width, generator=g) * 6 - 3) * attention,
    }


def _import_as(name: str, package_dir: Path):
    """Import the `modeling_comp` package found in `package_dir` under the module name `name`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def count_case(baseline_dir: str, steps: int, threads: int) -> dict:
    """Operators / host synchronisations of one training step (stage 1 and 2) of the baseline and of this tree
    (with and without `utterance_index`), and their step times measured alternately on the same batches."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    torch.set_num_threads(threads)
    versions = {
        "baseline": _import_as("modeling_comp_baseline", Path(baseline_dir) / "modeling_comp"),
        "ours": _import_as("modeling_comp", ROOT / "modeling_comp"),
    }

    class Counter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops, self.syncs = 0, collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            if _is_sync(func, args):
                self.syncs[func.__name__] += 1
            return func(*args, **(kwargs or {}))

    batches = [mosei_batch(seed=1 + i) for i in range(steps + 1)]
    indexed = [
        {**b, "utterance_index": versions["ours"].utterance_index_from_attention_mask(b["attention_mask"])}
        for b in batches
    ]
    cases = {"baseline": ("baseline", batches), "ours": ("ours", indexed), "ours_no_index": ("ours", batches)}
    models, optimizers = {}, {}
    for case, (version, _) in cases.items():
        module = versions[version]
        torch.manual_seed(0)
        config = module.ComPConfig(
            audio_dim=512, text_dim=1024, video_dim=1024, max_utterances=150, num_labels=1, problem_type="regression"
        )
        models[case] = module.ComPForEmotionRecognition(config).train()
        optimizers[case] = torch.optim.Adam(models[case].parameters(), lr=1e-4, weight_decay=1e-5)
    result = {case: {} for case in cases}
    for stage in (1, 2):
        for case, (_, data) in cases.items():
            model = models[case]
            model.set_training_stage(stage)
            model(**data[0]).loss.backward()  # warm-up
            model.zero_grad(set_to_none=True)
            with Counter() as counter:
                model(**data[0]).loss.backward()
            model.zero_grad(set_to_none=True)
            result[case][f"stage{stage}"] = {
                "ops": counter.ops,
                "syncs": sum(counter.syncs.values()),
                "sync_ops": dict(counter.syncs),
                "times": [],
            }
        for i in range(1, steps + 1):  # alternate the cases step by step: load changes hit all of them alike
            for case, (_, data) in cases.items():
                model, optimizer = models[case], optimizers[case]
                start = time.perf_counter()
                loss = model(**data[i]).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                result[case][f"stage{stage}"]["times"].append(time.perf_counter() - start)
        for case in cases:
            times = sorted(result[case][f"stage{stage}"].pop("times"))
            result[case][f"stage{stage}"]["seconds_per_step"] = times[len(times) // 2]
    return result


def op_histogram(steps: int, threads: int, top: int) -> None:
    """Print, for this tree's model, which aten operators one training step's forward and backward dispatch
    (stage 1 and stage 2, `utterance_index` given), most frequent first: where the operator count goes."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    sys.path.insert(0, str(ROOT))
    from modeling_comp import ComPConfig, ComPForEmotionRecognition, utterance_index_from_attention_mask

    torch.set_num_threads(threads)

    class Histogram(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.phase = "forward"
            self.counts = {"forward": collections.Counter(), "backward": collections.Counter()}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.counts[self.phase][func.__name__] += 1
            return func(*args, **(kwargs or {}))

    batch = mosei_batch(seed=1)
    batch["utterance_index"] = utterance_index_from_attention_mask(batch["attention_mask"])
    torch.manual_seed(0)
    config = ComPConfig(
        audio_dim=512, text_dim=1024, video_dim=1024, max_utterances=150, num_labels=1, problem_type="regression"
    )
    model = ComPForEmotionRecognition(config).train()
    parameters = sum(1 for _ in model.parameters())
    print(
        f"aten operators of one training step of this tree, 32 MOSEI-shaped conversations; the model stores "
        f"{parameters} parameter tensors (the backward's gradient accumulation dispatches one `detach` per "
        f"parameter)"
    )
    for stage in (1, 2):
        model.set_training_stage(stage)
        model(**batch).loss.backward()  # warm-up
        model.zero_grad(set_to_none=True)
        with Histogram() as histogram:
            loss = model(**batch).loss
            histogram.phase = "backward"
            loss.backward()
        model.zero_grad(set_to_none=True)
        for phase, counts in histogram.counts.items():
            shown = ", ".join(f"{name} {n}" for name, n in counts.most_common(top))
            print(f"  stage {stage} {phase:8s} {sum(counts.values()):5d} ops: {shown}")


def run_counts(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], capture_output=True, text=True, check=True
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "modeling_comp"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        print(
            f"training step, 32 MOSEI-shaped conversations (regression, hidden 256, depth 4), {args.threads} "
            f"thread(s); ops and syncs of forward+backward; step time = fwd+bwd+Adam, median of {args.steps} steps "
            f"taken alternately"
        )
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--count-case",
                tmp,
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp,
        )
        results = json.loads(out.stdout.strip().splitlines()[-1])
        names = {
            "baseline": f"baseline {args.baseline} ({commit})",
            "ours": "this tree, utterance_index given",
            "ours_no_index": "this tree, without utterance_index",
        }
        for case, name in names.items():
            for stage in ("stage1", "stage2"):
                r = results[case][stage]
                print(
                    f"  {name:38s} {stage}: {r['ops']:5d} aten ops, {r['syncs']:2d} host syncs "
                    f"{r['sync_ops'] or ''}  {r['seconds_per_step'] * 1e3:7.1f} ms/step",
                    flush=True,
                )
        base, ours = results["baseline"], results["ours"]
        for stage in ("stage1", "stage2"):
            print(
                f"  {stage}: ops {base[stage]['ops']} -> {ours[stage]['ops']} "
                f"({ours[stage]['ops'] / base[stage]['ops']:.2f}x); step time this tree / baseline = "
                f"{ours[stage]['seconds_per_step'] / base[stage]['seconds_per_step']:.2f} (< 1 = faster)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=2, help="run every case this many times, keep the fastest")
    parser.add_argument("--corpora", default="mosi,mosei")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sections", default="counts,throughput", help="comma-separated: counts, histogram, throughput"
    )
    parser.add_argument(
        "--baseline",
        default="main",
        help="git revision whose modeling_comp the counts section compares against (4b84b74 = before the rewrite)",
    )
    parser.add_argument("--top", type=int, default=25, help="histogram section: operators shown per phase")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--count-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_case:
        print(json.dumps(count_case(args.count_case, args.steps, args.threads)))
        return
    sections = args.sections.split(",")
    if "counts" in sections:
        run_counts(args)
    if "histogram" in sections:
        op_histogram(args.steps, args.threads, args.top)
    if "throughput" not in sections:
        return
    if args.case:
        corpus, padding, mode = args.case.split(":")
        print(json.dumps(run_case(corpus, padding, mode, args.steps, args.threads)))
        return
    results = []
    for corpus in args.corpora.split(","):
        for mode in ("default", "reference"):
            for padding in ("fixed", "dynamic"):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--case",
                        f"{corpus}:{padding}:{mode}",
                        "--steps",
                        str(args.steps),
                        "--threads",
                        str(args.threads),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results.append(result)
                print(
                    f"{corpus:6s} {mode:9s} {padding:7s} padding: {result['utterances_per_s']:9.1f} utt/s  "
                    f"{result['seconds_per_step']:7.3f} s/step  peak RSS {result['peak_rss_mb']:7.0f} MB "
                    f"(+{result['rss_growth_mb']:.0f} MB during training)",
                    flush=True,
                )
    by = {(r["corpus"], r["mode"], r["padding"]): r for r in results}
    print("\nratios (utterances/s):")
    for corpus in args.corpora.split(","):
        dyn = by[(corpus, "default", "dynamic")]["utterances_per_s"]
        fix = by[(corpus, "default", "fixed")]["utterances_per_s"]
        ref = by[(corpus, "reference", "fixed")]["utterances_per_s"]
        print(
            f"  {corpus}: default dynamic / default fixed = {dyn / fix:.2f}x; "
            f"default dynamic / reference_compat = {dyn / ref:.2f}x; "
            f"default fixed / reference_compat fixed = {fix / ref:.2f}x"
        )


if __name__ == "__main__":
    main()
