"""Shared test configuration: offline, deterministic, the repository importable without installation."""

import os
import sys
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
for _path in (REPO_ROOT, TESTS_DIR):  # the packages, and shared test helpers (hub_standin, package_blocker)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# Tests never reach a hub: anything that tries fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compute thread per test process (and per subprocess it starts): on a busy 2-core machine torch's default of
# one thread per core makes every test slower. A test about threads sets its own.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402


torch.set_num_threads(1)

CHROMIUM = Path("/usr/bin/chromium")


def pytest_collection_modifyitems(config, items):
    """Browser tests need Debian's chromium. On a machine without it they are skipped with the reason printed; under
    CI (COMP_REQUIRE_BROWSER=1, set by .ci/run, which installs chromium) they run and fail if it is missing."""
    if CHROMIUM.exists() or os.environ.get("COMP_REQUIRE_BROWSER") == "1":
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install chromium); .ci/run installs it")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
