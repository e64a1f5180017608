"""ComPDataCollator: shapes, padding, zeros where masked, labels, conversation_index, DataLoader use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hub_datasets import ComPDataCollator, load_dataset, model_config_kwargs
from modeling_comp.configuration_comp import ATTENTION_MASK, LABELS, MODALITY_MASK, MODEL_INPUT_NAMES, UTTERANCE_INDEX


def test_batch_layout_padding_and_masking():
    ds = load_dataset("synthetic", "iemocap4", missing_rate=0.6, seed=2, split="train")
    rows = [ds[i] for i in (0, 5, 9)]
    collate = ComPDataCollator(max_utterances=model_config_kwargs(ds)["max_utterances"])
    batch = collate(rows)
    lengths = [len(r["utterance_ids"]) for r in rows]
    t = max(lengths)
    assert set(batch) == {*MODEL_INPUT_NAMES, LABELS, "conversation_index", UTTERANCE_INDEX}
    # the real utterances' flat positions b * T + t, computed on the host for a sync-free model forward
    expected_index = [b * t + i for b, n in enumerate(lengths) for i in range(n)]
    assert batch[UTTERANCE_INDEX].dtype == torch.long and batch[UTTERANCE_INDEX].tolist() == expected_index
    assert (
        batch["audio"].shape == (3, t, 32) and batch["text"].shape == (3, t, 64) and batch["video"].shape == (3, t, 64)
    )
    assert batch["audio"].dtype == torch.float32 and batch[MODALITY_MASK].dtype == torch.float32
    assert batch[ATTENTION_MASK].dtype == torch.long and batch[LABELS].dtype == torch.long
    assert batch["conversation_index"].tolist() == [r["conversation_index"] for r in rows] == [0, 5, 9]
    for b, row in enumerate(rows):
        n = lengths[b]
        assert batch[ATTENTION_MASK][b].tolist() == [1] * n + [0] * (t - n)
        assert batch[LABELS][b].tolist() == list(row["labels"]) + [-100] * (t - n)
        np.testing.assert_array_equal(batch[MODALITY_MASK][b, :n].numpy(), row["modality_mask"])
        assert (batch[MODALITY_MASK][b, n:] == 0).all()
        for i, m in enumerate(("audio", "text", "video")):
            observed = row["modality_mask"][:, i] == 1
            np.testing.assert_array_equal(batch[m][b, :n][observed].numpy(), row[m][observed])
            assert (batch[m][b, :n][~observed] == 0).all(), "masked features must be zeros"
            assert (batch[m][b, n:] == 0).all(), "padding must be zeros"
    assert (batch[MODALITY_MASK].sum(-1)[batch[ATTENTION_MASK] == 1] >= 1).all()


def test_regression_labels_torch_format_and_fixed_padding():
    ds = load_dataset("synthetic", "mosi", split="validation").with_format("torch")
    rows = [ds[0], ds[1]]
    batch = ComPDataCollator(max_utterances=24, pad_to="max_utterances")(rows)
    assert batch["text"].shape[1] == 24 and batch[LABELS].dtype == torch.float32
    n = len(rows[0]["utterance_ids"])
    torch.testing.assert_close(batch[LABELS][0, :n], rows[0]["labels"].float())
    assert (batch[LABELS][0, n:] == 0).all()


def test_rows_without_labels_or_masks_are_inference_batches():
    ds = load_dataset("synthetic", "iemocap4", split="test")
    row = {k: v for k, v in ds[0].items() if k not in (LABELS, MODALITY_MASK)}
    batch = ComPDataCollator()([row])
    assert LABELS not in batch
    assert (batch[MODALITY_MASK][0] == 1).all()


def test_dataloader_epoch_sees_every_conversation_once():
    ds = load_dataset("synthetic", "iemocap4", missing_rate=0.3, split="train")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=7, shuffle=True, collate_fn=ComPDataCollator(), generator=torch.Generator().manual_seed(0)
    )
    seen = torch.cat([batch["conversation_index"] for batch in loader]).tolist()
    assert sorted(seen) == list(range(len(ds)))


def test_collator_refuses_non_finite_observed_features_and_checks_model_dims():
    from modeling_comp import ComPConfig, ComPProcessor

    ds = load_dataset("synthetic", "iemocap4", missing_rate=0.5, seed=0, split="validation")
    row = dict(ds[0])
    observed = np.argwhere(np.asarray(row["modality_mask"])[:, 1] == 1)[0, 0]
    row["text"] = np.array(row["text"], copy=True)
    row["text"][observed, 3] = np.inf
    with pytest.raises(ValueError, match=rf"'{row['dialog_id']}': text feature 3 of utterance {observed} is inf"):
        ComPDataCollator()([row])
    kwargs = model_config_kwargs(ds)
    processor = ComPProcessor.from_model_config(ComPConfig(**{**kwargs, "audio_dim": kwargs["audio_dim"] + 1}))
    with pytest.raises(ValueError, match=r"audio features have dimension 32, the model expects audio_dim=33"):
        ComPDataCollator(processor=processor)([ds[1]])
