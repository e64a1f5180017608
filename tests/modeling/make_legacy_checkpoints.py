"""Write tests/modeling/artifacts/legacy_* : checkpoints saved by the model code of 2026-11-30 (before the
conventional-API rewrite: config field `num_layers`, `training_stage` stored in the config), with the outputs that
code gave, so the test suite proves such checkpoints keep loading with identical outputs.

    python tests/modeling/make_legacy_checkpoints.py   # ran once, with the code of commit 4b84b74

Do not re-run it with newer code: the point of the artefact is that it was written by the old code.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from modeling_comp import ComPConfig, ComPForEmotionRecognition  # noqa: E402
from modeling_comp.convert_original_checkpoint import convert_state_dict, released_state_dict_keys  # noqa: E402


OUT = Path(__file__).parent / "artifacts"
DIMS = {"audio": 6, "text": 10, "video": 8}


def inputs(batch=3, length=7, seed=5):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(batch, length, d, generator=g) for m, d in DIMS.items()}
    mask = (torch.rand(batch, length, 3, generator=g) < 0.6).float()
    mask[..., 1] = torch.maximum(mask[..., 1], 1 - mask.amax(-1))
    attention = torch.ones(batch, length)
    attention[0, length - 2 :] = 0
    attention[2, length - 1 :] = 0
    labels = torch.randint(0, 4, (batch, length), generator=g)
    return dict(**feats, modality_mask=mask, attention_mask=attention), labels


def record(model, batch, labels, prefix, tensors):
    model.eval()
    with torch.no_grad():
        out = model(**batch)
        tensors[f"{prefix}.logits"] = out.logits.contiguous()
        tensors[f"{prefix}.modality_logits"] = out.modality_logits.contiguous()
        tensors[f"{prefix}.coordinator_weights"] = out.coordinator_weights.contiguous()
        tensors[f"{prefix}.fused_hidden_state"] = model.comp(**batch).fused_hidden_state.contiguous()
        for stage in (1, 2):
            model.set_training_stage(stage)
            tensors[f"{prefix}.stage{stage}_loss"] = model(**batch, labels=labels).loss.reshape(1)
        model.set_training_stage(2)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    batch, labels = inputs()
    tensors = {f"input.{k}": v for k, v in batch.items()}
    tensors["input.labels"] = labels

    # 1. a model saved with save_pretrained (stage 1 stored in its config, as a stage-1 checkpoint of the recipe)
    torch.manual_seed(7)
    config = ComPConfig(
        **{f"{m}_dim": d for m, d in DIMS.items()},
        hidden_size=16,
        num_layers=2,
        num_attention_heads=2,
        prompt_dim=4,
        num_prototypes=3,
        max_utterances=12,
        num_labels=4,
        hidden_dropout_prob=0.0,
    )
    model = ComPForEmotionRecognition(config)
    record(model, batch, labels, "saved", tensors)
    model.set_training_stage(1)
    model.save_pretrained(OUT / "legacy_saved")

    # 2. the converter's output for a released-layout state_dict (reference_compat, depth 4)
    ref_config = ComPConfig(
        **{f"{m}_dim": d for m, d in DIMS.items()},
        hidden_size=16,
        num_layers=4,
        num_attention_heads=2,
        prompt_dim=4,
        num_prototypes=5,
        max_utterances=12,
        num_labels=4,
    )
    g = torch.Generator().manual_seed(11)
    state = {k: torch.randn(s, generator=g) / s[-1] ** 0.5 for k, s in released_state_dict_keys(ref_config).items()}
    converted = convert_state_dict(state, num_attention_heads=2, prompt_momentum=0.3)
    record(converted, batch, labels, "converted", tensors)
    converted.save_pretrained(OUT / "legacy_converted")

    for folder in ("legacy_saved", "legacy_converted"):  # the old code's own files are not needed to load
        for path in (OUT / folder).glob("*.py"):
            path.unlink()
    save_file(tensors, OUT / "legacy_outputs.safetensors")
    print(f"wrote {OUT}/legacy_saved, legacy_converted, legacy_outputs.safetensors ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
