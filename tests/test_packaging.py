"""The package as shipped: declared dependencies, the wheel's contents, the console scripts without the extras."""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from package_blocker import block_source


ROOT = Path(__file__).resolve().parents[1]
OWN_PACKAGES = ("modeling_comp", "hub_datasets", "recipes")
CORE_PACKAGES = ("modeling_comp", "hub_datasets")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _dist_names(block: str) -> set[str]:
    """Normalised distribution names of a requirements block of setup.cfg (``%(extra)s`` references skipped)."""
    names = set()
    for line in block.strip().splitlines():
        line = line.strip()
        if line and not line.startswith("%("):
            names.add(_normalise(re.match(r"[A-Za-z0-9_.\-]+", line).group(0)))
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(package: str) -> dict[str, list[str]]:
    """Top-level names of the absolute imports anywhere in ``package`` (function-level ones included) -> where."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN_PACKAGES and top != "__future__":
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _undeclared(package: str, declared: set[str]) -> dict[str, str]:
    module_to_dists = packages_distributions()
    undeclared = {}
    for module, where in _imports(package).items():
        dists = {_normalise(d) for d in module_to_dists.get(module, [module])}
        if not dists & declared:
            undeclared[module] = f"{sorted(dists)} imported at {', '.join(where[:3])}"
    return undeclared


def test_core_packages_import_only_what_install_requires_declares():
    """`pip install comp-emotion` without extras must give importable `modeling_comp` and `hub_datasets`: every
    third-party module they import (at any level) belongs to a distribution named in install_requires."""
    declared = _dist_names(_setup_cfg()["options"]["install_requires"])
    assert {"pyyaml", "tqdm"} <= declared
    assert _undeclared("modeling_comp", declared) == {}
    assert _undeclared("hub_datasets", declared) == {}


def test_recipes_import_only_declared_distributions():
    cfg = _setup_cfg()
    declared = _dist_names(cfg["options"]["install_requires"])
    for block in cfg["options.extras_require"].values():
        declared |= _dist_names(block)
    assert _undeclared("recipes", declared) == {}


def test_the_console_scripts_check_exactly_the_train_extra():
    from recipes.cli import TRAIN_EXTRA_MODULES

    assert set(TRAIN_EXTRA_MODULES) == _dist_names(_setup_cfg()["options.extras_require"]["train"])
    module_to_dists = packages_distributions()
    for dist, module in TRAIN_EXTRA_MODULES.items():  # the import name really is that distribution's
        assert dist in {_normalise(d) for d in module_to_dists.get(module, [])}, (dist, module)


def _console_scripts() -> dict[str, str]:
    block = _setup_cfg()["options.entry_points"]["console_scripts"]
    return dict((part.strip() for part in line.split("=", 1)) for line in block.strip().splitlines() if line.strip())


def _run_entry_point(target: str, argv: list[str], prelude: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess:
    module, function = target.split(":")
    code = f"{prelude}\nimport sys\nsys.argv = {argv!r}\nfrom {module} import {function} as entry\nsys.exit(entry())"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.mark.parametrize("script", ["comp-train", "comp-eval", "comp-sweep"])
def test_a_recipe_script_without_the_train_extra_says_so_in_one_line(script):
    target = _console_scripts()[script]
    result = _run_entry_point(target, [script, "--help"], prelude=block_source("sklearn"))
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"{script} needs the training extra (missing: sklearn): pip install 'comp-emotion[train]'\n"
    )
    assert result.stdout == ""


def test_a_recipe_script_with_the_train_extra_runs_the_recipe():
    result = _run_entry_point(_console_scripts()["comp-train"], ["comp-train", "--help"])
    assert result.returncode == 0, result.stderr
    assert "--missing_rate" in result.stdout


_PROBE = """
import json, sys
{call}
print(json.dumps({{"modules": sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'modeling_comp'))}}),
      file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (["--help"], 0, "--checkpoint CHECKPOINT"),
        ([], 2, "the following arguments are required: --checkpoint, --output"),
        (["--checkpoint", "x.pth", "--output", "o", "--corpus", "cmu"], 2, "invalid choice: 'cmu'"),
    ],
)
def test_comp_convert_parses_its_arguments_before_importing_torch(argv, code, expected):
    """--help and usage errors answer without importing torch or the model (which take seconds)."""
    target = _console_scripts()["comp-convert"]
    assert target == "recipes.cli:convert"
    call = (
        f"from recipes.cli import convert\ntry:\n    convert({argv!r})\nexcept SystemExit as exit:\n"
        "    status = exit.code\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(call=call) + "sys.exit(status)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == code, result.stderr
    assert expected in result.stdout + result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1]) == {"modules": []}


