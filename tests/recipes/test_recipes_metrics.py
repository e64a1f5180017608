"""Metrics of recipes/metrics.py and the `evaluate` module the recipes compute them through, checked against
hand-worked examples."""

import math
from pathlib import Path

import numpy as np
import pytest

from recipes.metrics import (
    classification_metrics,
    compute_metrics,
    default_selection_metric,
    evaluate_metrics,
    higher_is_better,
    metric_module_path,
    regression_metrics,
    select_real_utterances,
)


REPO = Path(__file__).resolve().parents[2]

# Classification example, worked by hand (see the per-class counts in the comments).
REFS = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
PREDS = [0, 0, 1, 1, 2, 2, 2, 2, 0, 3]
# class 0: TP 2, FP 1, FN 1 -> P = R = F1 = 2/3      class 1: TP 1, FP 1, FN 1 -> 1/2
# class 2: TP 3, FP 1, FN 1 -> 3/4                    class 3: TP 1 -> 1
NAMES = ["hap", "sad", "neu", "ang"]


def test_classification_hand_worked():
    m = classification_metrics(PREDS, REFS, label_names=NAMES)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["unweighted_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4 + 1) / 4)  # 35/48
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 4 * 3 / 4 + 1 * 1) / 10)
    assert m["macro_f1"] == pytest.approx(35 / 48)
    assert m["f1_hap"] == pytest.approx(2 / 3)
    assert m["f1_sad"] == pytest.approx(1 / 2)
    assert m["f1_neu"] == pytest.approx(3 / 4)
    assert m["f1_ang"] == pytest.approx(1.0)
    assert m["num_samples"] == 10


