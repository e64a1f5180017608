"""The names every part of comp-emotion shares: batch keys, the modality order, row fields.

This is their one home. It imports nothing (not even the standard library), because it is used three ways:
as `modeling_comp.names` by the model, the processor and the recipes; copied into every checkpoint (a relative
import of `configuration_comp.py` and `processing_comp.py`) for `trust_remote_code` users; and read by
`hub_datasets.constants` without importing the model package, so that the data side works without torch.
"""

# Batch keys: the model's inputs and the labels.
AUDIO = "audio"
TEXT = "text"
VIDEO = "video"
#: The three modalities, in the order every `[..., 3]` mask uses.
MODALITIES = (AUDIO, TEXT, VIDEO)
MODALITY_MASK = "modality_mask"
ATTENTION_MASK = "attention_mask"
LABELS = "labels"
#: Optional model input: flat positions of the real utterances, computed on the host by the collator
#: (`modeling_comp.utterance_index_from_attention_mask`) so the model's forward needs no host synchronisation.
UTTERANCE_INDEX = "utterance_index"
MODEL_INPUT_NAMES = (AUDIO, TEXT, VIDEO, MODALITY_MASK, ATTENTION_MASK)

# Row fields of a conversation (a `hub_datasets` row, a processor or pipeline input).
#: The row's index in its split, carried through as a `[batch]` long tensor.
CONVERSATION_INDEX = "conversation_index"
#: Names a conversation in error messages.
DIALOG_ID = "dialog_id"
#: Names a conversation's utterances (pipeline outputs).
UTTERANCE_IDS = "utterance_ids"

__all__ = [
    "ATTENTION_MASK",
    "AUDIO",
    "CONVERSATION_INDEX",
    "DIALOG_ID",
    "LABELS",
    "MODALITIES",
    "MODALITY_MASK",
    "MODEL_INPUT_NAMES",
    "TEXT",
    "UTTERANCE_IDS",
    "UTTERANCE_INDEX",
    "VIDEO",
]
