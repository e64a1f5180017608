"""The released protocol (``--protocol released``) and the validation tie-break: masks, metrics, options, a run."""

import json

import numpy as np
import pytest
from recipes_helpers import TINY, with_args

from recipes.config import ConfigError, parse_train_args
from recipes.released_protocol import (
    _load_released_splits,
    released_batch_masks,
    released_metrics,
    released_rate_matrix,
)
from recipes.selection import selection_improves


def test_rate_matrix_matches_the_released_procedure():
    rng = np.random.RandomState(0)
    one = released_rate_matrix(650, 0.7, rng)  # above 2/3: exactly one modality per row
    assert one.shape == (650, 3) and (one.sum(1) == 1).all()
    for rate in (0.1, 0.4):
        m = released_rate_matrix(650, rate, np.random.RandomState(1))
        assert m.min() >= 0 and m.max() <= 1 and (m.sum(1) >= 1).all()
        assert abs(m.mean() - (1 - rate)) < 0.005  # controlled over every drawn row
    assert (released_rate_matrix(10, 0.0, rng) == 1).all()
    # a short batch still draws at least 32 rows (then truncates): same stream consumption as the release
    a, b = np.random.RandomState(3), np.random.RandomState(3)
    assert (released_rate_matrix(5, 0.4, a) == released_rate_matrix(32, 0.4, b)[:5]).all()


def test_batch_masks_use_the_speaking_actors_matrix():
    guest = np.zeros((2, 4), dtype=bool)
    guest[1, 2:] = True
    masks = released_batch_masks(2, 4, guest, 0.7, np.random.RandomState(5))
    rng = np.random.RandomState(5)
    host = released_rate_matrix(8, 0.7, rng).reshape(2, 4, 3)
    other = released_rate_matrix(8, 0.7, rng).reshape(2, 4, 3)
    assert (masks[~guest] == host[~guest]).all() and (masks[guest] == other[guest]).all()


def test_cmu_metrics_use_non_zero_labels_only():
    y = np.array([1.0, -1.0, 0.0, 2.0])
    p = np.array([0.5, -0.5, 3.0, -1.0])
    mod = np.stack([p, p, -p], axis=1)
    out = released_metrics("regression", p, y, mod)
    assert out["acc2"] == pytest.approx(2 / 3)
    assert out["mae"] == pytest.approx((0.5 + 0.5 + 3.0) / 3)  # the zero label (error 3) is left out
    assert out["corr"] == pytest.approx(np.corrcoef(y[[0, 1, 3]], p[[0, 1, 3]])[0, 1])
    assert out["acc2_video"] == pytest.approx(1 / 3)
    cls = released_metrics("classification", np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), np.zeros((4, 3)))
    assert cls["accuracy"] == 0.75 and cls["unweighted_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_options_the_released_protocol_cannot_honour():
    cfg = parse_train_args(with_args(TINY, protocol="released"))
    assert (cfg.selection, cfg.selection_stage) == ("test", 1)
    for extra, name in [
        (["--selection", "validation"], "selection='validation'"),
        (["--mask_seed", "3"], "mask_seed=3"),
        (["--missing_protocol", "subset", "--observed_modalities", "at"], "missing_protocol='subset'"),
        (["--model.reference_compat", "false"], "model.reference_compat"),
        (["--selection_metric", "macro_f1"], "selection_metric"),
    ]:
        with pytest.raises(ConfigError, match="--protocol released cannot honour") as err:
            parse_train_args(with_args(TINY, protocol="released") + extra)
        assert name in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="protocol='other'"):
        parse_train_args(with_args(TINY, protocol="other"))


def test_validation_ties_go_to_lower_loss_then_later_epoch():
    best = {"value": 0.8, "loss": 0.50}
    assert selection_improves(0.81, {"validation": {"loss": 9.0}}, best, "validation", "accuracy")
    assert not selection_improves(0.79, {"validation": {"loss": 0.1}}, best, "validation", "accuracy")
    assert selection_improves(0.8, {"validation": {"loss": 0.40}}, best, "validation", "accuracy")
    assert not selection_improves(0.8, {"validation": {"loss": 0.60}}, best, "validation", "accuracy")
    assert selection_improves(0.8, {"validation": {"loss": 0.50}}, best, "validation", "accuracy")  # later
    assert selection_improves(0.8, {"validation": {}}, {"value": 0.8}, "validation", "accuracy")
    assert selection_improves(1.0, {}, {"value": 1.2}, "validation", "mae")  # lower is better for MAE


