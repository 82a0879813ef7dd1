"""``export`` to ONNX and ``detect --backend onnx``: same logits, same scores (<= 1e-4)."""
from __future__ import annotations

import json

import onnx
import pytest
import torch

from conftest import listed
from patchforensics.cli import main
from patchforensics.core.imageio import load_rgb
from patchforensics.data.transforms import eval_transform
from patchforensics.models.card import ONNX_METADATA_KEY
from patchforensics.models.checkpoint import BUNDLED_DIR, load_model
from patchforensics.scoring.runtime import use_bf16
from patchforensics.scoring.onnx_backend import OnnxRunner, export_onnx, load_onnx

IMAGES = listed("ffhq/test", 2) + listed("tpdne-stylegan2/test", 2) + listed("generated-photos/test", 1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "bundled.onnx"
    assert main(["export", str(BUNDLED_DIR), str(path), "--which-epoch", "weights"]) == 0
    return path


def test_export_carries_config_and_refuses_to_overwrite(exported, capsys):
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    config = json.loads(meta[ONNX_METADATA_KEY])["config"]
    bundled = load_model(BUNDLED_DIR, "weights").card
    assert config["model"] == bundled.architecture and config["thresholds"] == dict(bundled.thresholds)
    assert main(["export", str(BUNDLED_DIR), str(exported), "--which-epoch", "weights"]) == 2
    assert "--force" in capsys.readouterr().err
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(BUNDLED_DIR, exported.with_suffix(".bin"), which="weights")


def test_runner_matches_torch_for_any_batch_size(exported, faces):
    loaded = load_model(BUNDLED_DIR, "weights")
    to_input = eval_transform(loaded.card.transform())
    x = torch.stack([to_input(load_rgb(faces / p)) for p in IMAGES])
    runner = OnnxRunner(exported)
    with torch.inference_mode():
        expected = loaded.model(x)
    for batch in (x[:1], x):                   # the batch axis is dynamic
        got = runner(batch)
        assert got.shape == expected[: len(batch)].shape
        assert torch.allclose(got, expected[: len(batch)], atol=1e-4)
    # patch models are fully convolutional: other input sizes work too
    assert runner(torch.zeros(2, 3, 160, 144)).shape == loaded.model(torch.zeros(2, 3, 160, 144)).shape
    runner, card, _ = load_onnx(exported)
    assert card == loaded.card     # the model card travels inside the file


def test_detect_backend_onnx_gives_the_same_scores(exported, faces, capsys):
    paths = [str(faces / p) for p in IMAGES]

    def scores(*extra):
        assert main(["detect", *paths, "--format", "json", *extra]) == 0
        out = json.loads(capsys.readouterr().out)
        return out["p_fake_threshold"], {r["path"]: (f["p_fake"], f["verdict"], f["box"])
                                         for r in out["results"] for f in r["faces"]}

    # PyTorch runs bf16 under --bf16 auto where the CPU has it natively (or
    # $PATCHFORENSICS_NATIVE_BF16=1 says so); ONNX Runtime always runs fp32
    tolerance = 2e-2 if use_bf16("auto", torch.device("cpu")) else 1e-4
    cut, torch_scores = scores("--backend", "torch")
    for extra in ([], ["--backend", "onnx"], ["--model", str(exported)]):
        _, onnx_scores = scores(*extra)
        for path, (p_fake, verdict, box) in torch_scores.items():
            assert onnx_scores[path][0] == pytest.approx(p_fake, abs=tolerance)
            assert onnx_scores[path][2] == box
            if abs(p_fake - cut) > tolerance:      # a score this close to the cut may fall either side
                assert onnx_scores[path][1] == verdict


def test_onnx_errors_are_clear(tmp_path, faces, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    assert main(["detect", str(faces / IMAGES[0]), "--model", str(bad)]) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="patchforensics export"):
        OnnxRunner(tmp_path / "missing.onnx")


def test_an_onnx_file_beside_its_weights_is_run_without_exporting(trained_checkpoint, tmp_path, monkeypatch):
    """``export CKPT CKPT/bestval.onnx`` makes opening the folder export nothing; once the weights
    change, the stale file is passed over and the weights are exported afresh."""
    import shutil

    from patchforensics.models.checkpoint import load_model, save_weights
    from patchforensics.scoring import engine as engine_module
    from patchforensics.scoring.engine import Engine
    from patchforensics.scoring.onnx_backend import OnnxRunner, export_onnx

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    export_onnx(ckpt, ckpt / "bestval.onnx")
    exported = []
    real_runner = engine_module.onnx_runner
    monkeypatch.setattr(engine_module, "onnx_runner", lambda *a, **k: exported.append(1) or real_runner(*a, **k))
    engine = Engine.load(ckpt)
    assert isinstance(engine.runner, OnnxRunner) and engine.runner.path == ckpt / "bestval.onnx" and not exported
    reference = Engine.load(trained_checkpoint)
    images = torch.rand(2, 3, 128, 128) * 2 - 1
    assert torch.allclose(engine.logits(images), reference.logits(images), atol=1e-5)
    model = load_model(ckpt).model
    with torch.no_grad():
        model.head.bias += 1.0
    save_weights(ckpt / "bestval.safetensors", model)
    assert Engine.load(ckpt).runner.path != ckpt / "bestval.onnx" and exported


def test_the_bundled_detector_ships_its_onnx_file_and_opens_without_exporting(faces, monkeypatch):
    """``bundled/weights.onnx`` is the export of exactly the bundled weights: opening the detector
    exports nothing, and it scores real faces bit for bit as an export made now would (the default
    path before it shipped)."""
    from patchforensics.scoring import engine as engine_module
    from patchforensics.scoring.engine import Engine, _sidecar_onnx
    from patchforensics.scoring.onnx_backend import onnx_runner

    assert _sidecar_onnx(BUNDLED_DIR, "weights") == BUNDLED_DIR / "weights.onnx"
    exported = []
    monkeypatch.setattr(engine_module, "onnx_runner", lambda *a, **k: exported.append(1) or onnx_runner(*a, **k))
    shipped = Engine.load(device="cpu")
    assert shipped.backend == "onnx" and shipped.runner.path == BUNDLED_DIR / "weights.onnx" and not exported
    loaded = load_model(BUNDLED_DIR, "weights")
    fresh = Engine.from_model(loaded.model, loaded.card, device="cpu")
    assert len(exported) == 1 and fresh.backend == "onnx"
    images = [load_rgb(faces / p) for p in IMAGES]
    assert torch.equal(shipped.score_images(images)[1], fresh.score_images(images)[1])
