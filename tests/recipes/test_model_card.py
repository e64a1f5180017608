"""The model card: huggingface_hub metadata (pipeline_tag, library, licence, datasets, model-index with the test
metrics, each naming its selection protocol and missing rate), synthetic provenance first, the fold."""

from __future__ import annotations

from huggingface_hub import ModelCard, metadata_load

from hub_datasets import dataset_provenance, load_dataset
from recipes.config import TrainConfig
from recipes.model_card import render_model_card


def run_record(tmp_path, **overrides) -> dict:
    """A run record shaped like recipes/train.py's (`comp_run.json`), with real provenance of the test split."""
    cfg = TrainConfig(dataset="synthetic", dataset_config="iemocap4", missing_rate=0.5, epochs=4, stage1_epochs=2)
    for key, value in overrides.pop("config", {}).items():
        setattr(cfg, key, value)
    dsd = load_dataset("synthetic", cfg.dataset_config, missing_rate=cfg.missing_rate, seed=0)
    task = "classification" if cfg.dataset_config.startswith("iemocap") else "regression"
    metrics = (
        {"accuracy": 0.61234, "unweighted_accuracy": 0.58, "weighted_f1": 0.6, "macro_f1": 0.57, "accuracy_text": 0.5}
        if task == "classification"
        else {"acc2": 0.7, "f1": 0.71, "mae": 0.912345, "corr": 0.4321}
    )
    final = {
        "task": task,
        "fold": None,  # what train.py records when --fold is not given; the split's provenance knows the fold
        "epoch": 3,
        "selection": cfg.selection,
        "selection_metric": "accuracy" if task == "classification" else "f1",
        "selection_rule": f"best {cfg.selection} metric over stage-2 epochs",
        "selection_stage": 2,
        "validation": {k: v - 0.01 for k, v in metrics.items()},
        "test": metrics,
        "synthetic": True,
    }
    return {
        "config": cfg.to_dict(),
        "provenance": {split: dataset_provenance(dsd[split]) for split in dsd},
        "final": final,
        "task": task,
        "repo_id": overrides.pop("repo_id", "org/comp-tiny"),
    }


def test_card_metadata_parses_back_with_the_metrics(tmp_path):
    run = run_record(tmp_path)
    assert run["provenance"]["test"]["fold"] == 5
    path = tmp_path / "README.md"
    path.write_text(render_model_card(run), encoding="utf-8")
    meta = metadata_load(path)
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "other" and "multimodal-emotion-recognition" in meta["tags"]
    assert "synthetic" in meta["tags"] and "datasets" not in meta  # no Hub dataset behind the synthetic corpus
    card = ModelCard.load(path)
    results = card.data.eval_results
    assert card.data.model_name == "comp-tiny"
    by_metric = {r.metric_name.split(",")[0]: r for r in results}
    assert by_metric["accuracy (%)"].metric_value == 61.23
    assert by_metric["accuracy_text (%)"].metric_value == 50.0
    for result in results:
        assert result.dataset_split == "test" and result.dataset_args["missing_rate"] == 0.5
        assert result.dataset_args["fold"] == 5 and result.dataset_args["synthetic"] is True
        assert result.metric_args["selection"] == "validation" and result.metric_args["selected_epoch"] == 3
        assert result.metric_name.endswith(", missing rate 0.5, epoch chosen on validation")
        assert result.dataset_name.startswith("synthetic")
    body = card.text.strip().splitlines()
    assert body[0] == "# ComP — synthetic (iemocap4-shaped)"  # "synthetic" once in the title
    assert body[2].startswith("**Synthetic data.**")
    assert "- fold: 5; training seed 0" in card.text and "fold: n/a" not in card.text
    assert "pip install comp-emotion" not in card.text


def test_regression_hub_dataset_and_test_selection(tmp_path):
    run = run_record(tmp_path, config={"dataset_config": "mosi", "selection": "test"})
    run["config"]["dataset"] = "org/comp-emotion-features"  # trained from a Hub parquet repo
    path = tmp_path / "README.md"
    path.write_text(render_model_card(run, with_pipeline=True), encoding="utf-8")
    meta = metadata_load(path)
    assert meta["datasets"] == ["org/comp-emotion-features"]
    results = ModelCard.load(path).data.eval_results
    values = {r.metric_type: r.metric_value for r in results}
    assert values["mae"] == 0.9123 and values["pearsonr"] == 0.4321 and values["f1"] == 71.0
    assert all("TEST set (optimistic)" in r.metric_name for r in results)
    assert all(r.dataset_type == "org/comp-emotion-features" and "fold" not in r.dataset_args for r in results)
    text = path.read_text()
    assert text.split("\n# ", 1)[1].startswith("ComP — org/comp-emotion-features\n")
    assert "fold: n/a" in text and "Synthetic data." not in text
    assert 'pipeline("multimodal-emotion-recognition", model="org/comp-tiny", trust_remote_code=True)' in text