def test_released_run_trains_on_every_training_dialogue_and_says_optimistic(tmp_path, capsys):
    from recipes.train import main

    cfg = parse_train_args(with_args(TINY, protocol="released", output_dir=tmp_path / "run", fold=1))
    train, test, _ = _load_released_splits(cfg, 1)
    default = parse_train_args(with_args(TINY, fold=1))
    from recipes.common import load_corpus

    dsd = load_corpus(default, 1)
    assert len(train) == len(dsd["train"]) + len(dsd["validation"]) and len(test) == len(dsd["test"])

    assert main(with_args(TINY, protocol="released", output_dir=tmp_path / "run", fold=1)) == 0
    printed = capsys.readouterr().out
    assert "RELEASED protocol" in printed and "OPTIMISTIC" in printed
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["protocol"] == "released" and metrics["optimistic"] is True and metrics["finished"]
    values = [r["test"]["accuracy"] for r in metrics["epochs"]]
    assert metrics["final"]["epoch"] == int(np.argmax(values))  # best test epoch over ALL epochs (stage 1 too)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "Protocol: released (OPTIMISTIC)" in card
    assert json.loads((tmp_path / "run" / "model" / "comp_run.json").read_text())["optimistic"] is True


def test_sweep_table_says_released_and_optimistic():
    from recipes.sweep import summarise

    row = {"variant": "ComP", "missing_rate": 0.7, "observed_modalities": "", "seed": 0, "fold": "",
           "acc2": 0.8, "f1": 0.79}  # fmt: skip
    text = summarise([row], "regression", True, "released")["table.md"]
    assert "--protocol released" in text and "OPTIMISTIC" in text and "80.00" in text


def test_options_the_released_protocol_fixes_or_refuses():
    # refused: what the released forward or its per-batch masks cannot honour
    for extra, name in [
        (["--keep_on_device", "true"], "keep_on_device=true"),
        (["--dataset_kwargs", '{"validation_fraction": 0.3}'], "dataset_kwargs.validation_fraction"),
        (["--model.prototype_scope", "dialogue"], "model.prototype_scope='dialogue'"),
        (["--model.use_gradient_modulation", "true"], "model.use_gradient_modulation=True"),
        (["--mixed_precision", "bf16"], "mixed_precision='bf16'"),
    ]:
        with pytest.raises(ConfigError, match="--protocol released cannot honour") as err:
            parse_train_args(with_args(TINY, protocol="released") + extra)
        assert name in str(err.value) and "\n" not in str(err.value)
    # accepted: the released values themselves, and the default preset's validation hold-out (dropped: no hold-out)
    cfg = parse_train_args(
        with_args(TINY, protocol="released") + ["--model.prototype_scope", "batch", "--model.use_gradient_modulation",
                                                 "false"]
    )  # fmt: skip
    assert cfg.model["prototype_scope"] == "batch"
    preset = parse_train_args(["--protocol", "released"])  # recipes/configs/synthetic.yaml holds validation_fraction
    assert "validation_fraction" not in preset.dataset_kwargs and preset.selection == "test"


def _released(tmp_path, name, **overrides):
    return with_args(TINY, protocol="released", fold=1, epochs=4, stage1_epochs=2, **overrides) + [
        "--output_dir", str(tmp_path / name)
    ]  # fmt: skip


def test_released_run_writes_the_main_loops_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    """The released protocol runs in the one loop: processor, pipeline files, card, the selected epoch's stage,
    TensorBoard logs, checkpoints; interrupted by a full disk, then resumed, it gives the uninterrupted run's numbers
    (its masks come from one NumPy stream, which the checkpoints carry)."""
    from recipes import train, trainer

    assert train.main(_released(tmp_path, "ref", report_to="tensorboard")) == 0
    ref = tmp_path / "ref"
    model = ref / "model"
    for name in ("preprocessor_config.json", "pipeline_comp.py", "processing_comp.py", "README.md", "comp_run.json"):
        assert (model / name).is_file(), name
    metrics = json.loads((ref / "metrics.json").read_text())
    final = metrics["final"]
    assert final["stage"] == metrics["epochs"][final["epoch"]]["stage"]
    assert json.loads((model / "config.json").read_text())["trained_stage"] == final["stage"]
    assert list((ref / "logs").rglob("events.out.tfevents.*")) and list((ref / "checkpoints").iterdir())

    real, calls = trainer.write_json_atomic, {"n": 0}

    def full_disk(path, data):
        if path.name == "metrics.json":
            calls["n"] += 1
            if calls["n"] == 3:  # the third epoch's record
                raise OSError(28, "No space left on device", str(path))
        real(path, data)

    args = _released(tmp_path, "cut", checkpoint_interval=0)
    monkeypatch.setattr(trainer, "write_json_atomic", full_disk)
    assert train.main(args) == 2
    monkeypatch.setattr(trainer, "write_json_atomic", real)
    assert train.main(args + ["--resume_from_checkpoint", "latest"]) == 0
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert [r["test"] for r in resumed["epochs"]] == [r["test"] for r in metrics["epochs"]]
    assert [r["train"]["loss"] for r in resumed["epochs"]] == [r["train"]["loss"] for r in metrics["epochs"]]
    assert resumed["final"]["epoch"] == final["epoch"]


def test_released_run_refuses_several_processes(monkeypatch):
    from recipes.config import RecipeError
    from recipes.released_protocol import ReleasedProtocol

    with pytest.raises(RecipeError, match="runs in one process"):
        ReleasedProtocol().check_launch(2)
    ReleasedProtocol().check_launch(1)
