"""sample / invert: fake datasets from small generators and encoders the test
exports itself to ONNX and TorchScript."""
from __future__ import annotations

import csv
import io
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.data.prepare import png_bytes, standardize
from patchforensics.data.sample import InvertConfig, Network, SampleConfig, invert, sample

LATENT = 8
RES = 16
# torch marks torch.jit.script deprecated; TorchScript is still what users export
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class Generator(torch.nn.Module):
    """latent (N, 8) → image (N, 3, 16, 16) in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(LATENT, 3 * 4 * 4)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, z):
        x = self.fc(z).reshape(-1, 3, 4, 4)
        x = torch.nn.functional.interpolate(x, scale_factor=4.0, mode="nearest")
        return torch.tanh(self.conv(x) * 3)


class Encoder(torch.nn.Module):
    """image (N, 3, 16, 16) → latent (N, 8)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 4, stride=4)
        self.fc = torch.nn.Linear(4 * 4 * 4, LATENT)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def export_onnx(module, example, path, dynamic=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}} if dynamic else None, dynamo=False)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("nets")
    gen, enc = Generator().eval(), Encoder().eval()
    export_onnx(gen, torch.randn(2, LATENT), root / "gen.onnx")
    export_onnx(enc, torch.randn(2, 3, RES, RES), root / "enc.onnx")
    torch.jit.script(gen).save(str(root / "gen.pt"))
    torch.save(gen, str(root / "pickled.pt"))            # a plain pickle: must be refused
    return {"root": root, "gen": gen, "enc": enc}


def expected_png(gen, latent: np.ndarray, size: int) -> bytes:
    with torch.no_grad():
        x = gen(torch.from_numpy(latent[None]))[0].permute(1, 2, 0).numpy()
    unit = np.clip((x + 1) / 2, 0, 1)
    return png_bytes(standardize(Image.fromarray(np.rint(unit * 255).astype(np.uint8)), size))


def test_sample_onnx_writes_reproducible_dataset(nets, tmp_path):
    cfg = SampleConfig(generator=str(nets["root"] / "gen.onnx"), out=str(tmp_path / "s"), n=20, seed=3,
                       batch_size=6, size=32)
    result = sample(cfg, progress=False)
    assert result.counts == {"train": 14, "val": 2, "test": 4} and not result.skipped
    latents = np.load(tmp_path / "s" / "latents.npy")
    assert latents.shape == (20, LATENT) and latents.dtype == np.float32
    with open(tmp_path / "s" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20
    for row in rows[::5]:
        got = (tmp_path / "s" / row["output"]).read_bytes()
        assert Image.open(tmp_path / "s" / row["output"]).size == (32, 32)
        # ONNX vs PyTorch float results may differ in the last bit: compare pixels within 1 level
        want = np.asarray(Image.open(io.BytesIO(expected_png(nets["gen"], latents[int(row["sample"])],
                                                                           32))))
        assert np.abs(np.asarray(Image.open(io.BytesIO(got))).astype(int) - want).max() <= 1
    # the same seed gives the same latents; saved latents regenerate the same files
    again = sample(SampleConfig(generator=str(nets["root"] / "gen.onnx"), out=str(tmp_path / "s2"),
                                latents=str(tmp_path / "s" / "latents.npy"), seed=3, size=32), progress=False)
    assert again.counts == result.counts
    for row in rows:
        assert (tmp_path / "s2" / row["output"]).read_bytes() == (tmp_path / "s" / row["output"]).read_bytes()
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["latent_shape"] == [LATENT] and summary["value_range"] == [-1.0, 1.0]


def test_torchscript_matches_onnx_and_needs_latent_shape(nets, tmp_path):
    with pytest.raises(ConfigError, match="latent-shape"):
        sample(SampleConfig(generator=str(nets["root"] / "gen.pt"), out=str(tmp_path / "x"), n=4), progress=False)
    common = dict(n=6, seed=1, size=None, split=(0.0, 0.0, 1.0))
    sample(SampleConfig(generator=str(nets["root"] / "gen.pt"), out=str(tmp_path / "ts"), latent_shape=(LATENT,),
                        device="cpu", **common), progress=False)
    sample(SampleConfig(generator=str(nets["root"] / "gen.onnx"), out=str(tmp_path / "ox"), **common),
           progress=False)
    for name in ("000000.png", "000005.png"):
        a = np.asarray(Image.open(tmp_path / "ts" / "test" / name)).astype(int)
        b = np.asarray(Image.open(tmp_path / "ox" / "test" / name)).astype(int)
        assert a.shape == (RES, RES, 3) and np.abs(a - b).max() <= 1


def test_unsafe_or_wrong_networks_are_refused(nets, tmp_path):
    with pytest.raises(ValueError, match="TorchScript"):
        Network(nets["root"] / "pickled.pt")
    (tmp_path / "g.pkl").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown network format"):
        Network(tmp_path / "g.pkl")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="ONNX"):
        Network(tmp_path / "bad.onnx")
    with pytest.raises(ConfigError, match="value_range"):
        sample(SampleConfig(generator=str(nets["root"] / "gen.onnx"), out=str(tmp_path / "o"),
                            value_range=(1.0, -1.0)), progress=False)
    with pytest.raises(ValueError, match="channels"):        # NCHW output read as NHWC
        sample(SampleConfig(generator=str(nets["root"] / "gen.onnx"), out=str(tmp_path / "o2"), n=2,
                            layout="nhwc"), progress=False)


