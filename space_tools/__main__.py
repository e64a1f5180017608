"""``python -m space_tools {build_assets,deploy} ...``: build the Space's assets, or stage and upload the Space."""

from __future__ import annotations

import sys


USAGE = (
    "usage: python -m space_tools {build_assets,deploy} [options]\n"
    "  build_assets   train the bundled checkpoint and write the held-out examples (python -m space_tools "
    "build_assets --help)\n"
    "  deploy         stage the Space (wheel, requirements, app, assets) and upload it (python -m space_tools "
    "deploy --help)"
)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the sub-command's own ``main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "build_assets":
        from space_tools.build_assets import main as run
    elif command == "deploy":
        from space_tools.deploy import main as run
    else:
        print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
