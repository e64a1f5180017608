"""Recipe configuration: YAML + command-line overrides, and one-line errors for bad keys and values."""

from pathlib import Path

import pytest
import yaml

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