def test_non_finite_samples_are_skipped(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, z):
            img = torch.tanh(z[:, :1, None, None].expand(-1, 3, 8, 8))
            return torch.where(z[:, 1:2, None, None] > 0, img, img * float("nan"))

    torch.jit.script(Broken()).save(str(tmp_path / "broken.pt"))
    result = sample(SampleConfig(generator=str(tmp_path / "broken.pt"), out=str(tmp_path / "o"), n=12,
                                 latent_shape=(2,), size=None, device="cpu"), progress=False)
    latents = np.load(tmp_path / "o" / "latents.npy")
    assert sum(result.counts.values()) == int((latents[:, 1] > 0).sum())
    assert len(result.skipped) == int((latents[:, 1] <= 0).sum())
    assert all("NaN" in s["reason"] for s in result.skipped)


def test_invert_mirrors_reals_and_reconstructs(nets, tmp_path, faces):
    real = tmp_path / "real"
    for split in ("train", "test"):
        (real / split).mkdir(parents=True)
        for p in sorted((faces / "ffhq" / split).glob("*.png"))[:3]:
            (real / split / p.name).symlink_to(p)
    (real / "test" / "broken.png").write_bytes(b"\x89PNG broken")
    cfg = InvertConfig(encoder=str(nets["root"] / "enc.onnx"), generator=str(nets["root"] / "gen.onnx"),
                       real=str(real), out=str(tmp_path / "inv"), size=32, batch_size=4)
    result = invert(cfg, progress=False)
    assert result.counts == {"train": 3, "test": 3}
    assert len(result.skipped) == 1 and "broken.png" in result.skipped[0]["path"]
    with open(tmp_path / "inv" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    latents = np.load(tmp_path / "inv" / "latents.npy")
    assert latents.shape == (6, LATENT)
    row = rows[4]
    assert row["output"] == row["source"]                 # same relative path, .png
    src = Image.open(real / row["source"]).convert("RGB")
    x = torch.from_numpy(np.asarray(standardize(src, RES), dtype=np.float32) / 255.0 * 2 - 1).permute(2, 0, 1)
    with torch.no_grad():
        z = nets["enc"](x[None])[0].numpy()
    assert np.allclose(z, latents[int(row["latent_row"])], atol=1e-4)
    want = np.asarray(Image.open(io.BytesIO(expected_png(nets["gen"], z, 32)))).astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "inv" / row["output"])).astype(int) - want).max() <= 1


def test_cli(nets, tmp_path, capsys):
    assert main(["sample", str(nets["root"] / "gen.onnx"), str(tmp_path / "s"), "-n", "5", "--size", "24",
                 "--range=-1,1", "--jpeg-quality", "90"]) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    assert main(["sample", str(nets["root"] / "gen.onnx"), str(tmp_path / "s"), "-n", "5"]) == 2   # no --force
    assert main(["sample", str(nets["root"] / "missing.onnx"), str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err
    real = tmp_path / "r"
    real.mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(real / "a.png")
    assert main(["invert", str(nets["root"] / "enc.onnx"), str(nets["root"] / "gen.onnx"), str(real),
                 str(tmp_path / "i"), "--input-size", "16", "--size", "0"]) == 0
    assert Image.open(tmp_path / "i" / "a.png").size == (RES, RES)


def test_a_wrong_input_shape_is_a_message_and_leaves_nothing(nets, tmp_path, capsys):
    """A latent or image shape the network cannot take: one line saying what to pass,
    exit 2, and no half-written folder blocking the rerun."""
    root = nets["root"]
    for gen in ("gen.onnx", "gen.pt"):
        out = tmp_path / f"s_{gen}"
        assert main(["sample", str(root / gen), str(out), "-n", "3", "--latent-shape", "7", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{gen} failed on an input of shape (7,)" in err[0] and "--latent-shape" in err[0]
        assert not out.exists() and list(tmp_path.iterdir()) == []
    real = tmp_path / "r"
    real.mkdir()
    Image.new("RGB", (40, 40), (200, 10, 10)).save(real / "a.png")
    argv = ["invert", str(root / "enc.onnx"), str(root / "gen.onnx"), str(real), str(tmp_path / "i")]
    assert main([*argv, "--input-size", "20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "enc.onnx failed on an input of shape (3, 20, 20)" in err[0] and "--input-size" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert main([*argv, "--input-size", "16"]) == 0            # the rerun needs no --force


def test_force_replaces_sample_and_invert_outputs(nets, tmp_path):
    from conftest import pngs

    gen = str(nets["root"] / "gen.onnx")
    assert main(["sample", gen, str(tmp_path / "s"), "-n", "8", "--size", "16", "--seed", "0"]) == 0
    assert main(["sample", gen, str(tmp_path / "s"), "-n", "4", "--size", "16", "--seed", "1", "--force"]) == 0
    assert len(pngs(tmp_path / "s")) == 4
    real = tmp_path / "r"
    real.mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (40, 40), (200, 10, 10)).save(real / f"{name}.png")
    args = ["invert", str(nets["root"] / "enc.onnx"), gen, str(real), str(tmp_path / "i"), "--input-size", "16"]
    assert main(args) == 0
    (real / "b.png").unlink()
    assert main(args + ["--force"]) == 0
    assert pngs(tmp_path / "i") == ["a.png"]
