"""What a cell's record says of its test outputs and of where it ran: bootstrap intervals of
its AP and ROC-AUC, and its runtime (precision, backend, device, the machine's name)."""
from __future__ import annotations

from pathlib import Path

from ..data.transforms import parse_corruptions
from ..evaluation.evaluate import read_scores_csv, results_dir_for
from ..models.card import ModelCard
from ..scoring.metrics import AGGREGATIONS, bootstrap_ci


def bootstrap_intervals(results_root: Path, name: str, which_epoch: str, dataset: str,
                        corruption: list[str]) -> dict[str, dict[str, float]]:
    """``aggregation -> {ap_lo, ap_hi, roc_auc_lo, roc_auc_hi}``: 95% bootstrap intervals over the
    test images, from the ``scores.csv`` that ``test`` wrote (none for the per-patch rows)."""
    scores = read_scores_csv(results_dir_for(results_root, name, "test", which_epoch, dataset,
                                             parse_corruptions(corruption)) / "scores.csv")
    if scores is None:
        return {}
    _, labels, p_fake = scores
    out = {}
    for aggregation in AGGREGATIONS:
        ci = bootstrap_ci(p_fake[aggregation], labels == 0)
        out[aggregation] = {"ap_lo": ci["ap"][0], "ap_hi": ci["ap"][1],
                            "roc_auc_lo": ci["roc_auc"][0], "roc_auc_hi": ci["roc_auc"][1]}
    return out


def cell_runtime(ckpt: Path) -> dict[str, str]:
    """What the cell trained with (precision, backend, device, CPU) and ``machine``: the GPU's
    name on CUDA, else the CPU kind."""
    runtime = dict(ModelCard.read(ckpt).runtime)
    device = runtime.get("device", "")
    if device.startswith("cuda"):
        import torch

        # the GPU's name where the cell is measured on one (regions of GPU cells run on a CPU later)
        gpu = torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else "GPU"
        runtime["machine"] = f"{device}: {gpu}"
    else:
        runtime["machine"] = f"{device}: {runtime.get('cpu', '')}"
    return runtime
