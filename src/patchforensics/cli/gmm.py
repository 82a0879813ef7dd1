"""``patchforensics gmm-fit`` and ``patchforensics gmm-sample``."""
from __future__ import annotations

import argparse

from .prepare import _split as split_fractions


def register(sub, name: str) -> None:
    {"gmm-fit": _register_fit, "gmm-sample": _register_sample}[name](sub, name)


def _register_fit(sub, name: str) -> None:
    p = sub.add_parser(name, help="fit a mixture of factor analysers (the paper's GMM generator) on real faces",
                       description="Fit a GMM whose components are factor analysers (Richardson & Weiss 2018) on "
                                   "low-resolution copies of the reals, with EM on the CPU; writes "
                                   "MODEL_DIR/gmm.safetensors and gmm.yaml.")
    p.add_argument("real", metavar="REAL_DIR", help="real faces (its train/ subfolder if present)")
    p.add_argument("out", metavar="MODEL_DIR")
    p.add_argument("--resolution", type=int, default=64, help="model resolution in pixels (default 64)")
    p.add_argument("--grayscale", action="store_true", help="model grey images (default colour)")
    p.add_argument("--components", dest="n_components", type=int, default=8, help="mixture components (default 8)")
    p.add_argument("--latent-dim", type=int, default=16, help="factors per component (default 16)")
    p.add_argument("--iterations", type=int, default=10, help="EM iterations (default 10)")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="do not add mirrored training copies")
    p.add_argument("--max-images", type=int, default=None, help="use at most this many reals")
    p.add_argument("--seed", type=int, default=0, help="fixes the k-means initialisation (default 0)")
    p.add_argument("--force", action="store_true", help="write into a non-empty MODEL_DIR")
    p.set_defaults(func=run_fit)


def _register_sample(sub, name: str) -> None:
    p = sub.add_parser(name, help="sample a fake dataset from a model written by gmm-fit",
                       description="Draw samples at the model's resolution and bring them to --size with "
                                   "prepare's pipeline; writes OUT/{train,val,test}/NNNNNN.png, components.npy, "
                                   "latents.npy, manifest.csv and summary.json.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("-n", type=int, default=500, help="number of samples (default 500)")
    p.add_argument("--size", type=int, default=128, help="output side in pixels, the reals' (default 128)")
    p.add_argument("--seed", type=int, default=0, help="fixes the samples and the split (default 0)")
    p.add_argument("--noise", action="store_true", help="add the per-pixel noise term (default: off)")
    p.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                   help="one JPEG round trip at quality Q before resizing, as the reals had (default: none)")
    p.add_argument("--split", type=split_fractions, default=(0.7, 0.1, 0.2), help="train,val,test fractions")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT (kept until the new one is complete)")
    p.set_defaults(func=run_sample)


def run_fit(args: argparse.Namespace) -> int:
    from ..data.gmm import GMMFitConfig, gmm_fit
    from .options import progress_enabled

    cfg = GMMFitConfig(real=args.real, out=args.out, resolution=args.resolution, grayscale=args.grayscale,
                       n_components=args.n_components, latent_dim=args.latent_dim, iterations=args.iterations,
                       flip=args.flip, max_images=args.max_images, seed=args.seed, force=args.force)
    print(f"model written to {gmm_fit(cfg, progress=progress_enabled())}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from ..data.gmm import GMMSampleConfig, gmm_sample
    from .options import progress_enabled
    from .sample import print_result

    cfg = GMMSampleConfig(model=args.model, out=args.out, n=args.n, size=args.size or None, seed=args.seed,
                          noise=args.noise, jpeg_quality=args.jpeg_quality, split=args.split, force=args.force)
    result = gmm_sample(cfg, progress=progress_enabled())
    print_result(result)
    return 0 if sum(result.counts.values()) else 1
