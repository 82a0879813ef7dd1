"""Command-line interface: ``patchforensics <command> …``.

A thin layer over the Python API: each module in this package parses one
command's options into its typed config and calls the library function.
Errors a user can fix (bad option, missing folder, existing output) print one
line saying what to do and exit with status 2, before any work starts.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> module of patchforensics.cli that registers it
COMMANDS = {
    "prepare": "prepare",
    "export-tfrecord": "export_tfrecord",
    "align": "align",
    "align-video": "align_video",
    "sample": "sample",
    "invert": "invert",
    "gmm-fit": "gmm",
    "gmm-sample": "gmm",
    "import-seed": "import_seed",
    "models": "models",
    "train": "train",
    "test": "test",
    "calibrate": "calibrate",
    "detect": "detect",
    "serve": "serve",
    "export": "export",
    "test-suite": "suite",
    "demo": "demo",
    "visualize": "visualize",
    "patches": "patches",
    "regions": "regions",
    "probe": "probe",
    "report": "report",
    "experiment": "experiment",
    "findings": "findings",
    "release": "release",
    "adapt": "adapt",
    "adapt-benchmark": "adapt",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchforensics",
        description="Detect generated face images with patch classifiers and show where the evidence is.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(f"{__name__}.{module}").register(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..core.config import ConfigError
    from ..core.fileio import OutputExistsError
    from ..core.imageio import NoUsableImagesError

    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):   # an undecodable file name must not crash a print
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()     # a closed pipe shows here, not at exit where it cannot be handled
        return status
    except BrokenPipeError:
        # the reader went away (``patchforensics models | head -1``): point stdout at devnull,
        # as the Python docs advise (signal module, "Note on SIGPIPE"), so that the
        # interpreter's final flush does not raise again; one line on stderr, exit 2 like
        # every other stop the user can act on
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        print(f"patchforensics {args.command}: output closed early (broken pipe); the rest was not "
              "written (send it to a file to keep all of it)", file=sys.stderr)
        return 2
    except (ConfigError, FileNotFoundError, NotADirectoryError, OutputExistsError, ValueError) as e:
        print(f"patchforensics {args.command}: error: {e}", file=sys.stderr)
        return 2
    except NoUsableImagesError as e:
        print(f"patchforensics {args.command}: nothing usable: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", None)     # commands that can pick up where they stopped say how
        print(f"patchforensics {args.command}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
