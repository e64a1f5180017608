"""comp-emotion recipes: accelerate training, evaluation and missing-rate sweeps for ComP.

Entry points (also console scripts): ``recipes.train:main`` (``comp-train``), ``recipes.evaluation:main``
(``comp-eval``), ``recipes.sweep:main`` (``comp-sweep``). The metrics live in :mod:`recipes.metrics` and, as a
local `evaluate` module, in ``recipes/comp_metric``. Submodules are imported lazily so that importing the
package stays cheap.
"""

__all__ = ["config", "metrics", "common", "train", "evaluation", "sweep", "model_card"]
