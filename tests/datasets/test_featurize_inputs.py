"""Featurize: every input checked before anything is loaded or written; all-or-nothing output; no network waits."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from hub_datasets.__main__ import main
from hub_datasets.errors import DatasetFormatError
from hub_datasets.featurize import (
    TextExtractorSpec,
    check_file_ids,
    featurize_gcnet_corpus,
    hub_unreachable,
    read_transcripts_csv,
)


ABSENT_MODEL = "no-such-org/no-such-model"  # never reached: the inputs fail first


def _run(argv, capsys):
    status = main(["featurize", *argv, "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    return status, err


def _csv(tmp_path, rows, name="t.csv"):
    path = tmp_path / name
    path.write_text("name,sentence\n" + "".join(f"{i},{t}\n" for i, t in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (
            [("a", "x"), ("b", "y"), ("a", "z")],
            r"t\.csv: the id 'a' at row 4 repeats row 2: two utterances would share",
        ),
        ([("Ab", "x"), ("ab", "y")], r"the id 'ab' at row 3 differs only in letter case from 'Ab' at row 2"),
        ([("a", "x"), ("b", "y"), ("c/d", "z")], r"the id 'c/d' at row 4 cannot name a file"),
        ([("a", "x"), ("..", "y")], r"the id '\.\.' at row 3 cannot name a file"),
        ([("a", "x"), ("", "y")], r"the id '' at row 3 cannot name a file"),
        ([("a", "x"), ("b" * 300, "y")], r"at row 3 cannot name a file \(.*over 250 bytes\)"),
    ],
)
def test_bad_or_repeated_ids_are_refused_before_anything_is_written(tmp_path, capsys, rows, match):
    out = tmp_path / "out"
    for output in (out, tmp_path / "out.npz"):
        status, err = _run(
            ["--csv", str(_csv(tmp_path, rows)), "--model", ABSENT_MODEL, "--output", str(output)], capsys
        )
        assert status == 2 and "\n" not in err
        assert __import__("re").search(match, err), err
    assert not out.exists() and not (tmp_path / "out.npz").exists()


def test_gcnet_pickle_ids_are_checked_before_encoding(tmp_path, capsys):
    label = tmp_path / "labels.pkl"
    ids = {"Ses01F_a": ["u1", "u2"], "Ses01F_b": ["u3", "u1"]}  # u1 in two dialogues
    label.write_bytes(pickle.dumps([ids, {}, {}, {"Ses01F_a": ["x", "y"], "Ses01F_b": ["z", "w"]}]))
    status, err = _run(["--gcnet-pickle", str(label), "--model", ABSENT_MODEL, "--output", str(tmp_path)], capsys)
    assert status == 2
    assert "labels.pkl: the id 'u1' at videoIDs['Ses01F_b'][1] repeats videoIDs['Ses01F_a'][0]" in err
    assert not (tmp_path / "features").exists()
    ids["Ses01F_b"] = [["a list"], "u4"]
    label.write_bytes(pickle.dumps([ids, {}, {}, {"Ses01F_a": ["x", "y"], "Ses01F_b": ["z", "w"]}]))
    status, err = _run(["--gcnet-pickle", str(label), "--model", ABSENT_MODEL, "--output", str(tmp_path)], capsys)
    assert status == 2 and "videoIDs['Ses01F_b'][0] should be a string, got list" in err


def test_existing_outputs_are_refused_before_the_encoder_is_loaded(tmp_path, capsys):
    npz = tmp_path / "out.npz"
    npz.write_bytes(b"keep me")
    status, err = _run(["--text", "hi", "--model", ABSENT_MODEL, "--output", str(npz)], capsys)
    assert status == 2 and "already exists; pass --overwrite" in err and npz.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "absent", r"the model folder '.*absent' does not exist; pass --model <existing folder"),
        (lambda p: p / "sub" / "absent", r"does not exist"),
        (lambda p: (p / "file.bin").write_bytes(b"x") and p / "file.bin", r"is a file; expected a model folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", r"has no config\.json"),
    ],
)
def test_a_model_folder_that_is_not_one_is_named(tmp_path, capsys, make, match):
    model = make(tmp_path)
    status, err = _run(["--text", "hi", "--model", str(model), "--output", str(tmp_path / "o.npz")], capsys)
    assert status == 2 and "\n" not in err and "repo id" not in err
    assert __import__("re").search(match, err), err
    status, err = _run(["--text", "hi", "--model", "./relative/absent", "--output", str(tmp_path / "o.npz")], capsys)
    assert "the model folder './relative/absent' does not exist" in err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


def test_no_network_fails_fast_with_a_hint(tmp_path):
    """An unreachable Hub: one line naming the way out, within seconds (no retries)."""
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    cmd = [sys.executable, "-m", "hub_datasets", "featurize", "--text", "hi", "--output", str(tmp_path / "o.npz")]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.monotonic() - start
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "'microsoft/deberta-large' is not in the local cache and the Hub cannot be reached" in lines[0]
    assert "--model <local folder" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert "Retrying" not in proc.stderr
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "(HF_HUB_OFFLINE is set)" in proc.stderr
    print(f"failed in {elapsed:.1f} s")  # recorded, not asserted: import time varies with the machine


def test_hub_probe_answers_for_a_listening_endpoint(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_unreachable(2.0) is None
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    assert "127.0.0.1" in hub_unreachable(2.0)


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["featurize", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for default in (
        "(default: microsoft/deberta-large)",
        "(default: 16)",
        "(default: -4,-3,-2,-1)",
        "(default: gcnet)",
    ):
        assert default in out, default


def test_csv_files_that_are_not_utf8_or_csv_are_named(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,sentence\na,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetFormatError, match=r"latin\.csv: not UTF-8 text"):
        read_transcripts_csv(path)
    path = tmp_path / "huge.csv"
    path.write_text('name,sentence\na,"' + "x" * 200_000 + '"\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"huge\.csv: not a readable CSV file"):
        read_transcripts_csv(path)


def test_check_file_ids_accepts_ordinary_ids():
    check_file_ids(["Ses01F_impro01_F000", "vid_1", "état-1"], "x")
    with pytest.raises(DatasetFormatError, match=r"the id 'a\\\\b' at entry 1 cannot name a file"):
        check_file_ids(["ok", "a\\b"], "x")
    with pytest.raises(DatasetFormatError, match=r"cannot name a file"):
        check_file_ids(["ok", "new\nline"], "x")


class _Boom(RuntimeError):
    pass


def test_a_failure_while_writing_keeps_the_previous_features(tmp_path, monkeypatch):
    """A write that fails half-way: the previous folder stays as it was, no staging folder is left behind."""
    label = tmp_path / "labels.pkl"
    ids = {"Ses01F_a": ["u1", "u2", "u3"]}
    label.write_bytes(pickle.dumps([ids, {}, {}, {"Ses01F_a": ["one", "two", "three"]}]))
    folder = tmp_path / "features" / "deberta-large-4-UTT"
    folder.mkdir(parents=True)
    (folder / "old.npy").write_bytes(b"previous")

    class Fixed:
        spec = TextExtractorSpec()

        def __call__(self, texts, **_):
            return np.ones((len(texts), 4), np.float32)

    monkeypatch.setattr("hub_datasets.featurize.TextExtractor", Fixed)
    real_save, calls = np.save, []

    def failing_save(path, value):
        calls.append(path)
        if len(calls) == 2:
            raise _Boom("disk full")
        real_save(path, value)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(_Boom):
        featurize_gcnet_corpus(label, tmp_path, Fixed(), progress=False, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["old.npy"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["deberta-large-4-UTT"]
    monkeypatch.setattr(np, "save", real_save)
    featurize_gcnet_corpus(label, tmp_path, Fixed(), progress=False, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["u1.npy", "u2.npy", "u3.npy"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["deberta-large-4-UTT"]


def test_hub_probe_goes_through_a_configured_proxy(monkeypatch):
    """Behind a proxy the endpoint itself may be unreachable directly; the proxy is what must answer."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_unreachable(2.0) is None
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{_closed_port()}")
    assert "hub.invalid" in hub_unreachable(2.0)
