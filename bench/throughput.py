"""Images per second of inference and training: plain fp32 eager PyTorch (the
reference) against the project's default fast path, in one process on the same
batches, plus |ΔAP| between the two inference paths on the shared test split.

    python bench/throughput.py                       # xception_block2 + resnet18_layer1, 128 and 299 px
    python bench/throughput.py --models xception_block2 --sizes 128 --json out.json

Timings alternate reference and fast path batch by batch, so load from other
processes hits both alike; each figure is the best of ``--repeats`` timed
batches after a warm-up (the least disturbed run), and the ratio compares
those. Sections:

- ``inference``: the reference, each fast path alone, and the default
  (``FastPath()``: what ``patchforensics test`` uses);
- ``training``: one optimizer step (forward, per-patch loss, backward, Adam),
  reference vs default (``TrainStep``);
- ``train loop``: real faces through the data path and the step, as
  ``patchforensics train`` runs them (decode every time vs the decoded cache);
- ``omp``: the default training step in fresh processes with libgomp's own
  wait policy (threads spin a while before sleeping) vs ``PASSIVE`` (the project's);
- ``|ΔAP|``: a briefly trained model (or ``--checkpoint``) scored on the test
  split by the reference and by the default inference path.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
if "--time-step" in sys.argv:
    # a wait-policy child: torch loads first, so an unset OMP_WAIT_POLICY means libgomp's own default
    import torch  # noqa: E402,F401
# as in the CLI, the package comes first and sets OpenMP's wait policy before torch loads
import patchforensics  # noqa: E402,F401

import numpy as np  # noqa: E402
import torch  # noqa: E402

from patchforensics.data.dataset import EpochSampler, collect_samples, make_loader  # noqa: E402
from patchforensics.data.transforms import TransformConfig, train_transform  # noqa: E402
from patchforensics.models import create_model  # noqa: E402
from patchforensics.models.card import ModelCard  # noqa: E402
from patchforensics.scoring.engine import Engine  # noqa: E402
from patchforensics.scoring.runtime import (FastPath, configure_runtime, cpu_has_native_bf16,  # noqa: E402
                                             inference_backend, make_dataset, use_bf16)
from patchforensics.scoring.metrics import AGGREGATIONS  # noqa: E402
from patchforensics.training.train import TrainStep  # noqa: E402

FACES = REPO.parent / "shared" / "data" / "faces128"
SECTIONS = ("inference", "training", "threads", "omp", "data", "loop", "ap")


def machine(device: torch.device) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_1min": os.getloadavg()[0]}
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def race(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Run each callable once to warm up, then ``repeats`` rounds alternating them;
    returns the best seconds per call of each."""
    for fn in fns.values():
        fn()
    sync(device)
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def with_bn_statistics(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BatchNorm layers non-trivial running statistics (as after training), so
    folding them is not a no-op."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def inference_variants(device: torch.device) -> dict[str, FastPath]:
    ref = FastPath.reference()
    variants = {"reference fp32 eager": ref,
                "channels_last": FastPath(channels_last=True, bf16="off", fold_bn=False, backend="torch"),
                "channels_last+fold_bn": FastPath(channels_last=True, bf16="off", fold_bn=True, backend="torch")}
    if use_bf16("auto", device):
        variants["channels_last+fold_bn+bf16"] = FastPath(bf16="on", backend="torch")
    if device.type == "cpu":
        variants["onnxruntime"] = FastPath(backend="onnx")
    variants[f"default ({describe(FastPath(), device)})"] = FastPath()
    return variants


def describe(fast: FastPath, device: torch.device) -> str:
    if inference_backend(fast, device) == "onnx":
        return "onnxruntime"
    parts = ["channels_last"] if fast.channels_last else []
    parts += ["fold_bn"] if fast.fold_bn else []
    parts += ["bf16"] if use_bf16(fast.bf16, device) else []
    return "+".join(parts) or "fp32"


def bench_inference(name: str, side: int, batch: int, repeats: int, device: torch.device) -> list[dict]:
    model = with_bn_statistics(create_model(name)).eval().to(device)
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1
    card = ModelCard(name=name, architecture=name, load_size=side, fine_size=side)
    runners = {k: Engine.from_model(model, card, f, device).logits for k, f in inference_variants(device).items()}
    with torch.inference_mode():
        ref_out = runners["reference fp32 eager"](x).float().cpu()
        err = {k: float((r(x).float().cpu() - ref_out).abs().max()) for k, r in runners.items()}
        best = race({k: (lambda r=r: r(x)) for k, r in runners.items()}, repeats, device)
    base = best["reference fp32 eager"]
    return [{"section": "inference", "model": name, "size": side, "batch": batch, "path": k,
             "img_s": batch / t, "ratio": base / t, "max_abs_logit_diff": err[k]} for k, t in best.items()]


def bench_training(name: str, side: int, batch: int, repeats: int, device: torch.device,
                   compile_too: bool) -> list[dict]:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(batch, 3, side, side, generator=g) * 2 - 1
    y = torch.randint(0, 2, (batch,), generator=g)
    paths = {"reference fp32 eager": FastPath.reference(), f"default ({describe_train(FastPath(), device)})": FastPath()}
    if compile_too:
        paths["torch.compile"] = FastPath(compile=True)
    steps, compile_s = {}, {}
    for k, fast in paths.items():
        model = create_model(name).to(device).train()
        step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), fast, device)
        t0 = time.perf_counter()
        step(x, y)   # first step; includes compilation for torch.compile
        sync(device)
        compile_s[k] = time.perf_counter() - t0
        steps[k] = (lambda s=step: s(x, y))
    best = race(steps, repeats, device)
    base = best["reference fp32 eager"]
    return [{"section": "training", "model": name, "size": side, "batch": batch, "path": k,
             "img_s": batch / t, "ratio": base / t, "first_step_s": compile_s[k]} for k, t in best.items()]


