"""prepare: one pipeline, deterministic splits and manifest, bad files skipped."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from patchforensics.core.fileio import OutputExistsError
from patchforensics.data.prepare import PrepareConfig, prepare, standardize

from conftest import pngs

RAW = "tpdne-1024"


@pytest.fixture
def raw_with_junk(tmp_path, faces):
    """The 8 raw StyleGAN2 JPEGs, nested, plus a truncated file, a text file named
    .png and a duplicate."""
    src = tmp_path / "src"
    raw = faces.parent / "raw" / RAW
    files = sorted(raw.glob("*.jpg"))
    (src / "a").mkdir(parents=True)
    (src / "b" / "c").mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copy(f, src / ("a" if i % 2 else "b/c") / f.name)
    (src / "a" / "broken.jpg").write_bytes(files[0].read_bytes()[:2000])
    (src / "a" / "notes.png").write_text("not an image")
    shutil.copy(files[1], src / "b" / "copy_of_1.jpg")
    return src


def _rows(out):
    with open(out / "manifest.csv") as f:
        return list(csv.DictReader(f))


def test_prepare_is_deterministic_and_lists_skipped_files(raw_with_junk, tmp_path):
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    r1 = prepare(PrepareConfig(str(raw_with_junk), str(out1), size=64, jpeg_quality=75), progress=False)
    prepare(PrepareConfig(str(raw_with_junk), str(out2), size=64, jpeg_quality=75), progress=False)
    assert (out1 / "manifest.csv").read_bytes() == (out2 / "manifest.csv").read_bytes()
    rows = _rows(out1)
    assert len(rows) == 8 and sum(r1.counts.values()) == 8
    assert {r["split"] for r in rows} <= {"train", "val", "test"}
    assert all(r["width"] == "1024" for r in rows)
    reasons = {s["path"].split("/")[-1]: s["reason"] for s in r1.skipped}
    assert set(reasons) == {"broken.jpg", "notes.png", "copy_of_1.jpg"}
    assert "duplicate" in reasons["copy_of_1.jpg"]
    for r in rows:  # every output is a 64x64 PNG, byte-identical across runs
        a, b = out1 / r["output"], out2 / r["output"]
        assert a.read_bytes() == b.read_bytes()
        assert Image.open(a).size == (64, 64)


def test_prepare_refuses_to_overwrite(raw_with_junk, tmp_path):
    out = tmp_path / "o"
    prepare(PrepareConfig(str(raw_with_junk), str(out), size=32), progress=False)
    with pytest.raises(OutputExistsError, match="--force"):
        prepare(PrepareConfig(str(raw_with_junk), str(out), size=32), progress=False)
    prepare(PrepareConfig(str(raw_with_junk), str(out), size=32, force=True), progress=False)


def test_reals_and_fakes_share_the_pipeline(faces):
    """The shared faces128 images (v2) were made as Lanczos 256, JPEG q75, Lanczos 128:
    the raw FFHQ originals through standardize() with that recipe give the shipped
    pixels exactly, and a JPEG round trip at the source resolution does not."""
    for raw in sorted((faces.parent / "raw" / "ffhq-1024").glob("*.jpg"))[:3]:
        shipped_path = next(faces.glob(f"ffhq/*/{int(raw.stem):05d}.png"))
        shipped = np.asarray(Image.open(shipped_path).convert("RGB"), dtype=float)
        original = Image.open(raw).convert("RGB")
        made = np.asarray(standardize(original, 128, jpeg_quality=75, jpeg_size=256), dtype=float)
        assert np.abs(made - shipped).max() == 0, raw.name
        at_source = np.asarray(standardize(original, 128, jpeg_quality=75), dtype=float)
        assert np.abs(at_source - shipped).mean() > 0.5, raw.name


def test_bad_split_fails_with_a_hint(raw_with_junk, tmp_path):
    with pytest.raises(ValueError, match="0.7,0.1,0.2"):
        prepare(PrepareConfig(str(raw_with_junk), str(tmp_path / "o"), split=(0.5, 0.1, 0.1)), progress=False)


def test_force_replaces_the_output_instead_of_merging_into_it(raw_with_junk, tmp_path):
    """A second run with another seed and --force leaves exactly its own files: no image of the
    first run's split survives in another split folder (the silent train/test leak)."""
    out = tmp_path / "o"
    prepare(PrepareConfig(str(raw_with_junk), str(out), size=32, seed=0), progress=False)
    (out / "notes.txt").write_text("left by hand")
    prepare(PrepareConfig(str(raw_with_junk), str(out), size=32, seed=1, force=True), progress=False)
    assert pngs(out) == sorted(r["output"] for r in _rows(out))
    assert len(pngs(out)) == 8 and not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "src"]     # the old folder and temp are gone


def test_failed_force_rebuild_keeps_the_old_output(raw_with_junk, tmp_path, monkeypatch):
    import patchforensics.data.prepare as prepare_module

    out = tmp_path / "o"
    prepare(PrepareConfig(str(raw_with_junk), str(out), size=32, seed=0), progress=False)
    before = {p: (out / p).read_bytes() for p in pngs(out) + ["manifest.csv"]}
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed mid-build")
        return standardize(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "standardize", crash_on_third)
    with pytest.raises(RuntimeError, match="mid-build"):
        prepare(PrepareConfig(str(raw_with_junk), str(out), size=32, seed=1, force=True), progress=False)
    assert {p: (out / p).read_bytes() for p in pngs(out) + ["manifest.csv"]} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "src"]     # no half-built folder left