def test_comp_convert_runs_the_converter_once_the_arguments_are_valid(tmp_path, capsys):
    from recipes.cli import convert

    assert convert(["--checkpoint", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "o")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err


def test_converter_corpora_are_the_configs():
    from modeling_comp import CORPUS_MODALITY_FEATURES
    from modeling_comp.convert_arguments import CONVERTIBLE_CORPORA

    assert tuple(sorted(CORPUS_MODALITY_FEATURES)) == CONVERTIBLE_CORPORA


# ------------------------------------------------------------------------------------------------ the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    """The wheel setuptools builds from a copy of the sources (as `pip install .` would), and its build log."""
    pytest.importorskip("setuptools", minversion="70.1", reason="the dev extra installs setuptools>=70.1")
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in OWN_PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
        (source / package / "__pycache__").mkdir(exist_ok=True)  # as in a working tree after the tests ran
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-c", f"import setuptools.build_meta as b; print(b.build_wheel({str(dist)!r}))"],
        capture_output=True,
        text=True,
        cwd=source,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return dist / build.stdout.strip().splitlines()[-1], build.stdout + build.stderr


def test_the_wheel_builds_without_setuptools_warnings(wheel):
    _, log = wheel
    assert "would be ignored" not in log
    assert not [line for line in log.splitlines() if "Warning" in line], log[-3000:]


def test_the_wheel_ships_every_module_config_and_the_metric(wheel):
    path, _ = wheel
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = configparser.ConfigParser()
        scripts.read_string(archive.read(entry_points).decode())
    expected = {
        str(p.relative_to(ROOT))
        for package in OWN_PACKAGES
        for p in (ROOT / package).rglob("*")
        if p.is_file() and p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
    }
    expected |= {"recipes/comp_metric/README.md"}
    assert {n for n in expected if n.endswith(".yaml")} >= {
        "recipes/configs/synthetic.yaml",
        "recipes/accelerate_configs/default.yaml",
    }
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    assert dict(scripts["console_scripts"]) == _console_scripts()


def test_the_metric_module_loads_from_the_installed_wheel_anywhere(wheel, tmp_path):
    """`evaluate` loads `comp_metric` from the installed package's files, whatever the working directory."""
    pytest.importorskip("evaluate")
    path, _ = wheel
    site = tmp_path / "site"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(site)  # a wheel installs by unpacking into site-packages
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = """
import json, evaluate, recipes
from recipes.metrics import evaluate_metrics, metric_module_path
reg = evaluate.load(str(metric_module_path()), "regression")
print(json.dumps({
    "package": recipes.__file__,
    "module": str(metric_module_path()),
    "classification": evaluate_metrics("classification", [0, 1, 1, 2], [0, 1, 2, 2], label_names=["a", "b", "c"]),
    "regression": reg.compute(predictions=[1.0, -2.0, 0.5], references=[2.0, -1.0, -0.5]),
}))
"""
    env = {**os.environ, "PYTHONPATH": str(site), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).is_relative_to(site) and Path(out["module"]).is_relative_to(site)
    from recipes.metrics import classification_metrics, regression_metrics

    assert out["classification"] == classification_metrics([0, 1, 1, 2], [0, 1, 2, 2], label_names=["a", "b", "c"])
    assert out["regression"] == regression_metrics([1.0, -2.0, 0.5], [2.0, -1.0, -0.5])
