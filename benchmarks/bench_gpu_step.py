"""One training step of ComP on an accelerator, this tree beside a baseline copy of the model, in one run.

    python benchmarks/bench_gpu_step.py --baseline-dir .baseline/modeling_comp [--batch-sizes 32,256] [--steps 20]
        [--compile] [--json step.json]

For MOSEI-shaped batches (regression, the released sizes: features 512/1024/1024, hidden 256, depth 4, 2 heads,
`max_utterances` 150; conversation lengths drawn like CMU-MOSEI), stage 1 and stage 2, it prints per training step
(forward, backward, Adam; fused Adam on CUDA):

* wall time: median over `--steps` steps, each ended by a device synchronisation;
* host time: the same steps issued back to back with one synchronisation at the end, divided by their number (when
  it is close to the wall time the step is launch-bound: the device waits on Python);
* device kernels per step and their summed device time, from `torch.profiler` (CUDA only);
* peak device memory (CUDA only).

`--baseline-dir` is a `modeling_comp` folder of another revision (`git archive <rev> modeling_comp | tar -x -C
.baseline`), imported under another name; without it only this tree is measured. `--compile` adds this tree under
`torch.compile` (inductor, static shapes: every batch of a run padded to the same length and every position
computed, as `--compile` in the recipes) at the largest batch size
(each compilation takes a while). Without a GPU it runs
on the CPU with the same code (useful to try the script before a device session; the device-only columns are
empty). Every figure comes from this run, on this machine; the device name is printed with them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_model import _import_as, conversation_lengths, mosei_batch  # noqa: E402


def make_batches(count: int, batch_size: int, width: int, device, seed: int = 0) -> list[dict]:
    """`count` MOSEI-shaped batches of different conversation lengths, all padded to `width`, on `device`."""
    lengths = conversation_lengths("mosei", count, batch_size, seed=seed)
    batches = [mosei_batch(batch_size, seed=seed + i, lengths=row, width=width) for i, row in enumerate(lengths)]
    return [{k: v.to(device) for k, v in batch.items()} for batch in batches]


def measure(module, batches, stage: int, device, steps: int, compiled: bool, with_index: bool) -> dict:
    import torch

    torch.manual_seed(0)
    config = module.ComPConfig(
        audio_dim=512, text_dim=1024, video_dim=1024, max_utterances=150, num_labels=1, problem_type="regression"
    )
    model = module.ComPForEmotionRecognition(config).to(device).train()
    model.set_training_stage(stage)
    cuda = device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5, **({"fused": True} if cuda else {}))
    if with_index:
        batches = [
            {
                **b,
                # compiled: every position computed, so that the shapes do not change from batch to batch
                "utterance_index": module.utterance_index_from_attention_mask(
                    b["attention_mask"].cpu(), every_position=compiled
                ).to(device),
            }
            for b in batches
        ]
    runner = torch.compile(model, dynamic=False) if compiled else model

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step(batch):
        loss = runner(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:3]:  # warm-up (and compilation)
        step(batch)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    walls = []
    for i in range(steps):
        start = time.perf_counter()
        step(batches[i % len(batches)])
        sync()
        walls.append(time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    issued = time.perf_counter() - start
    sync()
    result = {
        "wall_ms": 1e3 * statistics.median(walls),
        "host_ms": 1e3 * issued / steps,
        "kernels": None,
        "device_ms": None,
        "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }
    if cuda:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step(batches[0])
            sync()
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        result["kernels"] = len(kernels)
        result["device_ms"] = sum(e.device_time for e in kernels) / 1e3
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-dir", type=Path, default=None, help="a modeling_comp folder of another revision")
    parser.add_argument("--batch-sizes", default="32,256")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=150, help="padded conversation length of every batch")
    parser.add_argument("--compile", action="store_true", help="also this tree under torch.compile")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    ours = _import_as("modeling_comp", ROOT / "modeling_comp")
    variants = [("this tree", ours, False, True)]
    if args.baseline_dir is not None:
        variants.append(
            (f"baseline {args.baseline_dir}", _import_as("comp_baseline", args.baseline_dir), False, False)
        )
    results = []
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    for batch_size in sizes:
        batches = make_batches(4, batch_size, args.width, device)
        compiled_variants = (
            [("this tree, torch.compile", ours, True, True)] if args.compile and batch_size == max(sizes) else []
        )
        for stage in (1, 2):
            for label, module, compiled, with_index in variants + compiled_variants:
                r = measure(module, batches, stage, device, args.steps, compiled, with_index)
                results.append({"variant": label, "batch_size": batch_size, "stage": stage, **r})
                extra = ""
                if r["kernels"] is not None:
                    extra = f" | {r['kernels']:5d} kernels, {r['device_ms']:7.2f} ms on the device"
                if r["peak_mb"] is not None:
                    extra += f" | peak {r['peak_mb']:8.1f} MB"
                print(
                    f"  batch {batch_size:4d} stage {stage} {label:34s} wall {r['wall_ms']:8.2f} ms/step | host "
                    f"{r['host_ms']:8.2f} ms/step{extra}",
                    flush=True,
                )
    if args.json is not None:
        args.json.write_text(json.dumps({"device": name, "results": results}, indent=2))


if __name__ == "__main__":
    main()
