"""Source code that, run first in a fresh Python process, makes some top-level packages unimportable there.

`BLOCK_PACKAGES` blocks comp-emotion's own packages: used by the tests that prove a checkpoint loads with
`trust_remote_code=True` on a machine without comp-emotion (in CI the package is installed (editable) in the test
environment, so clearing PYTHONPATH is not enough). `block_source(...)` blocks any others, e.g. a dependency of an
extra, to see what a user without it gets.
"""


def block_source(*packages: str, reason: str = "this process simulates a machine without it") -> str:
    """Python source that makes importing (or finding) any of ``packages`` raise ModuleNotFoundError."""
    return rf"""
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {tuple(packages)!r}:
            raise ModuleNotFoundError(f'{{name}} is blocked: {reason}', name=name)
        return None
sys.meta_path.insert(0, _Block())
"""


BLOCK_PACKAGES = block_source(
    "modeling_comp", "hub_datasets", "recipes", reason="this process simulates a machine without comp-emotion"
)
