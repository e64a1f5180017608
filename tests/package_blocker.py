"""Source code that, run first in a fresh Python process, makes comp-emotion's packages unimportable there.

Used by the tests that prove a checkpoint loads with `trust_remote_code=True` on a machine without comp-emotion:
in CI the package is installed (editable) in the test environment, so clearing PYTHONPATH is not enough.
"""

BLOCK_PACKAGES = r"""
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('modeling_comp', 'hub_datasets', 'recipes'):
            raise ImportError(f'{name} is blocked: this process simulates a machine without comp-emotion')
        return None
sys.meta_path.insert(0, _Block())
"""
