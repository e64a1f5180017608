"""What the gradient modulator (Eq. 10-11) does to training, measured: its factors, and which of three candidate
reasons makes it (nearly) inert.

    python benchmarks/bench_modulator.py [--steps 32] [--conversations 8] [--threads 2] [--seed 0]

The model is the released IEMOCAP shape (features 512/1024/1024, hidden 256, depth 4, 2 heads, 4 classes,
`max_utterances` 110, dropout 0.5) on generated IEMOCAP-shaped batches (conversations of ≈ 50 utterances, 60 % of
the modalities observed, features carrying a weak class signal so that the loss falls). Every arm starts from the
same weights and sees the same batches and the same random stream; they differ only in what is named:

* `adam on` / `adam off`: Adam (lr 1e-4, the recipes' optimiser) with and without the modulator;
* `sgd on` / `sgd off`: plain SGD (lr 0.05) with and without it: without Adam's per-element normalisation;
* `adam |s|`: Adam with the modulator's factors replaced by their absolute values (no sign flips);
* `adam frozen`: Adam without the modulator and with the prototype layer's first weight frozen (its gradient
  zeroed every step): the largest change any rescaling of that gradient could make.

Printed: the factors' distribution over every stage-2 step of `adam on` (min, max, mean |1 − s|, the share of
negative factors), the prototype weight's share of the gradient norm at the first step, and per arm, against its
"off" twin after `--steps` steps: the largest difference of the prototype layer's first weight, of every other
weight, and of the fused logits on a held-out batch, beside how far the prototype weight moved from its start.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIMS = {"audio": 512, "text": 1024, "video": 1024}


def iemocap_batch(conversations: int, seed: int, max_utterances: int = 110):
    """Conversations of ≈ 50 utterances (Poisson, clipped to [20, max_utterances]) with 4 classes; each modality's
    features are noise plus a class direction of norm ≈ 1.5 (a weak signal), 60 % of the modalities observed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.poisson(torch.full((conversations,), 50.0), generator=g).clamp(20, max_utterances).long()
    length = int(lengths.max())
    attention = (torch.arange(length)[None, :] < lengths[:, None]).float()
    labels = torch.randint(0, 4, (conversations, length), generator=g)
    batch = {}
    for i, (name, dim) in enumerate(DIMS.items()):
        directions = torch.randn(4, dim, generator=torch.Generator().manual_seed(100 + i)) * (1.5 / dim**0.5)
        batch[name] = torch.randn(conversations, length, dim, generator=g) * 0.5 + directions[labels] * dim**0.5 / 8
    mask = (torch.rand(conversations, length, 3, generator=g) < 0.6).float()
    mask[..., 1] = torch.maximum(mask[..., 1], 1 - mask.amax(-1))  # every utterance keeps a modality
    batch["modality_mask"] = mask * attention[..., None]
    batch["attention_mask"] = attention
    batch["labels"] = torch.where(attention > 0, labels, torch.full_like(labels, -100))
    return batch


def prototype_weight(model):
    return model.comp.prompt_generators[0].prototype_layer.fc1.weight


