"""README.md opens with exactly the two set-up commands, and CI runs exactly the second one."""

import re
from pathlib import Path


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
