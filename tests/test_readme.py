"""README.md opens with exactly the two set-up commands, CI runs both verbatim, and the training command works."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    assert block, "README.md has no code block"
    before = text[: block.start()]
    assert not re.search(r"^\s*(pip|python|accelerate)\b", before, re.M), "a command appears before the first block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_opens_with_two_setup_commands():
    commands = setup_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert "recipes/train.py" in main_job and "torch==2.13.0" in main_job
    assert "pytest" in tests and "torch==2.13.0" in tests


def test_ci_runs_the_readme_test_command():
    """CI runs each step of the README's `<install> && <tests>` command verbatim, each on its own line so that a
    failing install stops CI at once with its own message (a failing first command of an `&&` list does not stop a
    `set -e` script)."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    steps = [step.strip() for step in setup_commands()[1].split("&&")]
    assert len(steps) == 2, steps
    for step in steps:
        runs = [line for line in ci if line.startswith(step + " ")]
        assert runs, f"CI does not run the README step {step!r}"
        assert all("|| fail" in line for line in runs), f"CI runs {step!r} without stopping on its failure"
    install_line = ci.index(next(line for line in ci if line.startswith(steps[0] + " ")))
    test_line = ci.index(next(line for line in ci if line.startswith(steps[1] + " ")))
    assert install_line < test_line


def test_ci_runs_both_readme_commands_verbatim():
    """Each step of each of README's two opening commands is a line of .ci/run, in README's order."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    positions = []
    for command in setup_commands():
        for step in (part.strip() for part in command.split("&&")):
            runs = [i for i, line in enumerate(ci) if line == step or line.startswith(step + " ")]
            assert runs, f"CI does not run the README step {step!r}"
            assert all("|| fail" in ci[i] for i in runs), f"CI runs {step!r} without stopping on its failure"
            positions.append(runs[0])
    assert positions == sorted(positions), "CI runs README's steps in another order"


def _training_step() -> list[str]:
    steps = [part.strip() for part in setup_commands()[0].split("&&")]
    assert len(steps) == 2 and steps[0].startswith("pip install "), steps
    return shlex.split(steps[1])


def _run_training(tmp_path: Path, extra: list[str]) -> subprocess.CompletedProcess:
    """README's training command from a working directory whose `recipes/` is the repository's (so that its
    relative paths resolve exactly as in a clone) and whose `runs/` is the test's own."""
    command = _training_step()
    assert command[:2] == ["accelerate", "launch"], command
    (tmp_path / "recipes").symlink_to(ROOT / "recipes", target_is_directory=True)
    launcher = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [launcher, *command[1:], *extra], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1200
    )


def _check_run(result: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert "test metrics (synthetic)" in result.stdout
    selected = re.search(r"^selected model: (\S+)$", result.stdout, re.M)
    assert selected, result.stdout[-2000:]
    model = tmp_path / selected.group(1)
    assert model.is_relative_to(tmp_path / "runs") and (model / "config.json").is_file()
    assert (model / "model.safetensors").is_file()


def test_readme_training_command_runs_short(tmp_path):
    """README's first command's training part, verbatim, with two epochs appended (the defaults run 15)."""
    result = _run_training(tmp_path, ["--epochs", "2", "--stage1_epochs", "1"])
    _check_run(result, tmp_path)


@pytest.mark.slow
def test_readme_training_command_runs_as_written(tmp_path):
    """README's first command's training part exactly as written, with its defaults (~1 min idle, 3+ min loaded)."""
    result = _run_training(tmp_path, [])
    _check_run(result, tmp_path)
