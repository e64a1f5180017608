"""Build a ComP model from a config, save it, reload it through `AutoModel`, and predict one conversation
with modalities missing.

    python examples/predict_missing.py [--output_dir runs/example-model]

The weights are random (nothing is trained here): the point is the API — see `recipes/train.py` for training.
"""

import argparse
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import AutoModel  # noqa: E402

from modeling_comp import MODALITIES, ComPConfig, ComPForEmotionRecognition  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/example-model")
    args = parser.parse_args()

    labels = ["happy", "sad", "neutral", "angry"]
    config = ComPConfig(
        audio_dim=512,
        text_dim=1024,
        video_dim=1024,
        hidden_size=64,
        num_layers=2,
        num_attention_heads=2,
        max_utterances=150,
        num_labels=4,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    torch.manual_seed(0)
    ComPForEmotionRecognition(config).save_pretrained(args.output_dir)
    model = AutoModel.from_pretrained(args.output_dir).eval()
    print(f"saved and reloaded {type(model).__name__} from {args.output_dir}")

    utterances = 6
    g = torch.Generator().manual_seed(1)
    inputs = {m: torch.randn(1, utterances, config.modality_dims[m], generator=g) for m in MODALITIES}
    # per utterance: which of (audio, text, video) is observed
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=torch.float32)
    with torch.no_grad():
        out = model(**inputs, modality_mask=mask[None], attention_mask=torch.ones(1, utterances))
    probs = out.logits.softmax(-1)[0]
    for i in range(utterances):
        observed = "".join(m[0] for m, on in zip(MODALITIES, mask[i]) if on)
        weights = ", ".join(f"{m[0]}={w:.2f}" for m, w in zip(MODALITIES, out.coordinator_weights[0, i]))
        print(
            f"utterance {i}: observed {observed:3s} -> {labels[int(probs[i].argmax())]:8s} "
            f"(p={probs[i].max():.2f}; coordinator {weights})"
        )


if __name__ == "__main__":
    main()
