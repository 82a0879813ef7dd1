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


def add_fast_path_options(parser: argparse.ArgumentParser, training: bool) -> None:
    """Switches of the fast paths (docs/performance.md); defaults come from the config."""
    add_bool(parser, "channels-last", "channels_last memory format (default on)")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default=argparse.SUPPRESS,
                        help="bf16 autocast: auto (default) = only on GPUs and CPUs with native bf16 "
                             "(AMX/AVX512-BF16), where it is faster")
    add_bool(parser, "fold-bn", "fold BatchNorm into convolutions for inference (default on)")
    backend = "--inference-backend" if training else "--backend"
    parser.add_argument(backend, dest=backend[2:].replace("-", "_"), choices=["auto", "torch", "onnx"],
                        default=argparse.SUPPRESS,
                        help="inference engine" + (" for validation" if training else "")
                             + ": auto (default) = ONNX Runtime on CPU, PyTorch on GPU")
    parser.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                        help="intra-op threads per process (default 0 = one per core, shared by torchrun's "
                             "processes)")
    if training:
        parser.add_argument("--cache-mb", dest="cache_mb", type=int, default=argparse.SUPPRESS,
                            help="keep up to this many MiB of decoded, resized images in memory "
                                 "(default 2048; 0 = decode every time)")
        add_bool(parser, "compile", "torch.compile the training step (default off: slow to compile on CPUs)")