def describe_train(fast: FastPath, device: torch.device) -> str:
    parts = ["channels_last"] if fast.channels_last else []
    parts += ["bf16"] if use_bf16(fast.bf16, device) else []
    parts += ["compile"] if fast.compile else []
    return "+".join(parts) or "fp32"


def bench_threads(name: str, side: int, batch: int, repeats: int, device: torch.device) -> list[dict]:
    """The default training step and PyTorch inference at 1..cores intra-op threads."""
    counts = list(range(1, (os.cpu_count() or 1) + 1))
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(batch, 3, side, side, generator=g) * 2 - 1, torch.randint(0, 2, (batch,), generator=g)
    model = create_model(name).to(device)
    step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), FastPath(), device)
    infer = Engine.from_model(model, ModelCard(name=name, architecture=name, load_size=side, fine_size=side),
                              FastPath(backend="torch"), device).logits
    before = torch.get_num_threads()

    def at(n, fn):
        def run():
            torch.set_num_threads(n)
            fn()
        return run
    fns = {}
    for n in counts:
        fns[f"training step, {n} thread(s)"] = at(n, lambda: step(x, y))
        fns[f"inference (torch), {n} thread(s)"] = at(n, lambda: infer(x))
    best = race(fns, repeats, device)
    torch.set_num_threads(before)
    return [{"section": "threads", "model": name, "size": side, "batch": batch, "path": k, "img_s": batch / t,
             "ratio": best[k.rsplit(",", 1)[0] + ", 1 thread(s)"] / t} for k, t in best.items()]


def time_default_step(name: str, side: int, batch: int, repeats: int) -> float:
    """img/s of the default training step in this process (best of ``repeats``)."""
    device = torch.device("cpu")
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(batch, 3, side, side, generator=g) * 2 - 1, torch.randint(0, 2, (batch,), generator=g)
    model = create_model(name)
    step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), FastPath(), device)
    return batch / race({"step": lambda: step(x, y)}, repeats, device)["step"]


def bench_wait_policy(name: str, side: int, batch: int, repeats: int) -> list[dict]:
    """The default training step in fresh processes under each OpenMP wait policy
    (fixed when torch loads), in ``repeats`` back-to-back pairs. Other processes'
    load changes from one process to the next, so the ratio is the median of the
    pairs' ratios and img/s the median of each policy's runs."""
    unset = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    envs = {"libgomp default": unset, "OMP_WAIT_POLICY=PASSIVE": {**unset, "OMP_WAIT_POLICY": "PASSIVE"}}
    runs: dict[str, list[float]] = {k: [] for k in envs}
    for _ in range(repeats):
        for k, env in envs.items():
            cmd = [sys.executable, __file__, "--time-step", name, str(side), str(batch)]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            runs[k].append(float(out.split()[-1]))
    base = np.asarray(runs["libgomp default"])
    return [{"section": "omp", "model": name, "size": side, "batch": batch, "path": f"training step, {k}",
             "img_s": float(np.median(v)), "ratio": float(np.median(np.asarray(v) / base)), "runs": v}
            for k, v in runs.items()]


