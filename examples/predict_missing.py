"""What missing modalities do to a trained ComP model: the same test conversations, seven conditions.

    python examples/predict_missing.py                       # the Space's bundled checkpoint (trained, 1.5 MB)
    python examples/predict_missing.py --checkpoint runs/<run>/model

The bundled checkpoint was trained by ``recipes/train.py`` on a SYNTHETIC IEMOCAP-4-shaped corpus (synthetic
audio and video; text = MiniLM vectors of generated emotional sentences; no real data), so the numbers below are
synthetic. For each condition - every modality observed, two of them, one of them - the held-out test split is
loaded with that condition (``hub_datasets.load_dataset(..., protocol="subset", modalities=...)``; for the
bundled checkpoint, whose generated corpus is not a loadable dataset, the Space's ``examples.parquet``, which is
that test split, with the other modalities masked), and the script prints the test accuracy and one
conversation's predictions, together with ComP's coordinator weights (how much the fused prediction leans on
each modality).
Needs the package importable (``pip install -e .`` or the repository root on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


CHECKPOINT = Path(__file__).resolve().parents[1] / "spaces" / "comp-demo" / "checkpoint"
CONDITIONS = ("atv", "at", "av", "tv", "a", "t", "v")


def load_split(run_config: dict, modalities: str, examples: Path | None = None):
    """The run's test split with only ``modalities`` observed (every utterance, same conversations).

    ``examples``: a parquet file holding that test split with every modality present (the Space's
    ``examples.parquet``), used instead of loading the run's corpus.
    """
    import hub_datasets

    if examples is not None:
        import numpy as np
        from datasets import Dataset

        rows = Dataset.from_parquet(str(examples)).to_list()
        keep = np.array([m in modalities for m in "atv"], dtype=np.int8)
        for index, row in enumerate(rows):
            row["modality_mask"] = np.tile(keep, (int(row["num_utterances"]), 1)).tolist()
            row["conversation_index"] = index
        return Dataset.from_list(rows)

    kwargs = dict(run_config.get("dataset_kwargs") or {})
    if modalities == "atv":
        kwargs.update(missing_rate=0.0)
    else:
        kwargs.update(protocol="subset", modalities=modalities)
    seed = run_config.get("mask_seed") if run_config.get("mask_seed") is not None else run_config.get("seed", 0)
    dsd = hub_datasets.load_dataset(run_config["dataset"], run_config.get("dataset_config"), seed=seed, **kwargs)
    return dsd["test"]


@torch.inference_mode()
def predict(model, split):
    """Logits, coordinator weights and labels of every real utterance of ``split`` (one batch)."""
    from hub_datasets import ComPDataCollator
    from hub_datasets.constants import MODEL_INPUT_NAMES

    batch = ComPDataCollator(max_utterances=model.config.max_utterances)(list(split.with_format("numpy")))
    inputs = {k: batch[k] for k in MODEL_INPUT_NAMES}
    out = model(**inputs)
    return out, batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(CHECKPOINT), help="a model folder saved by recipes/train.py")
    parser.add_argument("--conversation", type=int, default=0, help="which test conversation to show")
    args = parser.parse_args(argv)

    from transformers import AutoModel

    import modeling_comp  # noqa: F401  (registers ComP with the Auto classes)

    folder = Path(args.checkpoint)
    if not (folder / "comp_run.json").is_file():
        parser.error(f"{folder} is not a model folder written by recipes/train.py (no comp_run.json)")
    run = json.loads((folder / "comp_run.json").read_text())
    model = AutoModel.from_pretrained(folder).eval()
    names = model.config.id2label
    provenance = (run.get("provenance") or {}).get("test") or {}
    synthetic = " (synthetic)" if run["config"]["dataset"] == "synthetic" or provenance.get("synthetic") else ""
    examples = folder.parent / "examples.parquet"
    examples = examples if folder.resolve() == CHECKPOINT.resolve() and examples.is_file() else None
    corpus = "the synthetic corpus" if synthetic else repr(run["config"]["dataset"])
    print(f"{type(model).__name__} from {folder}, trained on {corpus}\n")

    print(f"{'observed':>9}  test accuracy{synthetic}  | conversation {args.conversation}: predictions (label)")
    shown = None
    for condition in CONDITIONS:
        split = load_split(run["config"], condition, examples)
        out, batch = predict(model, split)
        real = batch["attention_mask"].bool()
        preds, labels = out.logits.argmax(-1), batch["labels"]
        accuracy = (preds[real] == labels[real]).float().mean().item()
        n = int(real[args.conversation].sum())
        row = " ".join(names[int(p)][:3] for p in preds[args.conversation, :n])
        print(f"{condition:>9}  {100 * accuracy:6.2f} %{'':13}| {row}")
        if condition == "atv":
            truth = " ".join(names[int(t)][:3] for t in labels[args.conversation, :n])
            shown = (out.coordinator_weights[args.conversation, :n], truth)
        elif condition == "t":
            text_only = out.coordinator_weights[args.conversation, :n]
    print(f"{'labels':>9}  {'':22}| {shown[1]}")
    weights_all, weights_text = shown[0].mean(0), text_only.mean(0)
    print(
        "\ncoordinator weights (audio, text, video), mean over the conversation: all observed "
        + ", ".join(f"{w:.2f}" for w in weights_all)
        + "; text only "
        + ", ".join(f"{w:.2f}" for w in weights_text)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
