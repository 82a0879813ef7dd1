"""The benchmarks run: evaluation memory is flat in N and the streaming patch AP
stays within its stated bound; the throughput script reports every path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO  # noqa: E402


def run_bench(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{Path(script).stem}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}   # small tensor ops: threads only add overhead here
    subprocess.run([sys.executable, str(REPO / "bench" / script), *args, "--json", str(out)],
                   check=True, env=env, capture_output=True, text=True, timeout=600)
    return json.loads(out.read_text())


def test_memory_is_flat_and_patch_ap_within_bound(tmp_path):
    res = run_bench("memory.py", "--sizes", "500", "8000", "--side", "128", tmp_path=tmp_path)["results"]
    small, large = res
    assert large["n_images"] == 16 * small["n_images"]
    # 16x the images: the patch maps would grow by ~15 MB, the scorer's memory must not
    assert large["patch_maps_if_kept_mb"] > 15
    assert large["peak_rss_mb"] - small["peak_rss_mb"] < 15
    # exact per-patch AP (every patch score kept) is computed where N is small
    assert small["patch_ap_error"] <= small["ap_error_bound"] < 0.01
    for r in res:
        assert 0.5 < r["patch_ap_histogram"] < 1 and r["ap_error_bound"] < 0.01


def test_throughput_reports_reference_and_fast_paths(tmp_path):
    res = run_bench("throughput.py", "--models", "widenet_kw7_d1", "--sizes", "64", "--batch-size", "4",
                    "--repeats", "1", "--sections", "inference", "training", tmp_path=tmp_path)
    rows = res["rows"]
    inference = {r["path"]: r for r in rows if r["section"] == "inference"}
    assert inference["reference fp32 eager"]["ratio"] == 1.0
    assert any(p.startswith("default") for p in inference) and len(inference) >= 4
    for path, r in inference.items():   # bf16 (the default on a CPU with native bf16) keeps 8 mantissa bits
        assert r["max_abs_logit_diff"] < (0.1 if "bf16" in path else 1e-3) and r["img_s"] > 0, path
    assert {r["path"].split(" ")[0] for r in rows if r["section"] == "training"} == {"reference", "default"}
    assert res["machine"]["cpu_capability"] and "torch" in res["machine"]