def bench_data(faces: Path, repeats: int) -> list[dict]:
    """Items per second of the training dataset at 128 px: decode + resize every
    time vs the decoded cache (filled once, its time reported)."""
    tcfg = TransformConfig(128, 128)
    samples = collect_samples([faces / "ffhq"], [faces / "tpdne-stylegan2"], split="train")
    t0 = time.perf_counter()
    cached = make_dataset(samples, train_transform(tcfg), tcfg, FastPath(), training=True, seed=0)
    fill_s = time.perf_counter() - t0
    plain = make_dataset(samples, train_transform(tcfg), tcfg, FastPath.reference(), training=True, seed=0)
    idx = range(0, len(samples), max(1, len(samples) // 128))   # ~128 items per timing
    best = race({k: (lambda ds=ds: [ds[i] for i in idx]) for k, ds in
                 (("decode every time", plain), ("decoded cache", cached))}, repeats, torch.device("cpu"))
    base = best["decode every time"]
    return [{"section": "data", "model": "-", "size": 128, "batch": 1, "path": k, "img_s": len(idx) / t,
             "ratio": base / t, "cache_fill_s": fill_s if k == "decoded cache" else 0.0}
            for k, t in best.items()]


def bench_train_loop(name: str, faces: Path, batch: int, steps: int, device: torch.device) -> tuple[list[dict], dict]:
    """Real faces through data path + step, as ``patchforensics train`` does (128 px,
    flip augmentation, balanced epochs, no loader workers), reference and default
    alternating step by step. Returns the rows and the trained reference model."""
    tcfg = TransformConfig(128, 128)
    samples = collect_samples([faces / "ffhq"], [faces / "tpdne-stylegan2"], split="train")
    labels = [s.label for s in samples]
    runs = {}
    for key, fast in (("reference fp32 eager, decode every time", FastPath.reference()),
                      ("default (channels_last, decoded cache)", FastPath())):
        t0 = time.perf_counter()
        dataset = make_dataset(samples, train_transform(tcfg), tcfg, fast, training=True, seed=0)
        fill_s = time.perf_counter() - t0
        dataset.set_epoch(1)
        sampler = EpochSampler(labels, 0, True)
        sampler.set_epoch(1)
        loader = iter(make_loader(dataset, batch, 0, sampler))
        model = create_model(name).to(device).train()
        step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), fast, device)
        runs[key] = {"loader": loader, "step": step, "model": model, "fill_s": fill_s, "times": []}
    for i in range(steps + 1):   # step 0 warms up
        for run in runs.values():
            sync(device)
            t0 = time.perf_counter()
            b = next(run["loader"])
            run["step"](b["image"], b["label"])
            sync(device)
            if i:
                run["times"].append(time.perf_counter() - t0)
    base = np.median(next(iter(runs.values()))["times"])
    rows = [{"section": "train loop", "model": name, "size": 128, "batch": batch, "path": k,
             "img_s": batch / np.median(r["times"]), "ratio": base / np.median(r["times"]),
             "cache_fill_s": r["fill_s"], "steps": steps} for k, r in runs.items()]
    return rows, next(iter(runs.values()))["model"]


def delta_ap(model: torch.nn.Module, card: ModelCard, faces: Path, device: torch.device,
             bf16_check: bool) -> dict:
    """AP of each aggregation (and per patch) on the test split, reference vs default
    inference (and vs forced bf16 when asked)."""
    samples = collect_samples([faces / "ffhq"], [faces / "tpdne-stylegan2"], split="test")
    paths = {"reference": FastPath.reference(), "default": FastPath()}
    if bf16_check:
        paths["bf16"] = FastPath(bf16="on", backend="torch")
    out = {"n_images": len(samples)}
    metrics = {}
    for k, fast in paths.items():
        t0 = time.perf_counter()
        engine = Engine.from_model(model, card, fast, device)
        metrics[k] = engine.predict(samples, batch_size=32, progress=False).metrics()
        out[f"{k}_s"] = time.perf_counter() - t0
    for k in paths:
        out[k] = {a: metrics[k][a]["ap"] for a in AGGREGATIONS + ("patch",)}
        if k != "reference":
            out[f"delta_{k}"] = max(abs(metrics[k][a]["ap"] - metrics["reference"][a]["ap"])
                                    for a in AGGREGATIONS + ("patch",))
    return out


