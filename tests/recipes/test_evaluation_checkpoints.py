"""comp-eval on what users point it at: a run folder, a folder of runs, a file, corrupt or tampered checkpoints.
Every refusal is one line naming the path; nothing is a traceback."""

from __future__ import annotations

import json

import pytest
import torch

from hub_datasets import load_dataset, model_config_kwargs
from modeling_comp import ComPConfig, ComPForEmotionRecognition, save_with_processor_and_pipeline
from recipes.evaluation import main as eval_main


def _save_model(folder) -> None:
    kwargs = model_config_kwargs(load_dataset("synthetic", "iemocap4", split="test"))
    sizes = {k: kwargs[k] for k in ("audio_dim", "text_dim", "video_dim", "max_utterances", "num_labels")}
    torch.manual_seed(0)
    config = ComPConfig(**sizes, hidden_size=8, num_attention_heads=2, prompt_dim=4, num_prototypes=2)
    save_with_processor_and_pipeline(ComPForEmotionRecognition(config).eval(), None, folder)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval") / "model"
    _save_model(folder)
    return folder


def _error(capsys, argv) -> str:
    capsys.readouterr()
    assert eval_main([*argv, "--progress", "false"]) == 2
    captured = capsys.readouterr().err
    assert "Traceback" not in captured
    lines = [line for line in captured.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, captured
    return lines[0]


def test_a_run_folder_is_evaluated_through_its_model_subfolder(model_dir, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "model")
    (run / "checkpoints").mkdir()
    capsys.readouterr()
    assert eval_main(["--model", str(run), "--progress", "false"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out


def test_a_folder_of_runs_names_the_model_folders_below(model_dir, tmp_path, capsys):
    import shutil

    for cell in ("cell-a", "cell-b"):
        shutil.copytree(model_dir, tmp_path / "sweep" / cell / "model")
    line = _error(capsys, ["--model", str(tmp_path / "sweep")])
    assert f"the model is in '{tmp_path / 'sweep' / 'cell-a' / 'model'}'" in line
    assert "cell-b" in line and "pass that folder as --model" in line


def test_an_unfinished_run_says_where_its_model_will_be(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    line = _error(capsys, ["--model", str(tmp_path / "run")])
    assert (
        f"is a training run without a model yet: the selected model is written to '{tmp_path / 'run' / 'model'}'"
        in line
    )


def test_a_file_is_not_a_model_folder(model_dir, capsys):
    line = _error(capsys, ["--model", str(model_dir / "model.safetensors")])
    assert "is a file; --model takes a model folder" in line


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"x" * len(data),  # not safetensors at all
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"",  # empty
        lambda data: data[:9] + b"!" + data[10:],  # the JSON header broken
    ],
    ids=["garbage", "truncated", "empty", "header"],
)
def test_corrupt_weights_are_one_line_naming_the_file(model_dir, tmp_path, capsys, damage):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    line = _error(capsys, ["--model", str(broken)])
    assert line.startswith(f"error: cannot load the weights '{weights}'"), line


def test_corrupt_configuration_and_processor_are_one_line_naming_the_file(model_dir, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "config.json").write_text("{not json")
    line = _error(capsys, ["--model", str(broken)])
    assert f"cannot read the configuration '{broken / 'config.json'}'" in line
    shutil.copy(model_dir / "config.json", broken / "config.json")
    saved = json.loads((broken / "preprocessor_config.json").read_text())
    for change, needle in (
        ({"audio_dim": -1}, "audio_dim must be a positive integer"),
        ({"max_utterances": 10**9}, "max_utterances must be a positive integer up to 65536"),
        ({"model_input_names": ["audio"]}, "unknown field(s) 'model_input_names'"),
        ({"text_dim": 7}, "the processor has text_dim=7 but the model's config has text_dim="),
    ):
        (broken / "preprocessor_config.json").write_text(json.dumps({**saved, **change}))
        line = _error(capsys, ["--model", str(broken)])
        assert needle in line, line
        if "unknown" in needle or "positive" in needle:
            assert f"{broken / 'preprocessor_config.json'}: ComPProcessor" in line, line
