"""What the Space serves: :class:`SpaceSettings` read from environment variables (no Gradio).

The variables (all optional) are documented in ``app.py`` and ``docs/space.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .inputs import MAX_FILE_BYTES_DEFAULT


__all__ = ["ASSETS_FILE", "SPACE_DIR", "SpaceSettings", "launch_options"]

#: The Space folder (``app.py``, ``assets.json``, ``checkpoint/``, ``examples.parquet``).
SPACE_DIR = Path(__file__).resolve().parents[1]
ASSETS_FILE = "assets.json"


@dataclass
class SpaceSettings:
    """What the Space serves; :meth:`from_env` reads the environment variables of the module docstring."""

    checkpoints: dict[str, str]
    examples_path: Path | None
    synthetic_refs: set[str] = field(default_factory=set)
    allow_custom_checkpoints: bool = False
    text_offline: bool | None = None
    max_file_bytes: int = MAX_FILE_BYTES_DEFAULT
    concurrency: int = 1
    torch_threads: int | None = None
    assets: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SpaceSettings:
        """Settings from environment variables (see the module docstring).

        Raises:
            ValueError: on a malformed variable, naming it and its value.
        """
        env = dict(os.environ if environ is None else environ)
        assets: dict[str, Any] = {}
        assets_path = SPACE_DIR / ASSETS_FILE
        if assets_path.is_file():
            try:
                assets = json.loads(assets_path.read_text())
            except ValueError as err:
                raise ValueError(f"{assets_path}: not valid JSON ({err})") from None
        bundled = SPACE_DIR / str(assets.get("checkpoint", "checkpoint"))
        default = env.get("COMP_CHECKPOINT", "").strip() or str(bundled)
        synthetic: set[str] = set()
        if default == str(bundled) and assets.get("synthetic", True):
            label = "bundled: ComP trained on a synthetic corpus with generated text (synthetic)"
            synthetic.add(default)
        else:
            label = default
            if label == default and Path(default).expanduser().is_dir():
                label = f"local: {Path(default).name}"  # never show a server-side path
        checkpoints = {label: default}
        for item in filter(None, (part.strip() for part in env.get("COMP_CHECKPOINTS", "").split(","))):
            name, _, ref = item.partition("=") if "=" in item else (item, "", item)
            if not ref.strip():
                raise ValueError(f"COMP_CHECKPOINTS: entry {item!r} has an empty reference; expected ref or label=ref")
            name = name.strip()
            if name == ref.strip() and Path(name).expanduser().is_dir():
                name = f"local: {Path(name).name}"
            checkpoints[name] = ref.strip()
        examples = env.get("COMP_EXAMPLES", "").strip()
        examples_path = Path(examples) if examples else SPACE_DIR / str(assets.get("examples", "examples.parquet"))

        def flag(name: str, default: str) -> str:
            value = env.get(name, default).strip().lower()
            if value not in ("0", "1", "true", "false", "auto", "yes", "no"):
                raise ValueError(f"{name}={value!r}: expected 0/1 (or auto)")
            return value

        offline = flag("COMP_TEXT_OFFLINE", "auto")
        text_offline = None if offline == "auto" else offline in ("1", "true", "yes")

        def positive(name: str, default: str) -> float:
            raw = env.get(name, default)
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected a positive number") from None
            if not value > 0:
                raise ValueError(f"{name}={raw!r}: expected a positive number")
            return value

        return cls(
            checkpoints=checkpoints,
            examples_path=examples_path,
            synthetic_refs=synthetic,
            allow_custom_checkpoints=flag("COMP_ALLOW_CUSTOM_CHECKPOINTS", "0") in ("1", "true", "yes"),
            text_offline=text_offline,
            max_file_bytes=int(positive("COMP_MAX_FILE_MB", "16") * 2**20),
            concurrency=int(positive("COMP_CONCURRENCY", "1")),
            torch_threads=int(positive("COMP_TORCH_THREADS", "1")),
            assets=assets,
        )


def launch_options(settings: SpaceSettings) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` that belong to the Space (not the host/port)."""
    # Gradio refuses bigger uploads outright; between the two limits the app's own check explains the problem.
    return {"max_file_size": 2 * settings.max_file_bytes, "show_error": True}