def print_rows(rows: list[dict]) -> None:
    print(f"{'section':<11} {'model':<16} {'px':>4} {'path':<44} {'img/s':>8} {'x ref':>6}")
    for r in rows:
        print(f"{r['section']:<11} {r['model']:<16} {r['size']:>4} {r['path']:<44} {r['img_s']:>8.1f} "
              f"{r['ratio']:>6.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["xception_block2", "resnet18_layer1"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[128, 299])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5, help="timed batches per path (best is kept)")
    ap.add_argument("--train-sizes", nargs="+", type=int, default=None,
                    help="sizes for the training section (default: --sizes)")
    ap.add_argument("--loop-steps", type=int, default=6, help="steps of the real-faces train loop (0 = skip)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile for training")
    ap.add_argument("--thread-sweep", action="store_true",
                    help="also time the default paths at 1..cores threads (first model, first size)")
    ap.add_argument("--checkpoint", help="checkpoint folder for |ΔAP| (default: the model trained by the loop)")
    ap.add_argument("--bf16-check", choices=["auto", "on", "off"], default="auto",
                    help="also score the test split with forced bf16 (auto: where bf16 is native)")
    ap.add_argument("--faces", default=str(FACES), help="faces128 folder (ffhq, tpdne-stylegan2)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                    help="what to run (default: all; threads needs --thread-sweep or naming it here)")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--time-step", nargs=3, help=argparse.SUPPRESS)   # internal: NAME SIDE BATCH
    args = ap.parse_args(argv)
    if args.time_step:
        name, side, batch = args.time_step
        print(time_default_step(name, int(side), int(batch), 3))
        return 0
    want = set(args.sections)
    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    configure_runtime(FastPath(), device)
    info = machine(device)
    print("machine:", json.dumps(info))
    rows: list[dict] = []

    def add(new: list[dict]) -> None:
        rows.extend(new)
        print_rows(new)

    for name in args.models:
        for side in args.sizes if "inference" in want else ():
            add(bench_inference(name, side, args.batch_size, args.repeats, device))
        for side in (args.train_sizes or args.sizes) if "training" in want else ():
            add(bench_training(name, side, args.batch_size, args.repeats, device, args.compile))
    faces = Path(args.faces)
    # the sweep is slow: only when asked for by --thread-sweep or by naming its section
    if device.type == "cpu" and (args.thread_sweep or ("threads" in want and want != set(SECTIONS))):
        add(bench_threads(args.models[0], args.sizes[0], args.batch_size, args.repeats, device))
    if "omp" in want and device.type == "cpu":
        add(bench_wait_policy(args.models[0], args.sizes[0], args.batch_size, max(2, args.repeats)))
    if "data" in want and args.loop_steps > 0:
        add(bench_data(faces, args.repeats))
    trained = None
    if "loop" in want and args.loop_steps > 0:
        new, trained = bench_train_loop(args.models[0], faces, args.batch_size, args.loop_steps, device)
        add(new)
    result = {"machine": info, "command": " ".join(sys.argv), "rows": rows}
    if "ap" in want and (args.checkpoint or trained is not None):
        if args.checkpoint:
            from patchforensics.models.checkpoint import load_model
            loaded = load_model(args.checkpoint, "bestval", device)
            model, card, what = loaded.model, loaded.card, args.checkpoint
        else:
            card = ModelCard(name="bench", architecture=args.models[0], load_size=128, fine_size=128)
            model, what = trained, f"{args.models[0]} after the train loop"
        check = args.bf16_check == "on" or (args.bf16_check == "auto" and use_bf16("auto", device))
        result["delta_ap"] = {"model": what, **delta_ap(copy.deepcopy(model), card, faces, device, check)}
        print("|ΔAP| on the test split:", json.dumps(result["delta_ap"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
