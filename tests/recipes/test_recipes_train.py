"""End-to-end training recipe on tiny synthetic configurations: outputs, loading, evaluation, folds, bad input."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from recipes_helpers import BLOCK_PACKAGES, REPO, TINY, repo_env, run_train, with_args

from recipes import train as train_mod
from recipes import trainer as trainer_mod
from recipes.evaluation import main as eval_main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished tiny run (in-process), shared by the tests of this module."""
    out = tmp_path_factory.mktemp("run") / "run"
    args = with_args(TINY, report_to="tensorboard") + ["--output_dir", str(out)]
    assert train_mod.main(args) == 0
    return out


def test_run_directory_contents(tiny_run, capsys):
    for name in (
        "config.yaml",
        "provenance.json",
        "metrics.json",
        "model/config.json",
        "model/model.safetensors",
        "model/configuration_comp.py",
        "model/modeling_comp.py",
        "model/README.md",
        "model/comp_run.json",
        "model/preprocessor_config.json",
        "model/processing_comp.py",
        "model/pipeline_comp.py",
    ):
        assert (tiny_run / name).is_file(), name
    saved_config = json.loads((tiny_run / "model" / "config.json").read_text())
    assert "multimodal-emotion-recognition" in saved_config["custom_pipelines"]
    assert saved_config["modality_features"] is None  # synthetic features: no recorded extractor
    assert list((tiny_run / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    checkpoints = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    # Named after epochs; with the default 60-second interval a tiny run saves the end of stage 1 and the last epoch.
    assert checkpoints == ["checkpoint_0", "checkpoint_2"]
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["finished"] is True and len(metrics["epochs"]) == 3
    assert [r["stage"] for r in metrics["epochs"]] == [1, 2, 2]
    final = metrics["final"]
    assert final["epoch"] in (1, 2)  # stage-2 epochs only (selection_stage 2)
    best_val = max(metrics["epochs"][e]["validation"]["accuracy"] for e in (1, 2))
    assert metrics["epochs"][final["epoch"]]["validation"]["accuracy"] == best_val
    assert final["test"] == metrics["epochs"][final["epoch"]]["test"]
    for key in ("accuracy", "unweighted_accuracy", "weighted_f1", "f1_hap", "accuracy_audio", "accuracy_video"):
        assert 0.0 <= final["test"][key] <= 1.0
    prov = json.loads((tiny_run / "provenance.json").read_text())
    assert prov["test"]["corpus_label"] == "synthetic-iemocap4" and prov["test"]["missing_rate"] == 0.3
    assert 0.0 < prov["test"]["realised_missing_rate"] < 0.6
    assert prov["test"]["selection_rule"].startswith("best validation accuracy")
    assert prov["test"]["fold"] == 5 and prov["test"]["seed"] == 0
    saved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert saved["epochs"] == 3 and saved["model"]["hidden_size"] == 16
    card = (tiny_run / "model" / "README.md").read_text()
    assert card.startswith("---\n") and "synthetic" in card and "trust_remote_code=True" in card


def test_selected_model_reloads_and_reproduces_test_metrics(tiny_run, tmp_path, capsys):
    from transformers import AutoModel

    import modeling_comp  # noqa: F401

    model = AutoModel.from_pretrained(tiny_run / "model")
    assert type(model).__name__ == "ComPForEmotionRecognition" and model.training_stage == 2
    # comp-eval on the same corpus, condition and seed sees the same masks: same numbers as the run's final.
    out = tmp_path / "eval.json"
    kwargs = TINY[TINY.index("--dataset_kwargs") + 1]
    assert (
        eval_main(
            [
                "--model",
                str(tiny_run),
                "--dataset",
                "synthetic",
                "--dataset_config",
                "iemocap4",
                "--dataset_kwargs",
                kwargs,
                "--missing_rate",
                "0.3",
                "--seed",
                "0",
                "--progress",
                "false",
                "--output_file",
                str(out),
            ]
        )
        == 0
    )
    evaluated = json.loads(out.read_text())["metrics"]
    realised = json.loads(out.read_text())["provenance"]["realised_missing_rate"]
    assert f"missing rate 0.3 requested, {realised:.3f} realised" in capsys.readouterr().out
    final = json.loads((tiny_run / "metrics.json").read_text())["final"]["test"]
    for key in ("accuracy", "unweighted_accuracy", "weighted_f1", "accuracy_audio", "accuracy_text"):
        assert evaluated[key] == pytest.approx(final[key], abs=1e-9), key
    # Another condition: text only.
    assert (
        eval_main(
            [
                "--model",
                str(tiny_run / "model"),
                "--dataset_kwargs",
                kwargs,
                "--missing_protocol",
                "subset",
                "--observed_modalities",
                "t",
                "--progress",
                "false",
                "--output_file",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["provenance"]["modalities"] == "t"


LOAD_WITHOUT_PACKAGE = (
    BLOCK_PACKAGES
    + r"""
import json, sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
torch.manual_seed(0)
a, t, v = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
mask = torch.ones(2, 5, 3); mask[0, 1, 0] = 0; mask[1, 3, 2] = 0
am = torch.ones(2, 5, dtype=torch.long); am[1, 4] = 0
with torch.no_grad():
    out = model(audio=a, text=t, video=v, modality_mask=mask, attention_mask=am)
print("RESULT" + json.dumps({"module": type(model).__module__, "logits": out.logits[am.bool()].tolist()}))
"""
)


def reference_logits(model_dir):
    from transformers import AutoModel

    import modeling_comp  # noqa: F401

    model = AutoModel.from_pretrained(model_dir).eval()
    torch.manual_seed(0)
    a, t, v = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, 3)
    mask[0, 1, 0] = 0
    mask[1, 3, 2] = 0
    am = torch.ones(2, 5, dtype=torch.long)
    am[1, 4] = 0
    with torch.no_grad():
        return model(audio=a, text=t, video=v, modality_mask=mask, attention_mask=am).logits[am.bool()]


def test_trust_remote_code_load_in_a_process_without_the_package(tiny_run, tmp_path):
    env = repo_env()
    env.pop("PYTHONPATH")
    env["HF_HOME"] = str(tmp_path / "hf")
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PACKAGE, str(tiny_run / "model")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["module"].startswith("transformers_modules.")
    assert torch.allclose(torch.tensor(result["logits"]), reference_logits(tiny_run / "model"), atol=1e-6)


def test_fold_all_reports_mean_and_std(tmp_path):
    out = tmp_path / "folds"
    args = with_args(TINY, epochs=2, stage1_epochs=1, fold="all") + ["--output_dir", str(out)]
    assert train_mod.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [f["fold"] for f in metrics["folds"]] == [1, 2, 3, 4, 5]
    accs = [f["test"]["accuracy"] for f in metrics["folds"]]
    assert metrics["mean_std"]["accuracy"]["mean"] == pytest.approx(sum(accs) / 5)
    assert metrics["mean_std"]["accuracy"]["n"] == 5
    for fold in range(1, 6):
        prov = json.loads((out / f"fold{fold}" / "provenance.json").read_text())
        assert prov["test"]["fold"] == fold
    # Resuming a finished fold-all run is a no-op that returns the same numbers.
    assert train_mod.main(args + ["--resume_from_checkpoint", "latest"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["mean_std"] == metrics["mean_std"]


def test_selection_on_test_is_labelled_optimistic(tmp_path, capsys):
    out = tmp_path / "seltest"
    assert train_mod.main(with_args(TINY, selection="test") + ["--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "optimistic" in printed.lower()
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert "OPTIMISTIC" in final["selection_rule"]
    assert "optimistic" in (out / "model" / "README.md").read_text().lower()


def test_readme_style_summary_is_printed(tiny_run, tmp_path, capsys):
    out = tmp_path / "again"
    assert train_mod.main(TINY + ["--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(synthetic)" in printed
    assert "stage 1 (epoch 0, last)" in printed and "stage 2 (epoch" in printed
    assert f"selected model: {out / 'model'}" in printed


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--bogus_key", "1"], "unknown option --bogus_key"),
        (["--dataset", "mosi2"], "unknown corpus dataset='mosi2'"),
        (["--model.nope", "3"], "'nope' is not a ComPConfig argument"),
    ],
)
def test_bad_cli_input_is_a_one_line_error(extra, needle, tmp_path, capsys):
    assert train_mod.main(TINY + ["--output_dir", str(tmp_path / "x")] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_data_dir_without_the_corpus(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        train_mod.main(
            [
                "--config",
                str(REPO / "recipes/configs/mosi.yaml"),
                "--data_dir",
                str(empty),
                "--output_dir",
                str(tmp_path / "o"),
                "--progress",
                "false",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot load corpus 'mosi'") and "\n" not in err


def test_unwritable_output_dir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert train_mod.main(TINY + ["--output_dir", str(blocker / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not writable" in err and str(blocker / "run") in err and "\n" not in err
    assert blocker.read_text() == "not a directory"


def test_existing_run_is_not_clobbered(tiny_run, capsys):
    before = (tiny_run / "metrics.json").read_bytes()
    assert train_mod.main(TINY + ["--output_dir", str(tiny_run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tiny_run / "metrics.json").read_bytes() == before


def test_evaluate_rejects_other_model_types_and_bad_paths(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, vocab_size=16)
    ).save_pretrained(bert)
    capsys.readouterr()
    assert eval_main(["--model", str(bert), "--progress", "false"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'bert' checkpoint, not a ComP" in err and "\n" not in err
    assert eval_main(["--model", str(tmp_path / "nowhere" / "x" / "y"), "--progress", "false"]) == 2
    assert "no such folder" in capsys.readouterr().err
    # A relative path with a typo is a local folder too: refused at once, never tried on the Hub.
    assert eval_main(["--model", "./runs/typo/model", "--progress", "false"]) == 2
    assert last_error_line(capsys.readouterr().err) == (
        "error: no such folder: './runs/typo/model' (a local model folder or run directory was expected)"
    )


def last_error_line(captured: str) -> str:
    """The error line a failing command printed last; anything before it may only be progress bars."""
    assert "Traceback" not in captured
    line = captured.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return line


def test_evaluate_rejects_incompatible_corpus(tiny_run, capsys):
    assert (
        eval_main(
            [
                "--model",
                str(tiny_run),
                "--dataset_config",
                "mosi",
                "--progress",
                "false",
                "--dataset_kwargs",
                '{"num_conversations": 10, "dims": {"audio": 8, "text": 8, "video": 8}}',
            ]
        )
        == 2
    )
    assert "the checkpoint expects num_labels=4" in last_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model.audio_dim", "33"], "model.audio_dim=33 does not match corpus 'synthetic', which has audio_dim=8"),
        (["--model.num_labels", "6"], "model.num_labels=6 does not match corpus 'synthetic', which has num_labels=4"),
        (["--selection_metric", "f1_angry"], "selection_metric='f1_angry' is not a classification metric"),
        (["--selection_metric", "acc7"], "selection_metric='acc7' is not a classification metric"),
    ],
)
def test_model_and_metric_checked_against_the_corpus_before_training(extra, needle, tmp_path, capsys):
    out = tmp_path / "new" / "x"
    assert train_mod.main(TINY + ["--output_dir", str(out)] + extra) == 2
    line = last_error_line(capsys.readouterr().err)
    assert needle in line
    assert not (tmp_path / "new").exists()  # refused before the first epoch; no empty run folder left behind


def test_disk_full_mid_run_names_the_path_and_the_resume_command(tiny_run, tmp_path, capsys, monkeypatch):
    """An output write failing mid-run: one line naming the file and the resume command; resuming is exact."""
    out = tmp_path / "full"
    real = trainer_mod.write_json_atomic
    calls = {"metrics": 0}

    def failing(path, data):
        if path.name == "metrics.json":
            calls["metrics"] += 1
            if calls["metrics"] == 2:  # the second epoch's record: the disk is full
                raise OSError(28, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(trainer_mod, "write_json_atomic", failing)
    args = TINY + ["--output_dir", str(out)]
    assert train_mod.main(args) == 2
    line = last_error_line(capsys.readouterr().err)
    assert f"cannot write {out / 'metrics.json'}: No space left on device" in line
    assert f"--output_dir {out} --resume_from_checkpoint latest" in line
    monkeypatch.setattr(trainer_mod, "write_json_atomic", real)
    assert train_mod.main(args + ["--resume_from_checkpoint", "latest"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    reference = json.loads((tiny_run / "metrics.json").read_text())
    assert resumed["final"]["test"] == reference["final"]["test"]
    assert [r["train"]["loss"] for r in resumed["epochs"]] == [r["train"]["loss"] for r in reference["epochs"]]


def test_keep_on_device_trains_without_dataloaders(tmp_path, monkeypatch):
    """``--keep_on_device``: the corpus is collated once (the collator is never called during the epochs)."""
    import hub_datasets

    calls = {"n": 0}
    real = hub_datasets.ComPDataCollator.__call__

    def counting(self, rows):
        calls["n"] += 1
        return real(self, rows)

    monkeypatch.setattr(hub_datasets.ComPDataCollator, "__call__", counting)
    out = tmp_path / "dev"
    assert train_mod.main(TINY + ["--output_dir", str(out), "--keep_on_device", "true"]) == 0
    assert calls["n"] == 3  # train, validation, test: once each, for the whole run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] and 0.0 <= metrics["final"]["test"]["accuracy"] <= 1.0


def test_launcher_mixed_precision_applies_unless_the_config_sets_one(monkeypatch):
    from accelerate.state import AcceleratorState

    from recipes.common import make_accelerator

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    try:
        AcceleratorState._reset_state(reset_partial_state=True)
        assert make_accelerator(mixed_precision=None).mixed_precision == "bf16"
        AcceleratorState._reset_state(reset_partial_state=True)
        assert make_accelerator(mixed_precision="no").mixed_precision == "no"
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_report_to_a_second_tracker_offline(tmp_path, monkeypatch):
    """``--report_to tensorboard,trackio``: both trackers log locally (trackio writes a local database)."""
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # read when trackio is imported
    if "trackio" in sys.modules:
        pytest.skip("trackio was imported before TRACKIO_DIR could be set")
    pytest.importorskip("trackio")
    out = tmp_path / "tracked"
    args = with_args(TINY, report_to="tensorboard,trackio", epochs=2) + ["--output_dir", str(out)]
    assert train_mod.main(args) == 0
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    assert (tmp_path / "trackio" / "comp.db").is_file(), "trackio wrote no local database"


def test_unknown_or_missing_tracker_is_a_one_line_error(tmp_path, capsys):
    assert train_mod.main(TINY + ["--output_dir", str(tmp_path / "a"), "--report_to", "tensorbord"]) == 2
    assert "report_to='tensorbord' is invalid" in last_error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_compile_flag_trains(tmp_path):
    """``--compile`` (torch.compile through accelerate, batches padded to max_utterances) runs a tiny job."""
    out = tmp_path / "compiled"
    assert train_mod.main(with_args(TINY, epochs=2) + ["--output_dir", str(out), "--compile", "true"]) == 0
    assert json.loads((out / "metrics.json").read_text())["finished"]


def test_evaluate_refuses_a_checkpoint_missing_a_tensor(tiny_run, tmp_path, capsys):
    """from_pretrained would silently initialise a missing tensor afresh; comp-eval names it and stops."""
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run / "model", broken)
    weights = load_file(broken / "model.safetensors")
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    capsys.readouterr()
    assert eval_main(["--model", str(broken), "--progress", "false"]) == 2
    line = last_error_line(capsys.readouterr().err)
    assert "missing keys" in line and dropped.split(".")[-2] in line


def _history(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return [(r["train"]["loss"], r.get("validation"), r.get("test")) for r in metrics["epochs"]], metrics


def test_resuming_a_finished_run_with_more_epochs_trains_them(tiny_run, tmp_path, capsys):
    """A finished 3-epoch run resumed with --epochs 4 trains epoch 3 and matches an uninterrupted 4-epoch run; the
    same epochs say there is nothing to train; fewer are refused in one line."""
    import shutil

    out = tmp_path / "extended"
    shutil.copytree(tiny_run, out)
    args = with_args(TINY, report_to="tensorboard") + ["--output_dir", str(out), "--resume_from_checkpoint", "latest"]
    assert train_mod.main(args) == 0
    assert "already finished its 3 epochs: nothing to train (pass --epochs 4" in capsys.readouterr().out
    assert train_mod.main(with_args(args, epochs=2)) == 2
    assert "has trained 3 epochs already, more than --epochs 2" in last_error_line(capsys.readouterr().err)
    assert train_mod.main(with_args(args, epochs=4)) == 0
    reference = tmp_path / "four"
    assert train_mod.main(with_args(TINY, epochs=4) + ["--output_dir", str(reference)]) == 0
    extended, metrics = _history(out)
    assert len(extended) == 4 and extended == _history(reference)[0]
    assert metrics["final"] == json.loads((reference / "metrics.json").read_text())["final"]


def _regression_corpus(monkeypatch, bad_value):
    """The synthetic MOSI-shaped corpus with one label of the test split replaced by ``bad_value``."""
    from recipes.common import TrainingProtocol

    real = TrainingProtocol.load_splits

    def load_splits(self, cfg, fold):
        dsd, sizing = real(self, cfg, fold)

        def spoil(row, index):
            if index == 1:
                row["labels"] = [float(bad_value)] + [float(x) for x in row["labels"][1:]]
            return row

        test = dsd["test"]
        spoilt = test.with_format(None).map(spoil, with_indices=True, features=test.features)
        dsd["test"] = spoilt.with_format(**{k: v for k, v in test.format.items() if k != "format_kwargs"})
        return dsd, sizing

    monkeypatch.setattr(TrainingProtocol, "load_splits", load_splits)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_regression_labels_are_a_one_line_error(bad, tmp_path, capsys, monkeypatch):
    _regression_corpus(monkeypatch, bad)
    out = tmp_path / "mosi"
    assert train_mod.main(with_args(TINY, dataset_config="mosi") + ["--output_dir", str(out)]) == 2
    line = last_error_line(capsys.readouterr().err)
    assert "split 'test', conversation 1 has a non-finite label" in line and "regression labels must be finite" in line
    assert not out.exists()


def _failing_once(monkeypatch, owner, name, error, when=2):
    """Makes ``owner.name`` raise ``error`` on its ``when``-th call (then behave again)."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == when:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return lambda: monkeypatch.setattr(owner, name, real)


@pytest.mark.parametrize(
    ("owner_name", "error", "reason"),
    [
        ("save_state", OSError(30, "Read-only file system"), "Read-only file system"),
        (
            "save_state",
            RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: file write failed"),
            "file write failed",
        ),  # fmt: skip
        ("save_state", "safetensors", "Read-only file system (os error 30)"),
        ("tensorboard_log", OSError(28, "No space left on device"), "No space left on device"),
        ("init_trackers", OSError(30, "Read-only file system"), "Read-only file system"),
    ],
)
def test_faults_mid_run_print_the_documented_line_and_resume_exactly(
    owner_name, error, reason, tiny_run, tmp_path, capsys, monkeypatch
):
    """A read-only remount or a full disk while accelerate saves its state or TensorBoard writes: the documented
    one-line message (path, reason, resume command), nothing written before is lost, and the resumed run matches."""
    from accelerate import Accelerator
    from accelerate.tracking import TensorBoardTracker

    if error == "safetensors":  # what save_state raises first on a read-only folder: safetensors' own error
        from safetensors import SafetensorError

        error = SafetensorError('Error while serializing: I/O error: Read-only file system (os error 30) at path "x"')
    owner, name = {
        "save_state": (Accelerator, "save_state"),
        "tensorboard_log": (TensorBoardTracker, "log"),
        "init_trackers": (Accelerator, "init_trackers"),
    }[owner_name]
    restore = _failing_once(monkeypatch, owner, name, error, when=1 if owner_name == "init_trackers" else 2)
    out = tmp_path / "faulty"
    args = with_args(TINY, report_to="tensorboard", checkpoint_interval=0) + ["--output_dir", str(out)]
    assert train_mod.main(args) == 2
    line = last_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {out}") and reason in line
    assert f"what was written before is intact - free space or fix the permissions, then resume with: comp-train " \
           f"--config {out / 'config.yaml'} --output_dir {out} --resume_from_checkpoint latest" in line  # fmt: skip
    restore()
    assert train_mod.main(args + ["--resume_from_checkpoint", "latest"]) == 0
    assert _history(out)[0] == _history(tiny_run)[0]


def test_a_model_too_large_for_the_machine_is_one_line(tmp_path, capsys, monkeypatch):
    from modeling_comp import ComPForEmotionRecognition

    def no_memory(self, config):
        raise MemoryError()

    monkeypatch.setattr(ComPForEmotionRecognition, "__init__", no_memory)
    out = tmp_path / "big"
    assert train_mod.main(TINY + ["--output_dir", str(out), "--model.hidden_size", "1024"]) == 2
    assert "cannot build the model ({'hidden_size': 1024" in last_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_a_size_bound_of_the_model_config_names_the_model_field(tmp_path, capsys):
    """ComPConfig's bounds (e.g. hidden_size) reach the user as one line naming ``model.<field>``, before any
    folder is made or any module built."""
    for value, shown in (("20000", "20000"), ("-3", "-3"), ("1e9", "1000000000.0")):
        out = tmp_path / f"huge-{value}"
        assert train_mod.main(TINY + ["--output_dir", str(out), "--model.hidden_size", value]) == 2
        line = last_error_line(capsys.readouterr().err)
        assert line.startswith(f"error: model.hidden_size={shown} rejected: ComPConfig.hidden_size must be"), line
        assert not out.exists()


def test_trackers_print_nothing_after_the_summary(tmp_path):
    """trackio's run is closed with the run (no "Uploading logs to Trackio" line when the interpreter exits), and
    the summary is the last thing a run prints."""
    pytest.importorskip("trackio")
    out = tmp_path / "tracked"
    proc = run_train(
        with_args(TINY, report_to="trackio", epochs=2) + ["--output_dir", str(out)],
        cwd=tmp_path,
        env=repo_env(TRACKIO_DIR=tmp_path / "trackio"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"selected model: {out / 'model'}"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"epochs: [unclosed\n", "is not the YAML this recipe wrote"),
        (b"\xff\xfe\x00garbage", "is not the YAML this recipe wrote"),
        (b"- a list\n- not a mapping\n", "holds a list, not the mapping this recipe wrote"),
        (b"seed: 1\n", "cannot resume: batch_size was None in"),
    ],
)
def test_a_tampered_run_config_stops_a_resume_in_one_line(content, needle, tiny_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "tampered"
    shutil.copytree(tiny_run, out)
    (out / "metrics.json").unlink()  # an interrupted run: resuming reads its config.yaml
    (out / "config.yaml").write_bytes(content)
    assert train_mod.main(TINY + ["--output_dir", str(out), "--resume_from_checkpoint", "latest"]) == 2
    assert needle in last_error_line(capsys.readouterr().err)
    assert (out / "config.yaml").read_bytes() == content and (out / "checkpoints").is_dir()  # nothing lost


def test_no_progress_shows_no_progress_bar_at_all(tmp_path, capsys):
    """``--no_progress`` silences transformers' "Writing model shards" bar too; a run with progress still shows it."""
    from transformers.utils import logging as hf_logging

    quiet = TINY + ["--output_dir", str(tmp_path / "quiet"), "--progress", "false"]
    assert train_mod.main(quiet) == 0
    assert "Writing model shards" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # restored for the rest of the process
    shown = TINY + ["--output_dir", str(tmp_path / "shown"), "--progress", "true"]
    assert train_mod.main(shown) == 0
    assert "Writing model shards" in capsys.readouterr().err
