"""examples/predict_missing.py shows what missing modalities change, with the bundled trained checkpoint."""

import importlib.util
import re

import pytest
from recipes_helpers import REPO


def test_predict_missing_example_shows_the_effect_of_missing_modalities(capsys):
    if not (REPO / "spaces" / "comp-demo" / "checkpoint" / "comp_run.json").is_file():
        pytest.skip("the Space's bundled checkpoint is not in this checkout")
    spec = importlib.util.spec_from_file_location("predict_missing", REPO / "examples" / "predict_missing.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main([]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(atv|at|av|tv|a|t|v)\s+([\d.]+) %\s+\| (.+)$", out, flags=re.M)
    assert [r[0] for r in rows] == list(example.CONDITIONS)
    accuracies = {name: float(acc) for name, acc, _ in rows}
    assert len(set(accuracies.values())) > 1 and len({r[2] for r in rows}) > 1  # the conditions differ
    assert accuracies["atv"] > accuracies["v"]  # a trained model: everything observed beats video alone
    assert "coordinator weights" in out
