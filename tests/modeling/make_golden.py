"""Regenerate tests/modeling/artifacts/golden_tiny.{safetensors,json}.

    python tests/modeling/make_golden.py

Only run this for an intended change of the model's maths: the golden test exists to catch unintended ones.
The artefact holds the tiny model's weights, the inputs and the expected outputs of each mode, so the test does
not depend on PyTorch's random number generator.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file


sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from modeling_comp import ComPConfig, ComPForEmotionRecognition  # noqa: E402


OUT = Path(__file__).parent / "artifacts"
CONFIG = {
    "audio_dim": 6,
    "text_dim": 10,
    "video_dim": 8,
    "hidden_size": 16,
    "num_layers": 2,
    "num_attention_heads": 2,
    "prompt_dim": 4,
    "num_prototypes": 3,
    "max_utterances": 12,
    "num_labels": 4,
    "hidden_dropout_prob": 0.0,
}
MODES = {"default": {}, "reference": {"reference_compat": True}}


def main() -> None:
    torch.manual_seed(1234)
    model = ComPForEmotionRecognition(ComPConfig(**CONFIG)).eval()
    g = torch.Generator().manual_seed(4321)
    batch, length = 3, 6
    inputs = {
        "audio": torch.randn(batch, length, 6, generator=g),
        "text": torch.randn(batch, length, 10, generator=g),
        "video": torch.randn(batch, length, 8, generator=g),
        "modality_mask": (torch.rand(batch, length, 3, generator=g) < 0.6).float(),
        "attention_mask": torch.tensor([[1.0] * 6, [1.0] * 4 + [0.0] * 2, [1.0] * 5 + [0.0]]),
    }
    inputs["modality_mask"][..., 1] = torch.maximum(
        inputs["modality_mask"][..., 1], 1 - inputs["modality_mask"].amax(-1)
    )
    tensors = {f"weight.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"input.{k}": v for k, v in inputs.items()})
    for mode, overrides in MODES.items():
        variant = ComPForEmotionRecognition(ComPConfig(**{**CONFIG, **overrides})).eval()
        variant.load_state_dict(model.state_dict())
        with torch.no_grad():
            out = variant(**inputs)
        tensors[f"{mode}.logits"] = out.logits.contiguous()
        tensors[f"{mode}.modality_logits"] = out.modality_logits.contiguous()
        tensors[f"{mode}.coordinator_weights"] = out.coordinator_weights.contiguous()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, OUT / "golden_tiny.safetensors")
    (OUT / "golden_tiny.json").write_text(json.dumps({"config": CONFIG, "modes": MODES}, indent=2) + "\n")
    print(f"wrote {OUT / 'golden_tiny.safetensors'} ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
