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


def test_the_collator_lives_beside_the_processor_and_stays_importable_from_hub_datasets():
    import subprocess
    import sys
    from pathlib import Path

    import hub_datasets
    import modeling_comp
    from modeling_comp.data_collator import ComPDataCollator as home

    assert hub_datasets.ComPDataCollator is home is modeling_comp.ComPDataCollator
    from hub_datasets.collator import ComPDataCollator as old_path  # the former module path still works

    assert old_path is home
    # the model package never imports the data package
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys\nsys.modules['hub_datasets'] = None\nimport modeling_comp\nprint(modeling_comp.ComPDataCollator)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root)}
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"audio": [[0.0]]}, "takes a list of conversation rows, got dict"),
        ("abc", "takes a list of conversation rows, got str"),
        (42, "takes a list of conversation rows, got int"),
        (["abc"], "row 0 is a str, expected a conversation row"),
        ([None], "row 0 is a NoneType"),
        ([], "empty list"),
    ],
)
def test_collator_refuses_what_is_not_a_list_of_rows(rows, message):
    with pytest.raises(ValueError, match=message) as err:
        ComPDataCollator(max_utterances=24)(rows)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [0, -3, 1.7, True, "24", 10**9])
def test_collator_max_utterances_is_a_bounded_positive_integer(value):
    with pytest.raises(ValueError, match="max_utterances must be a positive integer"):
        ComPDataCollator(max_utterances=value)


def test_collator_refuses_a_non_integer_conversation_index():
    ds = load_dataset("synthetic", "iemocap4", missing_rate=0.3, seed=2, split="train")
    row = dict(ds[0])
    row["conversation_index"] = 0.5
    with pytest.raises(ValueError, match=r"conversation_index is 0.5, expected an integer"):
        ComPDataCollator(max_utterances=24)([row])
