"""Option helpers shared by the command modules."""
from __future__ import annotations

import argparse
from typing import Any


def add_bool(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """``--name`` / ``--no-name`` pair whose default is left to the config."""
    parser.add_argument(f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction,
                        default=argparse.SUPPRESS, help=help)


def given(args: argparse.Namespace, *skip: str) -> dict[str, Any]:
    """Options the user actually passed (defaults are SUPPRESSed), minus the parser's own keys and ``skip``."""
    return {k: v for k, v in vars(args).items()
            if k not in ("func", "command", "resume_hint", *skip) and v is not None}


def print_skipped(skipped: list[dict], what: str) -> None:
    """List the first 20 skipped inputs (``{"path", "reason"}`` dicts) under
    ``skipped <n> <what>:``; the full list is in the command's summary file."""
    if skipped:
        print(f"skipped {len(skipped)} {what}:")
        for s in skipped[:20]:
            print(f"  {s['path']}: {s['reason']}")


def progress_enabled() -> bool:
    import sys
    return sys.stderr.isatty()


def add_backend_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--backend``, the same option in every command that scores images."""
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], default=argparse.SUPPRESS,
                        help=f"inference backend{what}: auto (default) = ONNX Runtime on a CPU (the fastest "
                             "path measured there), PyTorch on a GPU")


def add_fast_path_options(parser: argparse.ArgumentParser, training: bool) -> None:
    """Switches of the fast paths (docs/performance.md); defaults come from the config."""
    add_bool(parser, "channels-last", "channels_last memory format (default on)")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default=argparse.SUPPRESS,
                        help="bf16 autocast: auto (default) = only on GPUs and CPUs with native bf16 "
                             "(AMX/AVX512-BF16), where it is faster")
    add_bool(parser, "fold-bn", "fold BatchNorm into convolutions for inference (default on)")
    add_backend_option(parser, " (for validation passes)" if training else "")
    parser.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                        help="intra-op threads per process (default 0 = one per core, shared by torchrun's "
                             "processes)")
    if training:
        parser.add_argument("--cache-mb", dest="cache_mb", type=int, default=argparse.SUPPRESS,
                            help="keep up to this many MiB of decoded, resized images in memory "
                                 "(default 2048; 0 = decode every time)")
        add_bool(parser, "compile", "torch.compile the training step (default off: slow to compile on CPUs)")


def add_dataset_options(p: argparse.ArgumentParser,
                        force_help: str = "replace an existing output folder") -> None:
    """The checkpoint/dataset/results options of ``test``, ``visualize`` and ``patches``."""
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    p.add_argument("--real", action="append", required=True, metavar="DIR")
    p.add_argument("--fake", action="append", required=True, metavar="DIR")
    p.add_argument("--dataset-name", required=True, help="name of this dataset in the results path")
    p.add_argument("--which-epoch", default="bestval", help="bestval (default) | latest | an epoch number")
    p.add_argument("--partition", default="test",
                   help="split subfolder of --real/--fake to use (default test); a folder with none of "
                        "train/, val/, test/ is used whole, one without this split is refused")
    p.add_argument("--corrupt", action="append", default=[], metavar="SPEC",
                   help="test-time corruption, combinable: jpeg:75, blur:1.0, gamma:1.2, flip, resize:0.5, grey, "
                        "noise:4, hue:20, saturation:1.5, brightness:1.2, contrast:0.7, shift:2, backdrop:grey")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help=force_help)


def dataset_kwargs(args: argparse.Namespace) -> dict:
    """Those options as keyword arguments of the dataset configs (TestConfig and friends)."""
    return dict(checkpoint=args.checkpoint, real=args.real, fake=args.fake, dataset_name=args.dataset_name,
                which_epoch=args.which_epoch, partition=args.partition, corrupt=args.corrupt,
                results_dir=args.results_dir, batch_size=args.batch_size, num_workers=args.num_workers,
                device=args.device, force=args.force)


def add_slurm_options(parser: argparse.ArgumentParser, task: str) -> None:
    """``--executor`` and the ``--slurm-*`` options of the commands that can run as a Slurm job
    array (``task``: what one array task does, for the help)."""
    parser.add_argument("--executor", choices=["local", "slurm"], default="local",
                        help=f"local (default): run here; slurm: submit one Slurm job array ({task}) with "
                             "sbatch, print its job id and return (see --wait); docs/performance.md, "
                             "'On a cluster'")
    group = parser.add_argument_group("Slurm (with --executor slurm; each option is per array task)")
    group.add_argument("--slurm-partition", metavar="NAME", help="partition (default: the cluster's default)")
    group.add_argument("--slurm-cpus", type=int, metavar="N",
                       help="CPU cores per task (--cpus-per-task; also its thread count)")
    group.add_argument("--slurm-gpus", type=int, metavar="N", help="GPUs per task (--gres=gpu:N)")
    group.add_argument("--slurm-mem", metavar="SIZE", help="memory per task, e.g. 16G")
    group.add_argument("--slurm-time", type=int, metavar="MINUTES",
                       help="time limit per task; a task near it requeues itself and resumes")
    group.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, by its long name: --slurm-extra account=myproj "
                            "--slurm-extra qos=normal; repeatable")
    group.add_argument("--wait", action="store_true",
                       help="wait for the job (squeue and the result files; no sacct needed), then collect "
                            "its results as a local run would")


def slurm_config(args: argparse.Namespace):
    """The ``--slurm-*`` options as a :class:`~patchforensics.core.cluster.SlurmConfig`."""
    from ..core.cluster import SlurmConfig

    return SlurmConfig(partition=args.slurm_partition, cpus=args.slurm_cpus, gpus=args.slurm_gpus,
                       mem=args.slurm_mem, time=args.slurm_time, extra=args.slurm_extra)


def refuse_unused_slurm_options(args: argparse.Namespace) -> None:
    """With ``--executor local`` the Slurm options would be ignored silently: refuse them in one line."""
    given_slurm = [name for name in ("slurm_partition", "slurm_cpus", "slurm_gpus", "slurm_mem", "slurm_time")
                   if getattr(args, name) is not None] + (["slurm_extra"] if args.slurm_extra else []) \
        + (["wait"] if args.wait else [])
    if given_slurm:
        raise ValueError(f"--{given_slurm[0].replace('_', '-')} applies to --executor slurm only")
