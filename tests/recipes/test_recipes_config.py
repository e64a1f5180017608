"""Recipe configuration: YAML + command-line overrides, and one-line errors for bad keys and values."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from recipes_helpers import repo_env

from recipes.config import CONFIG_DIR, ConfigError, TrainConfig, parse_train_args
from recipes.sweep import parse_int_list, parse_rates


def test_default_is_the_synthetic_config_and_overrides_apply():
    cfg = parse_train_args([])
    assert cfg.dataset == "synthetic"
    cfg = parse_train_args(
        [
            "--epochs",
            "3",
            "--stage1_epochs=1",
            "--model.hidden_size",
            "32",
            "--fold",
            "2",
            "--missing_rate",
            "0.25",
            "--max_grad_norm",
            "null",
            "--progress",
            "false",
        ]
    )
    assert (cfg.epochs, cfg.stage1_epochs, cfg.model["hidden_size"], cfg.fold) == (3, 1, 32, "2")
    assert cfg.missing_rate == 0.25 and cfg.max_grad_norm is None and cfg.progress is False


@pytest.mark.parametrize("name", ["synthetic", "iemocap4", "iemocap6", "mosi", "mosei"])
def test_shipped_configs_validate(name, tmp_path):
    args = ["--config", str(CONFIG_DIR / f"{name}.yaml")]
    if name != "synthetic":
        args += ["--data_dir", str(tmp_path)]
    cfg = parse_train_args(args)
    assert cfg.epochs >= cfg.stage1_epochs
    if name == "mosi":  # the released command
        assert (cfg.seed, cfg.batch_size, cfg.epochs, cfg.stage1_epochs) == (66, 32, 300, 150)
        assert cfg.model["hidden_size"] == 256 and cfg.model["prompt_momentum"] == 0.3
    if name.startswith("iemocap"):
        assert cfg.folds() == [1, 2, 3, 4, 5]
    text = (CONFIG_DIR / f"{name}.yaml").read_text()
    if name in ("mosei", "iemocap4", "iemocap6"):
        assert "unconfirmed" in text.lower()


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"dataset": "synthetic", "learning_rte": 0.1}))
    with pytest.raises(ConfigError) as err:
        parse_train_args(["--config", str(path)])
    assert "bad.yaml" in _one_line(err) and "learning_rte" in _one_line(err)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--learning_rte", "0.1"], "--learning_rte"),
        (["--model.hiden_size", "8"], "hiden_size"),
        (["--dataset", "iemocap5"], "iemocap5"),
        (["--dataset", "mosi"], "--data_dir"),
        (["--epochs", "two"], "epochs='two'"),
        (["--missing_rate", "1.0"], "missing_rate=1.0"),
        (["--selection", "best"], "selection='best'"),
        (["--epochs", "4", "--stage1_epochs", "4"], "no stage-2 epoch"),
        (["--fold", "7"], "fold='7'"),
        (["--config", "does/not/exist.yaml"], "does/not/exist.yaml"),
        (["--missing_protocol", "subset", "--observed_modalities", "ax"], "observed_modalities"),
        (["positional"], "positional"),
        (["--push_to_hub", "no-slash"], "push_to_hub"),
    ],
)
def test_bad_options_are_one_line_errors(argv, needle):
    with pytest.raises(ConfigError) as err:
        parse_train_args(argv)
    assert needle in _one_line(err)


def test_fold_rejected_for_cmu_corpus(tmp_path):
    with pytest.raises(ConfigError, match="only applies to IEMOCAP"):
        parse_train_args(["--config", str(CONFIG_DIR / "mosi.yaml"), "--data_dir", str(tmp_path), "--fold", "1"])


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_train_args(["--config", str(bad)])
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        parse_train_args(["--config", str(bad)])


def test_config_round_trips_through_yaml(tmp_path):
    cfg = parse_train_args(["--epochs", "5", "--stage1_epochs", "2", "--model.hidden_size", "16"])
    path = Path(tmp_path) / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    again = parse_train_args(["--config", str(path)])
    assert again == cfg
    assert isinstance(again, TrainConfig)


def test_sweep_range_parsing():
    assert parse_rates("0.0:0.7:0.1") == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert parse_rates("0.7,0.1") == [0.1, 0.7]
    assert parse_int_list("0,1,2", "seeds") == [0, 1, 2]
    for bad in ("0.0:1.0:0.5", "a:b:c", "0.5:0.1:0.1", ""):
        with pytest.raises(ConfigError):
            parse_rates(bad)
    with pytest.raises(ConfigError, match="seeds"):
        parse_int_list("0,x", "seeds")


def test_exponent_floats_accepted_on_the_command_line_and_in_yaml(tmp_path):
    assert parse_train_args(["--learning_rate", "1e-4"]).learning_rate == 1e-4
    path = tmp_path / "exp.yaml"
    path.write_text("learning_rate: 1e-3\nweight_decay: 5E-6\nepochs: 1e1\nstage1_epochs: 2\n")
    cfg = parse_train_args(["--config", str(path)])
    assert (cfg.learning_rate, cfg.weight_decay, cfg.epochs) == (1e-3, 5e-6, 10)


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("learning_rate: 0.1\nepochs: 4\nlearning_rate: 0.2\n")
    with pytest.raises(ConfigError) as err:
        parse_train_args(["--config", str(path)])
    assert "dup.yaml" in _one_line(err) and "'learning_rate' is given twice (line 3)" in _one_line(err)
    path.write_text("model:\n  hidden_size: 8\n  hidden_size: 16\n")
    with pytest.raises(ConfigError, match="'hidden_size' is given twice"):
        parse_train_args(["--config", str(path)])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--selection_metric", "accuracyy"], "selection_metric='accuracyy' is invalid"),
        (["--report_to", "wandbb"], "report_to='wandbb' is invalid"),
        (["--mixed_precision", "fp8"], "mixed_precision='fp8' is invalid"),
        (["--checkpoint_interval", "-1"], "checkpoint_interval=-1.0 is invalid"),
        (["--torch_threads", "0"], "torch_threads=0 is invalid"),
        (["--epochs"], "--epochs"),
    ],
)
def test_more_bad_options_caught_at_parse_time(argv, needle):
    with pytest.raises(ConfigError) as err:
        parse_train_args(argv)
    assert needle in _one_line(err)


def test_report_to_takes_accelerate_trackers():
    assert parse_train_args(["--report_to", "tensorboard,trackio"]).reporters == ["tensorboard", "trackio"]
    assert parse_train_args(["--report_to", "none"]).reporters == []


def test_help_shows_the_effective_defaults_and_where_they_come_from(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_train_args(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Defaults shown are those of" in text and "synthetic.yaml" in text
    assert "total training epochs (stage 1 + stage 2) (default: 15)" in text  # the YAML's, not the dataclass's 300
    assert "(default: 0.3)" in text and "--model.NAME VALUE" in text
    with pytest.raises(SystemExit):
        parse_train_args(["--config", str(CONFIG_DIR / "mosi.yaml"), "--help"])
    assert "total training epochs (stage 1 + stage 2) (default: 300)" in " ".join(capsys.readouterr().out.split())


def test_sweep_help_lists_its_options(capsys):
    from recipes.sweep import main as sweep_main

    with pytest.raises(SystemExit):
        sweep_main(["--help"])
    text = capsys.readouterr().out
    for option in ("--missing_rates", "--seeds", "--folds", "--ablation", "--balance", "--deviations", "--epochs"):
        assert option in text, option


def test_help_answers_before_the_heavy_imports():
    """`--help` of every command parses before importing torch (what made it take 6-20 s)."""
    code = (
        "import sys\n"
        "from recipes import train, evaluation, sweep\n"
        "for main in (train.main, evaluation.main, sweep.main):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=repo_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH False" in proc.stdout


def test_eval_config_shares_the_data_checks():
    from recipes.config import parse_eval_args

    with pytest.raises(ConfigError, match="--model is required"):
        parse_eval_args([])
    with pytest.raises(ConfigError, match="missing_rate=1.5 is invalid"):
        parse_eval_args(["--model", "x/y", "--missing_rate", "1.5"])
    with pytest.raises(ConfigError, match="one fold at a time"):
        parse_eval_args(["--model", "x/y", "--dataset_config", "iemocap4", "--fold", "all"])
    assert parse_eval_args(["--model", "x/y", "--missing_rate", "5e-1"]).missing_rate == 0.5


def test_shipped_accelerate_config_starts_without_launcher_warnings():
    """`accelerate launch --config_file recipes/accelerate_configs/default.yaml recipes/train.py` starts clean."""
    config = Path(__file__).resolve().parents[2] / "recipes" / "accelerate_configs" / "default.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file", str(config)]
    cmd += [str(config.parents[1] / "train.py"), "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=repo_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "were not passed" not in proc.stderr and "num_processes" not in proc.stderr
    assert "--missing_rate" in proc.stdout


def test_importing_the_configuration_imports_no_training_module():
    """`import recipes.config` (and parsing `--help`-free options) loads no training module: no import circle."""
    code = (
        "import sys\n"
        "import recipes.config\n"
        "heavy = ['recipes.train', 'recipes.trainer', 'recipes.released_protocol', 'recipes.common',\n"
        "         'recipes.metrics', 'accelerate', 'torch', 'torch.optim', 'sklearn', 'modeling_comp', 'hub_datasets']\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=repo_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED []" in proc.stdout


def _yaml_file(tmp_path, name, content) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


HOSTILE_YAML = [
    ("seed_big.yaml", "seed: 4294967296\n", "seed=4294967296 is invalid: expected an integer in [0, 2**32)"),
    ("seed_negative.yaml", "seed: -1\n", "seed=-1 is invalid"),
    ("mask_seed_huge.yaml", "mask_seed: 1e30\n", "mask_seed"),
    ("deep.yaml", "dataset_kwargs: " + "[" * 20000 + "]" * 20000 + "\n", "nested more than 32 levels deep"),
    ("deep_flow_map.yaml", "model: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested more than 32 levels deep"),
    ("moderately_deep.yaml", "dataset_kwargs: " + "[" * 100 + "]" * 100 + "\n", "dataset_kwargs is nested more than"),
    ("latin1.yaml", b"seed: 1\n# caf\xe9\n", "is not UTF-8 text (byte 0xe9"),
    ("utf16.yaml", "seed: 1\n".encode("utf-16"), "is not UTF-8 text"),
    ("two_merges.yaml", "dataset_kwargs:\n  <<: {validation_fraction: 0.1}\n  <<: {validation_fraction: 0.3}\n",
     "merge key '<<' is given twice (line 3)"),
    ("merge_then_twice.yaml", "a: &a {seed: 1}\n", "unknown key 'a'"),
    ("hidden_indivisible.yaml", "model:\n  hidden_size: 20000\n  num_attention_heads: 3\n",
     "model.hidden_size=20000 rejected"),
    ("hidden_negative.yaml", "model:\n  hidden_size: -5\n", "model.hidden_size=-5 rejected"),
    ("heads_string.yaml", "model:\n  num_attention_heads: two\n", "model.num_attention_heads='two' rejected"),
    ("dropout_one.yaml", "model:\n  hidden_dropout_prob: 1.0\n", "model.hidden_dropout_prob=1.0 rejected"),
]  # fmt: skip


@pytest.mark.parametrize("name,content,needle", HOSTILE_YAML, ids=[c[0] for c in HOSTILE_YAML])
def test_hostile_yaml_is_a_one_line_error(tmp_path, name, content, needle):
    path = _yaml_file(tmp_path, name, content)
    with pytest.raises(ConfigError) as err:
        parse_train_args(["--config", str(path)])
    message = str(err.value)
    assert needle in message and "\n" not in message
    assert len(message) < 400


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--seed", "4294967296"], "seed=4294967296 is invalid"),
        (["--dataset_kwargs", "[" * 5000 + "]" * 5000], "nested more than 32 levels deep"),
        (["--model.hidden_size", "0"], "model.hidden_size=0 rejected"),
        (["--model.prototype_scope", "galaxy"], "model.prototype_scope='galaxy' rejected"),
        (["--dataset", "mosi", "--data_dir", "/nonexistent/GCNet"], "data_dir '/nonexistent/GCNet' does not exist"),
    ],
)
def test_hostile_command_line_values_are_one_line_errors(argv, needle):
    with pytest.raises(ConfigError) as err:
        parse_train_args(argv)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_no_option_of_a_boolean_says_what_it_does(capsys):
    from recipes.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no_progress, --no-progress turn --progress off (the same as --progress false)" in text
    assert parse_train_args(["--no_progress"]).progress is False and parse_train_args([]).progress is True
