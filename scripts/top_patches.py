"""The top-patch rule's numbers (docs/detect.md, "The most suspicious patches"), bundled detector.

    PYTHONPATH=src python scripts/top_patches.py [../shared/data]

1. Where in a patch's receptive field its score comes from: the share of the gradient of each
   patch's logit difference (fake - real) with respect to the input pixels (|d|, summed over
   colour) that lies in its centre box (``detector.centre_boxes``), over every patch of 8 real and
   8 fake aligned test faces; and for comparison in a centred box of the same size around the
   field's geometric centre.
2. The rule before (greedy non-maximum suppression of the whole fields at IoU 0.25) and now
   (``detector.pick_patches``): how far below the best patch the picks fell, and how many picks
   a face gets now, on the wild portraits (faces found) and the aligned ffhq and tpdne test faces.
3. What is shown: the most suspicious patch's box and its centre box on the raw 1024-px fakes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from patchforensics.data.transforms import to_tensor
from patchforensics.models.checkpoint import BUNDLED_DIR, load_model
from patchforensics.screening.detector import MAX_PATCH_FILL, centre_boxes, open_detector


def gradient_share(root: Path) -> None:
    loaded = load_model(BUNDLED_DIR, "weights")
    net, card = loaded.model.eval(), loaded.card
    files = [p for folder in ("ffhq", "tpdne-stylegan2")
             for p in sorted((root / "faces128" / folder / "test").glob("*.png"))[:8]]
    x = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in files]).requires_grad_(True)
    out = net(x)
    boxes = card.patch_boxes(x.shape[-1])
    h, w = boxes.shape[:2]
    centres = centre_boxes(boxes.reshape(-1, 4)).reshape(h, w, 4)
    shares = []
    for y in range(h):
        for xx in range(w):
            x.grad = None
            (out[:, 0, y, xx] - out[:, 1, y, xx]).sum().backward(retain_graph=True)
            g = x.grad.abs().sum(1).numpy()
            t, l, b, r = centres[y, xx]
            shares.append(g[:, t:b, l:r].sum((1, 2)) / g.sum((1, 2)))
    shares = np.concatenate(shares)
    t, l, b, r = centres[h // 2, w // 2]
    area = (b - t) * (r - l) / ((boxes[h // 2, w // 2, 2] - boxes[h // 2, w // 2, 0]) ** 2)
    print(f"gradient share in the centre box: mean {shares.mean():.2f}, 10th-90th percentile "
          f"{np.percentile(shares, 10):.2f}-{np.percentile(shares, 90):.2f} over {len(shares)} patch-faces; "
          f"an inner centre box is {b - t}x{r - l} px of a {boxes[h // 2, w // 2, 2] - boxes[h // 2, w // 2, 0]}-px "
          f"field ({area:.0%} of its area)")


def old_rule(order, boxes: np.ndarray, k: int = 3, max_iou: float = 0.25) -> list[int]:
    """The greedy suppression of whole fields that chose the top patches before."""
    picks: list[int] = []
    for i in order:
        t, l, b, r = boxes[i]
        for j in picks:
            t2, l2, b2, r2 = boxes[j]
            inter = max(0, min(b, b2) - max(t, t2)) * max(0, min(r, r2) - max(l, l2))
            if inter / ((b - t) * (r - l) + (b2 - t2) * (r2 - l2) - inter) > max_iou:
                break
        else:
            picks.append(int(i))
            if len(picks) == k:
                break
    return picks


def scored_mask(face, boxes: np.ndarray) -> np.ndarray:
    inside = face.maps.inside_photo
    return np.array([1 - inside[t:b, l:r].mean() <= MAX_PATCH_FILL for t, l, b, r in boxes])


def compare_rules(detector, root: Path) -> None:
    boxes = detector.card.patch_boxes().reshape(-1, 4)
    sets = {"wild portraits": [f for s in detector.screen_paths(
                sorted((root / "raw" / "wild-portraits").glob("*.jpg")), "find") for f in s.faces],
            "aligned ffhq + tpdne test": detector.analyze(
                [Image.open(p).convert("RGB") for folder in ("ffhq", "tpdne-stylegan2")
                 for p in sorted((root / "faces128" / folder / "test").glob("*.png"))])}
    for name, faces in sets.items():
        old_gaps, counts = [], []
        for f in faces:
            flat = f.maps.patch_p_fake.reshape(-1)
            scored = scored_mask(f, boxes)
            order = [j for j in np.argsort(-flat, kind="stable") if scored[j]]
            old_gaps += [flat[order[0]] - flat[j] for j in old_rule(order, boxes)[1:]]
            counts.append(len(f.top_patches))
        old_gaps = np.array(old_gaps)
        print(f"{name} ({len(faces)} faces): before, picks #2-#3 fell {np.median(old_gaps):.2f} below the best "
              f"(median), {np.mean(old_gaps > 0.1):.0%} more than 0.1 and {np.mean(old_gaps > 0.3):.0%} more than "
              f"0.3 below, at most {old_gaps.max():.2f}; now picks per face (1, 2, 3): "
              f"{np.bincount(counts, minlength=4)[1:].tolist()}")


def shown_sizes(detector, root: Path) -> None:
    for s in detector.screen_paths(sorted((root / "raw" / "tpdne-1024").glob("*.jpg")), "find"):
        p = s.faces[0].top_patches[0]
        print(f"{s.width}x{s.height}: box {p.box[2] - p.box[0]}x{p.box[3] - p.box[1]} px, centre box "
              f"{p.centre_box[2] - p.centre_box[0]}x{p.centre_box[3] - p.centre_box[1]} px")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    gradient_share(root)
    with open_detector() as detector:
        compare_rules(detector, root)
        shown_sizes(detector, root)


if __name__ == "__main__":
    main()
