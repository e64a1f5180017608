"""The Space's fixed texts and the coordinator-weight legend (plain strings and HTML; no Gradio)."""

from __future__ import annotations

import html

from .report import WEIGHT_COLOURS


__all__ = [
    "INTRO",
    "PREDICTIONS_LABEL",
    "PROBABILITIES_LABEL",
    "SYNTHETIC_NOTE",
    "WEIGHTS_LEGEND",
    "weights_legend_html",
]

PREDICTIONS_LABEL = "Per-utterance predictions (masked input vs all modalities)"
PROBABILITIES_LABEL = "Probabilities / scores (masked input vs all modalities)"

INTRO = """# ComP — emotion recognition with missing modalities

ComP (*Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition*, AAAI 2026) predicts an
emotion for every utterance of a conversation from audio, text and video features, and keeps working when some
of them are missing: prompts built from the observed modalities carry knowledge into the missing ones, and a
coordinator re-weights the modalities per utterance.

Pick a conversation, untick modalities in the grid (or draw a seeded mask at a chosen missing rate), and
compare the prediction on the masked input with the prediction from every modality. Or type a conversation
(second tab): it is predicted from its text alone, with audio and video missing.
"""

SYNTHETIC_NOTE = """**Synthetic data.** The bundled checkpoint was trained by our recipe on a **synthetic** corpus: its
audio and video are randomly generated features with planted structure, and its text is generated, plainly
emotional English sentences ("I am so happy right now.", "How dare you! You lied to me.") encoded by the
all-MiniLM-L6-v2 sentence encoder. The bundled examples are that corpus's held-out test split; nothing here is a
recording of people. Typed text is encoded the same way, so plainly emotional sentences get the labels you would
expect; subtle or real-life text says little about real emotion recognition. Load a checkpoint trained on real
features (IEMOCAP, CMU-MOSI/MOSEI) to use your own data."""


WEIGHTS_LEGEND = """Coordinator weights per utterance (each bar sums to 1); a pale segment is a modality that is
*missing* in the masked input — the coordinator is then weighting the cross-modal reconstruction that knowledge
propagation built for it from the observed modalities."""


def weights_legend_html() -> str:
    """The weight charts' legend: one colour swatch per modality, observed and missing."""
    items = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:14px">'
        f'<span style="display:inline-block;width:14px;height:14px;margin-right:5px;background:{colour};'
        f'border:1px solid #888"></span>{html.escape(name)}</span>'
        for name, colour in WEIGHT_COLOURS.items()
    )
    return f'<div class="weights-legend-swatches" style="font-size:14px">{items}</div>'