def train_arm(initial_state, batches, held_out, arm: str, args) -> dict:
    import torch

    from modeling_comp import ComPConfig, ComPForEmotionRecognition

    optimiser, modulation = arm.split(" ", 1)
    config = ComPConfig(
        **{f"{m}_dim": d for m, d in DIMS.items()},
        max_utterances=110,
        num_labels=4,
        use_gradient_modulation=modulation in ("on", "|s|"),
    )
    model = ComPForEmotionRecognition(config)
    model.load_state_dict(initial_state)
    model.set_training_stage(2)
    model.train()
    weight = prototype_weight(model)
    if modulation == "|s|":  # the modulator's factors without their sign
        modulator = model.gradient_modulator
        original = modulator._scale_gradient

        def absolute(grad):
            if modulator.scales is not None:
                modulator.scales = modulator.scales.abs()
            return original(grad)

        weight._backward_hooks.clear()
        weight.register_hook(absolute)
    if optimiser == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    factors, grad_share = [], None
    torch.manual_seed(args.seed + 1)  # the same dropout stream in every arm
    for step, batch in enumerate(batches):
        out = model(**batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if modulation == "frozen":
            weight.grad = None
        if out.modulation_weights is not None:
            positions = int(batch["attention_mask"].sum(0).gt(0).sum())
            factors.append(out.modulation_weights[:, :positions].detach().flatten())
        if step == 0:
            total = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None))
            grad_share = float((weight.grad.norm() / total) if weight.grad is not None else 0.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in held_out.items() if k != "labels"}).logits
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "logits": logits,
        "factors": torch.cat(factors) if factors else None,
        "grad_share": grad_share,
        "loss": float(out.loss.detach()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from modeling_comp import ComPConfig, ComPForEmotionRecognition

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = ComPConfig(**{f"{m}_dim": d for m, d in DIMS.items()}, max_utterances=110, num_labels=4)
    initial = {k: v.clone() for k, v in ComPForEmotionRecognition(config).state_dict().items()}
    batches = [iemocap_batch(args.conversations, seed=args.seed * 1000 + i) for i in range(args.steps)]
    held_out = iemocap_batch(args.conversations, seed=args.seed * 1000 + 999)
    proto_key = "comp.prompt_generators.0.prototype_layer.fc1.weight"

    start = time.perf_counter()
    arms = ["adam on", "adam off", "sgd on", "sgd off", "adam |s|", "adam frozen"]
    results = {arm: train_arm(initial, batches, held_out, arm, args) for arm in arms}
    print(
        f"gradient modulator, {args.steps} stage-2 steps, {args.conversations} IEMOCAP-shaped conversations per batch "
        f"(hidden 256, depth 4, 4 classes), seed {args.seed}, {time.perf_counter() - start:.0f} s"
    )
    factors = results["adam on"]["factors"]
    print(
        f"factors s over every step and position: min {factors.min():.2f}, max {factors.max():.2f}, "
        f"mean |1 - s| {(1 - factors).abs().mean():.3f}, negative {100 * (factors < 0).float().mean():.1f} %, "
        f"|1 - s| > 0.5: {100 * ((1 - factors).abs() > 0.5).float().mean():.1f} %"
    )
    print(
        f"prototype-layer first weight: {100 * results['adam on']['grad_share']:.2f} % of the gradient norm at the "
        f"first step ({initial[proto_key].numel():,} of {sum(v.numel() for v in initial.values()):,} parameters)"
    )
    print()
    header = (
        f"{'arm':<12} {'vs':<9} {'max|Δ proto W|':>15} {'proto W moved':>14} {'ratio':>7} "
        f"{'max|Δ other W|':>15} {'max|Δ logits|':>14}"
    )
    print(header)
    print("-" * len(header))
    for arm, twin in (
        ("adam on", "adam off"),
        ("sgd on", "sgd off"),
        ("adam |s|", "adam off"),
        ("adam frozen", "adam off"),
    ):
        a, b = results[arm]["state"], results[twin]["state"]
        proto_diff = float((a[proto_key] - b[proto_key]).abs().max())
        moved = float((b[proto_key] - initial[proto_key]).abs().max())
        other = max(float((a[k] - b[k]).abs().max()) for k in a if k != proto_key and a[k].is_floating_point())
        logits = float((results[arm]["logits"] - results[twin]["logits"]).abs().max())
        print(
            f"{arm:<12} {twin:<9} {proto_diff:>15.2e} {moved:>14.2e} {proto_diff / max(moved, 1e-30):>7.2f} "
            f"{other:>15.2e} {logits:>14.2e}"
        )
    print()
    print(
        "ratio = how much the arm changed the prototype weight, relative to how far its twin moved it from the start. "
        "`adam frozen` bounds what any modulation of that gradient can do to the logits."
    )


if __name__ == "__main__":
    main()
