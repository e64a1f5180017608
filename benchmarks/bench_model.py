"""Model throughput and memory: forward+backward of a stage-2 training step on CPU.

    python benchmarks/bench_model.py [--steps 5] [--corpora mosi,mosei] [--threads 2]

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
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
CORPORA = {
    # name: (padded length, mean utterances per conversation, min, max)
    "mosi": (65, 23.6, 9, 63),
    "mosei": (150, 7.1, 1, 150),
}


def conversation_lengths(corpus: str, batches: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    import numpy as np

    padded, mean, low, high = CORPORA[corpus]
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
    padded, *_ = CORPORA[corpus]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=2, help="run every case this many times, keep the fastest")
    parser.add_argument("--corpora", default="mosi,mosei")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
