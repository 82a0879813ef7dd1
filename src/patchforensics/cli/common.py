"""Option helpers shared by the command modules."""
from __future__ import annotations

import argparse
from typing import Any


def add_bool(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """``--name`` / ``--no-name`` pair whose default is left to the config."""
    parser.add_argument(f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction,
                        default=argparse.SUPPRESS, help=help)


def given(args: argparse.Namespace, *skip: str) -> dict[str, Any]:
    """Options the user actually passed (defaults are SUPPRESSed), minus ``skip``."""
    return {k: v for k, v in vars(args).items()
            if k not in ("func", "command", *skip) and v is not None}


def progress_enabled() -> bool:
    import sys
    return sys.stderr.isatty()
