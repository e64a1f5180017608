"""ComP evaluation metrics as an `evaluate` metric module, shipped inside the installed package (loads offline).

Usage, from any working directory::

    import evaluate
    from recipes.metrics import metric_module_path   # this folder, inside the installed package

    metric = evaluate.load(str(metric_module_path()), "classification")   # IEMOCAP: WA, UA, F1s
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], label_names=["hap", "sad"])
    metric = evaluate.load(str(metric_module_path()), "regression")       # CMU: Acc-2, F1, Acc-7, MAE, r
    metric.compute(predictions=[1.2, -0.3], references=[2.0, 0.4], modality_predictions=[[...], [...]])

The recipes compute their metrics through this module (``recipes.metrics.evaluate_metrics``). The maths lives in
``recipes/metrics.py`` (scikit-learn): this module is a thin `evaluate.Metric` wrapper around it, so comp-emotion
must be importable (installed, or its root on ``PYTHONPATH``). The extra keyword arguments of ``compute``
(``modality_predictions``, ``num_labels``, ``label_names``) are passed through to
:func:`recipes.metrics.compute_metrics`. Configurations: ``"classification"`` (also the default) and
``"regression"``.
"""

import datasets
import evaluate


__all__ = ["ComPMetric"]

_DESCRIPTION = """Metrics of the ComP paper's evaluation protocols (accuracy / WA, UA, weighted F1 for IEMOCAP; Acc-2, F1, Acc-7, MAE and correlation for CMU-MOSI / MOSEI).
classification: accuracy (WA), unweighted_accuracy (UA, mean per-class recall), weighted_f1, macro_f1,
f1_<label> per class, accuracy_<modality> per unimodal head.
regression: acc2 / f1 (non-zero references, y > 0 vs pred > 0), acc2_has0 / f1_has0 (y >= 0 vs pred >= 0),
acc7, acc5 (clip to [-3, 3] / [-2, 2] then round), mae and Pearson corr (all references), acc2_<modality>.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: classification: class ids; regression: predicted sentiment scores. One per real utterance.
    references: classification: true class ids; regression: true sentiment in [-3, 3].
    modality_predictions (optional): [N, 3] per-modality predictions (audio, text, video), or [N, 3, C]
        logits for classification.
    num_labels (optional, classification): number of classes.
    label_names (optional, classification): list of class names or {id: name} mapping.
Returns:
    dict of metric name -> value (fractions in [0, 1]; None when undefined).
"""

_CITATION = """@inproceedings{he2026comp,
  title={Cross-modal Prompting for Balanced Incomplete Multi-modal Emotion Recognition},
  author={He, Wenjue and Zhu and Zhang},
  booktitle={AAAI},
  year={2026},
  note={arXiv:2512.11239}
}
"""

_FEATURES = {
    "classification": datasets.Features(
        {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
    ),
    "regression": datasets.Features(
        {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
    ),
}


def _maths():
    try:
        from recipes import metrics
    except ImportError as err:  # pragma: no cover - depends on the user's environment
        raise ImportError(
            "comp_metric needs the comp-emotion package: run `pip install -e .` in the repository "
            f"or put its root on PYTHONPATH ({err})"
        ) from None
    return metrics


class ComPMetric(evaluate.Metric):
    """The ComP metric suite (IEMOCAP classification or CMU sentiment regression)."""

    def _task(self) -> str:
        name = self.config_name or "default"
        if name == "default":
            return "classification"
        if name not in _FEATURES:
            raise ValueError(f"unknown comp_metric configuration {name!r}; expected 'classification' or 'regression'")
        return name

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES[self._task()],
            reference_urls=["https://arxiv.org/abs/2512.11239"],
        )

    def _compute(self, predictions, references, modality_predictions=None, num_labels=None, label_names=None):
        metrics = _maths()
        task = self._task()
        kwargs = {"modality_predictions": modality_predictions}
        if task == "classification":
            kwargs.update(num_labels=num_labels, label_names=label_names)
        return metrics.compute_metrics(task, predictions, references, **kwargs)
