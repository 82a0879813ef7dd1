"""How two sources of the same generator differ: simple, readable image statistics per folder.

    python scripts/compare_sources.py ../shared/data/faces128 tpdne-stylegan2 stylegan2-nvidia ffhq

For each folder (all splits, 128-px PNG) prints the mean ± sd over images of:

- ``diversity``: RMS distance (0-255 scale) of an image to its folder's mean image — sampling
  with a truncation ψ < 1 pulls faces towards the average face and lowers it;
- ``saturation``: mean HSV saturation (0-1);
- ``contrast``: standard deviation of the luminance (0-255);
- ``border_std``: luminance sd of the outer 12-px frame (a plain backdrop is near 0);
- ``hf_energy``: share of the luminance spectrum's energy above half the Nyquist frequency
  (what a resizer or compression history changes first).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def load(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*/*.png"))
    return np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) for f in files])


def statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image statistics of ``(N, H, W, 3)`` float images (0-255)."""
    lum = images @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mean_image = images.mean(axis=0, keepdims=True)
    hi, lo = images.max(axis=3), images.min(axis=3)
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)
    frame = np.ones(lum.shape[1:], bool)
    frame[12:-12, 12:-12] = False
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(lum - lum.mean(axis=(1, 2), keepdims=True)), axes=(1, 2))) ** 2
    h, w = lum.shape[1:]
    yy, xx = np.mgrid[-h // 2:h // 2, -w // 2:w // 2]
    high = np.hypot(yy / (h / 2), xx / (w / 2)) > 0.5
    return {"diversity": np.sqrt(((images - mean_image) ** 2).mean(axis=(1, 2, 3))),
            "saturation": saturation.mean(axis=(1, 2)),
            "contrast": lum.std(axis=(1, 2)),
            "border_std": lum[:, frame].std(axis=1),
            "hf_energy": spectrum[:, high].sum(axis=1) / spectrum.sum(axis=(1, 2))}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    root, folders = Path(argv[0]), argv[1:]
    rows = {name: statistics(load(root / name)) for name in folders}
    keys = list(next(iter(rows.values())))
    print("| folder | n | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for name, stats in rows.items():
        n = len(stats[keys[0]])
        cells = [f"{stats[k].mean():.4g} ± {stats[k].std():.2g}" for k in keys]
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