def test_classification_unbalanced_precision_recall():
    # refs [0,0,0,1], preds [0,1,1,1]: class 0 P=1 R=1/3 F1=1/2; class 1 P=1/3 R=1 F1=1/2
    m = classification_metrics([0, 1, 1, 1], [0, 0, 0, 1], num_labels=2)
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["unweighted_accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["weighted_f1"] == pytest.approx((3 * 0.5 + 1 * 0.5) / 4)
    assert m["f1_0"] == pytest.approx(0.5) and m["f1_1"] == pytest.approx(0.5)


def test_classification_logits_and_modalities():
    logits = np.eye(4)[PREDS] * 3.0 - 1.0
    audio = [2] * 10  # always "neu": right on the 4 neutral utterances
    modality_logits = np.stack([np.eye(4)[audio], np.eye(4)[REFS], np.eye(4)[PREDS]], axis=1)  # [10, 3, 4]
    m = classification_metrics(logits, REFS, label_names=dict(enumerate(NAMES)), modality_predictions=modality_logits)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["accuracy_audio"] == pytest.approx(0.4)
    assert m["accuracy_text"] == pytest.approx(1.0)
    assert m["accuracy_video"] == pytest.approx(0.7)


def test_classification_absent_class_keeps_ua_over_present_classes():
    m = classification_metrics(PREDS, REFS, label_names=NAMES + ["exc"])
    assert m["f1_exc"] == 0.0
    assert m["unweighted_accuracy"] == pytest.approx(35 / 48)


# Regression example, worked by hand.
Y = [2.5, -1.0, 0.0, 0.4, -2.6, 1.5]
P = [1.4, -0.2, 0.3, -0.5, -2.2, 2.5]


def test_regression_hand_worked():
    m = regression_metrics(P, Y)
    # non-zero refs (5): truth>0 T F T F T, pred>0 T F F F T -> 4/5; F1: both classes 0.8
    assert m["acc2"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(0.8)
    # has-0 (6): truth>=0 T F T T F T, pred>=0 T F T F F T -> 5/6; F1 (T: 6/7, support 4; F: 0.8, support 2)
    assert m["acc2_has0"] == pytest.approx(5 / 6)
    assert m["f1_has0"] == pytest.approx((4 * 6 / 7 + 2 * 0.8) / 6)
    # rounded (half to even): refs 2 -1 0 0 -3 2 / preds 1 0 0 0 -2 2 -> 3 of 6 on 7 classes
    assert m["acc7"] == pytest.approx(3 / 6)
    # clipped to [-2, 2]: refs 2 -1 0 0 -2 2 / preds 1 0 0 0 -2 2 -> 4 of 6
    assert m["acc5"] == pytest.approx(4 / 6)
    assert m["mae"] == pytest.approx((1.1 + 0.8 + 0.3 + 0.9 + 0.4 + 1.0) / 6)
    assert m["corr"] == pytest.approx(np.corrcoef(P, Y)[0, 1])
    assert m["num_samples"] == 6 and m["num_nonzero"] == 5


def test_regression_modalities_and_undefined_values():
    modality = np.stack([np.full(6, 1.0), np.array(Y), -np.array(Y)], axis=1)
    m = regression_metrics(P, Y, modality_predictions=modality)
    assert m["acc2_audio"] == pytest.approx(3 / 5)  # always positive: right on the 3 positive refs
    assert m["acc2_text"] == pytest.approx(1.0)
    assert m["acc2_video"] == pytest.approx(0.0)
    zeros = regression_metrics([0.5, -0.5], [0.0, 0.0])
    assert zeros["acc2"] is None and zeros["f1"] is None and zeros["acc2_has0"] == pytest.approx(0.5)
    assert regression_metrics([1.0, 1.0, 1.0], [0.5, -1.0, 2.0])["corr"] is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: classification_metrics([0, 1], [0, 1, 1]), "2 entries but `references` has 3"),
        (lambda: classification_metrics([0, 7], [0, 1], num_labels=4), "class id 7"),
        (lambda: classification_metrics([0.5, 1.0], [0, 1]), "non-integer"),
        (lambda: classification_metrics([], []), "empty"),
        (lambda: regression_metrics([1.0, float("nan")], [1.0, 2.0]), "NaN"),
        (lambda: regression_metrics([[1.0, 2.0]], [1.0]), r"shape \[N\]"),
        (lambda: regression_metrics([1.0], [1.0], modality_predictions=[[1.0, 2.0]]), "modality_predictions"),
        (lambda: compute_metrics("ranking", [1], [1]), "unknown task 'ranking'"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_select_real_utterances_and_selection_helpers():
    values = np.arange(2 * 3 * 2).reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert select_real_utterances(values, mask).tolist() == [[0, 1], [2, 3], [6, 7]]
    with pytest.raises(ValueError, match="attention mask"):
        select_real_utterances(values, np.ones((2, 2)))
    assert default_selection_metric("classification") == "accuracy"
    assert default_selection_metric("regression") == "f1"
    assert higher_is_better("accuracy") and not higher_is_better("mae")


def test_evaluate_module_loads_offline_and_matches():
    evaluate = pytest.importorskip("evaluate")
    assert metric_module_path() == REPO / "recipes" / "comp_metric"  # the package's folder (here, the checkout)
    metric = evaluate.load(str(metric_module_path()), "classification")
    out = metric.compute(predictions=PREDS, references=REFS, label_names=NAMES)
    assert out == classification_metrics(PREDS, REFS, label_names=NAMES)
    reg = evaluate.load(str(metric_module_path()), "regression")
    for p, y in zip(P, Y):  # batches accumulate like any evaluate metric
        reg.add_batch(predictions=[p], references=[y])
    out = reg.compute()
    assert out["acc2"] == pytest.approx(0.8) and out["mae"] == pytest.approx(0.75)
    assert not math.isnan(out["corr"])


def test_the_recipes_path_through_evaluate_gives_the_direct_results():
    """`evaluate_metrics` (what the recipes call) equals `compute_metrics` for logits, ids and modality views."""
    pytest.importorskip("evaluate")
    rng = np.random.default_rng(0)
    logits, modality_logits = rng.normal(size=(10, 4)), rng.normal(size=(10, 3, 4))
    for kwargs in ({"num_labels": 4, "label_names": dict(enumerate(NAMES))}, {}):
        direct = compute_metrics("classification", logits, REFS, modality_predictions=modality_logits, **kwargs)
        assert evaluate_metrics("classification", logits, REFS, modality_predictions=modality_logits, **kwargs) == direct
    modality = np.stack([np.full(6, 1.0), np.array(Y), -np.array(Y)], axis=1)
    direct = compute_metrics("regression", np.array(P)[:, None], Y, modality_predictions=modality)
    assert evaluate_metrics("regression", np.array(P)[:, None], Y, modality_predictions=modality) == direct
    assert direct["acc2_text"] == 1.0


@pytest.mark.parametrize(
    ("task", "predictions", "references", "match"),
    [
        ("classification", [0.5, 1.0], [0, 1], "non-integer"),  # would be cast to 0 by an int64 column
        ("classification", [0, 1], [0, 1, 1], "2 entries but `references` has 3"),
        ("classification", [], [], "empty"),
        ("classification", [0, 9], [0, 1], "class id 9"),
        ("regression", [[1.0, 2.0]], [1.0], r"shape \[N\]"),
        ("regression", [1.0, float("inf")], [1.0, 2.0], "NaN/inf"),
        ("ranking", [1], [1], "unknown task 'ranking'"),
    ],
)
def test_the_recipes_path_through_evaluate_refuses_what_the_functions_refuse(task, predictions, references, match):
    pytest.importorskip("evaluate")
    with pytest.raises(ValueError, match=match):
        evaluate_metrics(task, predictions, references, num_labels=4)
    with pytest.raises(ValueError, match=match):
        compute_metrics(task, predictions, references, num_labels=4 if task == "classification" else None)
