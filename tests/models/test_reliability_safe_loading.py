"""Safe loading: seed ``*_net_D.pth`` files are imported through
``torch.load(weights_only=True)`` only; a malicious pickle is refused without
running its code, and imported weights give exactly the original outputs."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from patchforensics.models.checkpoint import load_legacy_pth, load_model, load_tensors, read_legacy_pth
from patchforensics.cli import main as cli_main
from patchforensics.models import create_model
from patchforensics.training.seed_import import ImportSeedConfig, import_seed
from patchforensics.core.imageio import load_rgb
from patchforensics.data.transforms import to_tensor


class MarkerPayload:
    """Unpickling this runs Python code that creates ``marker`` (what an attack would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def malicious_checkpoints(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """The same payload hidden three ways: seed-style zip checkpoint, legacy
    (pre-1.6) torch format, and a bare pickle named .pth."""
    state = {"conv1.weight": torch.zeros(2, 3, 3, 3)}
    out = {}
    out["zip"] = tmp_path / "evil" / "bestval_net_D.pth"
    out["zip"].parent.mkdir()
    torch.save({"state_dict": state, "epoch": MarkerPayload(marker)}, out["zip"])
    out["legacy"] = tmp_path / "legacy_net_D.pth"
    torch.save({"state_dict": state, "x": MarkerPayload(marker)}, out["legacy"],
               _use_new_zipfile_serialization=False)
    out["raw"] = tmp_path / "raw_net_D.pth"
    out["raw"].write_bytes(pickle.dumps(MarkerPayload(marker)))
    return out


def test_payload_is_real_when_loaded_unsafely(tmp_path):
    """Control: a plain unpickle of the file does run the code (in a child process)."""
    marker = tmp_path / "marker"
    files = malicious_checkpoints(tmp_path, marker)
    code = ("import sys, torch\n"
            "torch.load(sys.argv[1], weights_only=False)\n")
    subprocess.run([sys.executable, "-c", code, str(files["zip"])], check=True, cwd=Path(__file__).parent)
    assert marker.read_text() == "code ran"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["zip", "legacy", "raw"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / "marker"
    path = malicious_checkpoints(tmp_path, marker)[kind]
    with pytest.raises(ValueError, match="refused to load|not a PyTorch checkpoint") as info:
        load_legacy_pth(path)
    assert str(path) in str(info.value) and "weights_only" not in str(info.value)
    assert not marker.exists()


def test_import_seed_cli_refuses_and_writes_nothing(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = malicious_checkpoints(tmp_path, marker)["zip"]
    rc = cli_main(["import-seed", str(path), "--model", "xception_block1",
                   "--checkpoints-dir", str(tmp_path / "checkpoints")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and "GLOBAL exec" in err
    # torch's own advice (re-run with weights_only=False, allow-list the global) is not passed on
    for advice in ("weights_only", "False", "safe_globals", "trust"):
        assert advice not in err
    assert not marker.exists() and not (tmp_path / "checkpoints").exists()


def test_garbage_pth_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk_net_D.pth"
    junk.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_legacy_pth(junk)
    empty_state = tmp_path / "empty_net_D.pth"
    torch.save({"state_dict": {}}, empty_state)
    with pytest.raises(ValueError, match="not a state dict of tensors"):
        load_legacy_pth(empty_state)


# ----------------------------------------------------------- real imports
# The seed's names for xception_block1 (its CustomXceptionNet cut after block1,
# Cadene-style blocks: skip/skipbn, SeparableConv2d.conv1 = depthwise; final 1x1
# conv named convout), in the order of this package's state dict.
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
SEED_XCEPTION_BLOCK1 = (
    ["conv1.weight"] + [f"bn1.{b}" for b in BN] + ["conv2.weight"] + [f"bn2.{b}" for b in BN]
    + ["block1.skip.weight"] + [f"block1.skipbn.{b}" for b in BN]
    + ["block1.rep.0.conv1.weight", "block1.rep.0.pointwise.weight"] + [f"block1.rep.1.{b}" for b in BN]
    + ["block1.rep.3.conv1.weight", "block1.rep.3.pointwise.weight"] + [f"block1.rep.4.{b}" for b in BN]
    + ["convout.weight", "convout.bias"])
# the seed's WideNet is one nn.Sequential called ``model``
SEED_WIDENET = (["model.0.weight"] + [f"model.1.{b}" for b in BN]
                + ["model.4.weight", "model.4.bias", "model.6.weight", "model.6.bias", "model.8.weight", "model.8.bias"])


def seed_checkpoint(folder: Path, model_name: str, seed_keys: list[str], opt: dict | None) -> tuple[Path, torch.nn.Module]:
    """A checkpoint laid out exactly as the seed saves it, holding the weights of a
    freshly initialised model (random BN statistics so they matter)."""
    model = create_model(model_name, seed=7)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    ours = model.state_dict()
    assert len(ours) == len(seed_keys)
    state = {f"module.{k}": v.clone() for k, v in zip(seed_keys, ours.values())}   # DataParallel prefix
    folder.mkdir(parents=True)
    path = folder / "bestval_net_D.pth"
    torch.save({"state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.001}]},
                "scheduler": {"best": 0.97, "mode": "max"}, "epoch": 12,
                "best_val_metric": np.float64(0.9731), "best_val_ep": 9}, path)
    if opt is not None:
        (folder / "opt.yml").write_text(yaml.safe_dump(opt))
    return path, model.eval()


@pytest.mark.parametrize("model_name,seed_keys", [("xception_block1", SEED_XCEPTION_BLOCK1),
                                                  ("widenet_kw7_d1", SEED_WIDENET)])
def test_import_seed_gives_identical_outputs(faces, tmp_path, model_name, seed_keys):
    pth, original = seed_checkpoint(tmp_path / "seed" / "gp1-gan-winversion", model_name, seed_keys,
                                    {"which_model_netD": model_name, "loadSize": 128, "fineSize": 128,
                                     "name": "gp1-gan-winversion", "gpu_ids": [0]})
    _, info = read_legacy_pth(pth)
    assert info == {"epoch": 12, "best_val_metric": pytest.approx(0.9731), "best_val_ep": 9}
    result = import_seed(ImportSeedConfig(pth=str(pth), checkpoints_dir=str(tmp_path / "checkpoints")))
    assert result.model == model_name and result.which == "bestval" and result.load_size == 128
    assert sorted(p.name for p in result.checkpoint_dir.iterdir()) == ["bestval.safetensors", "config.yaml"]
    loaded = load_model(result.checkpoint_dir)
    face = to_tensor(load_rgb(next((faces / "ffhq" / "test").glob("*.png"))))[None]
    with torch.no_grad():
        assert torch.equal(loaded.model(face), original(face))
    assert load_tensors(result.weights_file)[1]["seed_info"]["best_val_metric"] == pytest.approx(0.9731)


def test_import_seed_checks_the_model_and_refuses_overwrites(tmp_path, capsys):
    pth, _ = seed_checkpoint(tmp_path / "run", "xception_block1", SEED_XCEPTION_BLOCK1, opt=None)
    ckpts = str(tmp_path / "checkpoints")
    # no opt.yml: the model must be given
    assert cli_main(["import-seed", str(pth), "--checkpoints-dir", ckpts]) == 2
    assert "pass --model" in capsys.readouterr().err
    # the wrong model: every difference is named, nothing is written
    assert cli_main(["import-seed", str(pth), "--model", "xception_block2", "--checkpoints-dir", ckpts]) == 2
    err = capsys.readouterr().err
    assert "do not fit model 'xception_block2'" in err and "missing: features.block2" in err
    assert cli_main(["import-seed", str(pth), "--model", "xception_block1", "--checkpoints-dir", ckpts]) == 0
    assert "imported" in capsys.readouterr().out
    assert (tmp_path / "checkpoints" / "run" / "bestval.safetensors").is_file()
    assert cli_main(["import-seed", str(pth), "--model", "xception_block1", "--checkpoints-dir", ckpts]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli_main(["import-seed", str(pth), "--model", "xception_block1", "--checkpoints-dir", ckpts,
                     "--force"]) == 0
