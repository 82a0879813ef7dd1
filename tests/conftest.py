"""Shared fixtures. Tests read real faces from ../shared/data (read-only) and
write only under pytest's tmp folders."""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
FACES = DATA / "faces128"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def faces() -> Path:
    """``../shared/data/faces128`` (ffhq, tpdne-stylegan2, generated-photos × train/val/test)."""
    assert FACES.is_dir(), f"shared data not found at {FACES}"
    return FACES


@pytest.fixture(scope="session")
def small_face_dirs(tmp_path_factory, faces) -> dict[str, Path]:
    """Symlinked subsets: ``real`` (FFHQ) and ``fake`` (generated.photos), each with
    train (60), val (20) and test (30) images."""
    root = tmp_path_factory.mktemp("small_faces")
    counts = {"train": 60, "val": 20, "test": 30}
    out = {}
    for kind, src in (("real", "ffhq"), ("fake", "generated-photos")):
        for split, n in counts.items():
            d = root / kind / split
            d.mkdir(parents=True)
            for p in sorted((faces / src / split).glob("*.png"))[:n]:
                (d / p.name).symlink_to(p)
        out[kind] = root / kind
    return out


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, small_face_dirs) -> Path:
    """A small resnet18_layer1 (43-px patches) trained for 5 epochs on the small
    subsets (about a minute on 2 CPU cores). Shared by tests that need *a* trained
    checkpoint; it reaches test AP ~0.9."""
    from patchforensics.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    cfg = TrainConfig(real=[str(small_face_dirs["real"])], fake=[str(small_face_dirs["fake"])],
                      model="resnet18_layer1", max_epochs=5, batch_size=16, patience=0,
                      checkpoints_dir=str(root / "checkpoints"), runs_dir=str(root / "runs"))
    return train(cfg, progress=False).checkpoint_dir


# The shared data is rebuilt from time to time: tests pick its files by listing a
# folder (and, where a test needs a kind of image, by what the image is), never by name.
def listed(folder: str, n: int) -> list[str]:
    """The first ``n`` images of ``FACES/folder`` by name, as paths relative to ``FACES``."""
    return [f"{folder}/{p.name}" for p in sorted((FACES / folder).glob("*.png"))[:n]]


def raw_images(folder: str, n: int) -> list[Path]:
    """The first ``n`` images of ``DATA/raw/folder`` by name (unaligned originals)."""
    return sorted(p for p in (DATA / "raw" / folder).iterdir()
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]


def mixed_photos(folder: Path, reals: int, fakes: int) -> Path:
    """``folder`` filled with links to ``reals`` FFHQ and ``fakes`` tpdne-stylegan2 test faces, one
    wild portrait (faces found in a photo) and an unreadable file: rows of every status."""
    folder.mkdir(parents=True)
    for rel in listed("ffhq/test", reals) + listed("tpdne-stylegan2/test", fakes):
        (folder / rel.replace("/", "_")).symlink_to(FACES / rel)
    portrait = raw_images("wild-portraits", 1)[0]
    (folder / f"portrait{portrait.suffix}").symlink_to(portrait)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


@functools.lru_cache(maxsize=None)
def clear_pair(n: int = 40) -> tuple[str, str]:
    """A real and a fake test face (relative to ``FACES``) that the bundled detector gets
    right with the widest margin: among the first ``n`` of each test folder, the real with
    the lowest p(fake) and the fake with the highest."""
    from patchforensics.screening.detect import DetectConfig, detect

    reals, fakes = listed("ffhq/test", n), listed("tpdne-stylegan2/test", n)
    result = detect(DetectConfig(paths=[str(FACES / p) for p in reals + fakes]), progress=False)
    p_fake = dict(zip(reals + fakes, (face.p_fake for _, face in result.faces)))
    return min(reals, key=p_fake.get), max(fakes, key=p_fake.get)


@functools.lru_cache(maxsize=None)
def _wild_portrait_faces() -> dict[Path, list]:
    """Every wild portrait with the faces ``detect`` finds in it (bundled detector), found once."""
    from patchforensics.screening.detect import DetectConfig, detect

    result = detect(DetectConfig(paths=[str(DATA / "raw" / "wild-portraits")], faces="find"), progress=False)
    return {Path(im.path): im.faces for im in result.images if im.faces}


def edge_portraits(n: int = 4) -> list[Path]:
    """The ``n`` wild portraits whose face squares reach furthest beyond the photo (the largest
    alignment fill): where boxes were inverted and ``serve`` failed (issue #19)."""
    fill = {path: max(f.fill_share for f in faces) for path, faces in _wild_portrait_faces().items()}
    return sorted(fill, key=fill.get, reverse=True)[:n]


def group_portrait() -> Path:
    """The wild portrait in which the most faces are found (the smallest such photo on a tie)."""
    from PIL import Image

    found = _wild_portrait_faces()
    return max(found, key=lambda p: (len(found[p]), -Image.open(p).width))


@functools.lru_cache(maxsize=None)
def plain_background_face() -> Path:
    """The FFHQ validation face whose top-left corner and left edge are the most uniform
    (a plain wall there: background for any face parser)."""
    from PIL import Image

    def unevenness(path: Path) -> float:
        a = np.asarray(Image.open(path).convert("L"), dtype=float)
        return float(a[:10, :10].std() + a[40:80, :6].std())
    return min(sorted((FACES / "ffhq" / "val").glob("*.png")), key=unevenness)


def pngs(folder: Path) -> list[str]:
    """Every PNG under ``folder``, as sorted paths relative to it (what a data builder left there)."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*.png"))


@contextlib.contextmanager
def headless_chromium():
    """A headless Debian Chromium driven by Playwright, closed at the end. Where Chromium (or
    Playwright) is missing the test is skipped, except under CI (``CI=true``), where it fails:
    a browser test that silently skips there checks nothing."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"Debian chromium is not installed ({CHROMIUM}); apt-get install -y chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e .[test])"
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{missing}; CI=true, so the browser tests must run")
        pytest.skip(missing)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield browser
        finally:
            browser.close()
