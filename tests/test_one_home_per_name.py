"""Every shared name has one home: an AST scan of the shipped code fails when one is defined a second time.

Homes: the batch keys, the modality order and the row fields in `modeling_comp/names.py` (checkpoints' remote code
needs them); the corpus names, the missing-data protocols and the Hub-id check in `hub_datasets/constants.py`
(which reads the former from `modeling_comp/names.py` without importing the model package); the corpus
descriptions `CORPORA` in `hub_datasets/schema.py`; the training protocols in `recipes/config.py`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("modeling_comp", "hub_datasets", "recipes", "spaces", "space_tools", "benchmarks", "examples")

NAMES_HOME = "modeling_comp/names.py"
DATA_HOME = "hub_datasets/constants.py"
HOMES = {
    **dict.fromkeys(
        (
            "AUDIO",
            "TEXT",
            "VIDEO",
            "MODALITIES",
            "MODALITY_MASK",
            "ATTENTION_MASK",
            "LABELS",
            "UTTERANCE_INDEX",
            "MODEL_INPUT_NAMES",
            "CONVERSATION_INDEX",
            "DIALOG_ID",
            "UTTERANCE_IDS",
        ),
        NAMES_HOME,
    ),
    **dict.fromkeys(
        (
            "IEMOCAP_CORPORA",
            "CMU_CORPORA",
            "CORPUS_NAMES",
            "DATASET_NAMES",
            "SYNTHETIC",
            "MISSING_PROTOCOLS",
            "HUB_ID_PATTERN",
        ),
        DATA_HOME,
    ),
    "CORPORA": "hub_datasets/schema.py",
    "TRAINING_PROTOCOLS": "recipes/config.py",
}
#: Names whose second meaning was renamed away; defining them again brings the ambiguity back.
RETIRED = {
    "PROTOCOLS": "MISSING_PROTOCOLS (hub_datasets.constants) or TRAINING_PROTOCOLS (recipes.config)",
    "MODALITY_NAMES": "MODALITIES",
    "_MODALITIES": "MODALITIES",
    "_PROTOCOLS": "MISSING_PROTOCOLS",
    "_HUB_ID": "hub_datasets.constants.is_hub_id",
}
MODALITY_STRINGS = ("audio", "text", "video")


def _sources() -> list[tuple[str, ast.Module]]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "artifacts" in path.parts:  # frozen copies of old checkpoints' remote code, kept byte for byte
                continue
            files.append((path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))))
    return files


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []  # `batch[KEY] = ...`, `obj.attr = ...`: uses a name, defines none


def _assigned_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    else:
        return []
    return [name for target in targets for name in _target_names(target)]


def _reads_the_home(value: ast.AST | None) -> bool:
    """`X = _names.X` (or a tuple of such reads): a re-export of the home's value, not a second definition."""
    if value is None:
        return False
    parts = value.elts if isinstance(value, ast.Tuple) else [value]
    return all(
        isinstance(p, ast.Attribute) and isinstance(p.value, ast.Name) and p.value.id == "_names" for p in parts
    )


def redefinitions(sources: list[tuple[str, ast.Module]]) -> list[str]:
    problems = []
    for rel, tree in sources:
        for node in ast.walk(tree):
            for name in _assigned_names(node):
                if name in RETIRED:
                    problems.append(f"{rel}:{node.lineno} defines {name}; use {RETIRED[name]}")
                home = HOMES.get(name)
                if home is None or rel == home:
                    continue
                if rel == DATA_HOME and _reads_the_home(getattr(node, "value", None)):
                    continue
                problems.append(f"{rel}:{node.lineno} defines {name}, whose home is {home}")
    return problems


def spelled_out_modalities(sources: list[tuple[str, ast.Module]]) -> list[str]:
    problems = []
    for rel, tree in sources:
        if rel == NAMES_HOME:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List)):
                values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
                if tuple(values[:3]) == MODALITY_STRINGS:
                    problems.append(f"{rel}:{node.lineno} spells out the modality order; import MODALITIES")
    return problems


def hub_id_patterns(sources: list[tuple[str, ast.Module]]) -> list[str]:
    problems = []
    for rel, tree in sources:
        if rel == DATA_HOME:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "compile"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and ("/[" in node.args[0].value or "/\\w" in node.args[0].value)  # "<owner>/<name>"
            ):
                problems.append(f"{rel}:{node.lineno} compiles a Hub-id pattern; use hub_datasets.constants.is_hub_id")
    return problems


@pytest.fixture(scope="module")
def sources():
    return _sources()


def test_each_shared_name_is_defined_only_in_its_home(sources):
    problems = redefinitions(sources)
    assert not problems, "\n".join(problems)


def test_the_modality_tuple_is_spelled_out_only_in_its_home(sources):
    problems = spelled_out_modalities(sources)
    assert not problems, "\n".join(problems)


def test_hub_id_patterns_live_only_in_the_data_constants(sources):
    problems = hub_id_patterns(sources)
    assert not problems, "\n".join(problems)


def test_the_scans_find_what_they_look_for():
    """Not vacuous: a module that brings each kind of second home back is reported, line by line."""
    code = (
        'MODALITIES = ("audio", "text", "video")\n'
        'PROTOCOLS = ("a", "b")\n'
        'CONVERSATION_INDEX: str = "conversation_index"\n'
        '_HUB = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+$")\n'
        "batch[CONVERSATION_INDEX] = 1\n"  # a use, not a definition
        "ok = _names.AUDIO\n"
    )
    planted = [("recipes/planted.py", ast.parse(code))]
    assert redefinitions(planted) == [
        "recipes/planted.py:1 defines MODALITIES, whose home is modeling_comp/names.py",
        "recipes/planted.py:2 defines PROTOCOLS; use " + RETIRED["PROTOCOLS"],
        "recipes/planted.py:3 defines CONVERSATION_INDEX, whose home is modeling_comp/names.py",
    ]
    assert spelled_out_modalities(planted) == ["recipes/planted.py:1 spells out the modality order; import MODALITIES"]
    assert hub_id_patterns(planted) == [
        "recipes/planted.py:4 compiles a Hub-id pattern; use hub_datasets.constants.is_hub_id"
    ]
    # the data constants may re-export the home's values (read from modeling_comp/names.py), nothing else
    assert not redefinitions([(DATA_HOME, ast.parse("AUDIO, TEXT = _names.AUDIO, _names.TEXT"))])
    assert redefinitions([(DATA_HOME, ast.parse('AUDIO = "audio"'))])


def test_every_home_agrees_at_runtime():
    """The data side's names are the model's (same values), read without importing torch or the model package."""
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers'):\n"
        "    sys.modules[name] = None\n"
        "from hub_datasets import constants\n"
        "assert 'modeling_comp' not in sys.modules\n"
        "print(constants.MODALITIES, constants.CONVERSATION_INDEX)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "('audio', 'text', 'video') conversation_index"
    import modeling_comp
    from hub_datasets import constants
    from modeling_comp import configuration_comp, names

    for name, home in HOMES.items():
        if home == NAMES_HOME and hasattr(constants, name):
            assert getattr(constants, name) == getattr(names, name), name
        if home == NAMES_HOME and hasattr(configuration_comp, name):
            assert getattr(configuration_comp, name) is getattr(names, name), name
    assert modeling_comp.CONVERSATION_INDEX is names.CONVERSATION_INDEX
