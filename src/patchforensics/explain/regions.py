"""``regions``: which face parts hold the most predictive patches.

Each source image of a ``patches`` folder is segmented into fine classes
(left eye, right eye, left brow, …) and every top patch goes to the class
holding the largest share of its pixels, *normalised by that class's size in
the image*, then to that class's region (both eyes -> ``eye``): the seed's rule,
under which a small part such as one eye wins when a patch covers much of it.
``normalise="region"`` groups the classes first and normalises by the whole
region's size instead (both eyes together), which favours large regions. The same is done
for one random patch position drawn in the same image for every top patch,
the baseline a uniform-random detector would give (with ``patches --unique``
that is exactly one random patch per image).

Segmenters:

- ``mediapipe`` (default, offline: ``mediapipe==0.10.21`` ships its models):
  face-mesh landmarks give eye, brows, nose, mouth and skin (the face oval);
  selfie segmentation gives person vs background; person pixels outside the
  face are ``hair`` down to the chin and ``neck_clothes`` below it (ears fall
  into ``hair``: the mesh has no ear landmarks).
- ``bisenet``: a BiSeNet face-parsing network (19 CelebAMask-HQ classes, the
  seed's segmenter) loaded from a checkpoint the user supplies (safetensors,
  or a ``.pth`` state dict read with ``weights_only=True``); classes are
  grouped as in the paper.

Images where no face is found are counted and listed, their patches are kept
out of the shares. Output (default ``<patches_dir>/regions`` or
``regions_bisenet``)::

    regions.json          counts and shares per class and region, top vs random, no-face files
    regions.csv           one row per top patch: its region and its random baseline's
    histogram.png         top-patch vs random shares, reals and fakes side by side
    segmentation_examples.png  a few images with their region maps (to check them by eye)
    {reals,fakes}/<region>.png  grid of the top patches assigned to each region, best first
"""
from __future__ import annotations

import csv
import io
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..core import fileio
from ..models.checkpoint import load_legacy_pth
from ..core.config import ConfigError, require
from ..core.device import resolve_device
from ..core.imageio import ImageLoadError, SkipLog, load_rgb
from ..core.stderr import native_stderr_silenced
from ..models.layers import BasicBlock
from .patches import cut_box, make_grid, read_patch_set
from ..data.transforms import TransformConfig, eval_image, parse_corruptions
from .common import CLASS_DIRS

SEGMENTERS = ("mediapipe", "bisenet")


NORMALISE = ("class", "region")


class Segmenter(Protocol):
    """Turns an RGB image into a map of fine classes, each belonging to one region."""

    name: str
    classes: tuple[str, ...]        # label id -> fine class name (l_eye, r_eye, …)
    region_of: np.ndarray           # label id -> region id, (len(classes),) integers
    regions: tuple[str, ...]        # region id -> region name (eye, …)
    face_regions: frozenset[int]    # region ids whose presence means "a face was found"

    def segment(self, rgb: np.ndarray) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 -> ``(H, W)`` uint8 class ids, or ``None`` when no face is found."""


# ----------------------------------------------------------------- mediapipe
def _chains(edges) -> list[list[int]]:
    """Order an undirected edge set into vertex paths (a closed loop repeats no vertex)."""
    adjacent: dict[int, list[int]] = {}
    for a, b in edges:
        adjacent.setdefault(a, []).append(b)
        adjacent.setdefault(b, []).append(a)
    unvisited, chains = set(adjacent), []
    while unvisited:
        ends = sorted(v for v in unvisited if len(adjacent[v]) == 1)
        path = [ends[0] if ends else min(unvisited)]
        unvisited.discard(path[0])
        while True:
            nxt = [v for v in adjacent[path[-1]] if v in unvisited]
            if not nxt:
                break
            path.append(nxt[0])
            unvisited.discard(nxt[0])
        chains.append(path)
    return chains


def _band_polygon(edges) -> list[int]:
    """A thin band drawn as two open lines (an eyebrow's upper and lower edge) -> one outline."""
    first, second = _chains(edges)[:2]
    return first + second[::-1]


class MediapipeSegmenter:
    """Face regions from mediapipe's face mesh + selfie segmentation (bundled models, CPU)."""

    name = "mediapipe"
    classes = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "hair",
               "neck_clothes")
    regions = ("background", "skin", "brows", "eye", "nose", "mouth", "hair", "neck_clothes")
    region_of = np.array([0, 1, 2, 2, 3, 3, 4, 5, 6, 7])
    face_regions = frozenset({1, 2, 3, 4, 5})

    def __init__(self, min_detection_confidence: float = 0.3):
        import mediapipe as mp
        from mediapipe.python.solutions import face_mesh_connections as mesh

        with native_stderr_silenced():      # TFLite's start-up lines, as in detect
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                min_detection_confidence=min_detection_confidence)
            self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        vertices = (lambda edges: sorted({v for e in edges for v in e}))
        self._oval = vertices(mesh.FACEMESH_FACE_OVAL)
        # (class id, landmark indices, convex?) painted in this order over the skin
        self._parts = [
            (6, vertices(mesh.FACEMESH_NOSE), True),
            (7, vertices(mesh.FACEMESH_LIPS), True),
            (2, _band_polygon(mesh.FACEMESH_LEFT_EYEBROW), False),
            (3, _band_polygon(mesh.FACEMESH_RIGHT_EYEBROW), False),
            (4, vertices(mesh.FACEMESH_LEFT_EYE), True),
            (5, vertices(mesh.FACEMESH_RIGHT_EYE), True),
        ]

    @staticmethod
    def _fill(shape: tuple[int, int], points: np.ndarray, convex: bool) -> np.ndarray:
        canvas = np.zeros(shape, np.uint8)
        poly = cv2.convexHull(points.astype(np.float32)) if convex else points.reshape(-1, 1, 2)
        # 4 fractional bits keep sub-pixel landmark precision on small images
        cv2.fillPoly(canvas, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        return canvas.astype(bool)

    def segment(self, rgb: np.ndarray) -> np.ndarray | None:
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        with native_stderr_silenced():
            found = self._mesh.process(rgb).multi_face_landmarks
            person = self._selfie.process(rgb).segmentation_mask > 0.5 if found else None
        if not found:
            return None
        pts = np.array([(p.x * w, p.y * h) for p in found[0].landmark], dtype=np.float32)
        labels = np.zeros((h, w), np.uint8)
        chin_row = pts[self._oval, 1].max()
        below_chin = (np.arange(h) > chin_row)[:, None]
        labels[person & ~below_chin] = 8
        labels[person & below_chin] = 9
        labels[self._fill((h, w), pts[self._oval], True)] = 1
        for cls, idx, convex in self._parts:
            labels[self._fill((h, w), pts[idx], convex)] = cls
        return labels

    def close(self) -> None:
        self._mesh.close()
        self._selfie.close()


# ------------------------------------------------------------------ BiSeNet
class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ResNet18Features(nn.Module):
    """ResNet-18 returning the 1/8, 1/16 and 1/32 resolution features."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, stride) in enumerate(widths, 1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    """Re-weights channels by a sigmoid of their global average."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        weight = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * weight


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18Features()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))     # broadcast over 1/32 grid
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + context, feat16.shape[2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest"))
        return feat8, up16


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial, context):
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        weight = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * weight + feat


class ParsingHead(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """BiSeNet face parser (ResNet-18 context path, 1/8-resolution spatial path taken
    from the backbone), with the module names of the widely shared face-parsing
    checkpoints so their state dicts load as they are.

    ``(N, 3, S, S)`` ImageNet-normalised RGB -> ``(N, n_classes, S, S)`` logits.
    The two auxiliary heads exist only so training checkpoints load strictly.
    """

    def __init__(self, n_classes: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = ParsingHead(256, 256, n_classes)
        self.conv_out16 = ParsingHead(128, 64, n_classes)
        self.conv_out32 = ParsingHead(128, 64, n_classes)

    def forward(self, x):
        spatial, context = self.cp(x)
        logits = self.conv_out(self.ffm(spatial, context))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


#: The 19 CelebAMask-HQ classes, in the network's output order.
CELEBAMASK_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
                      "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
#: The paper's grouping of those classes into regions.
CELEBAMASK_GROUPS = {"background": "background", "skin": "skin", "l_brow": "brows", "r_brow": "brows",
                     "l_eye": "eye", "r_eye": "eye", "eye_g": "eye", "l_ear": "ear", "r_ear": "ear",
                     "ear_r": "ear", "nose": "nose", "mouth": "mouth", "u_lip": "mouth", "l_lip": "mouth",
                     "neck": "neck", "neck_l": "neck", "cloth": "clothes", "hair": "hair", "hat": "hat"}
_BISENET_REGIONS = tuple(OrderedDict.fromkeys(CELEBAMASK_GROUPS.values()))
_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_bisenet(path: str | Path) -> BiSeNet:
    """A :class:`BiSeNet` with weights from ``path`` (``.safetensors``, or a ``.pth``/``.pt``
    state dict read with ``torch.load(weights_only=True)``: nothing is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the 19-class face-parsing checkpoint "
                                "(e.g. 79999_iter.pth or a .safetensors conversion of it)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = load_legacy_pth(path)
    with torch.device("meta"):      # no random init: every tensor comes from the file
        net = BiSeNet(len(CELEBAMASK_CLASSES))
    expected = net.state_dict()
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:   # absent in old checkpoints
            state[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path} is not a 19-class BiSeNet face-parsing checkpoint (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]} ...)")
    net.load_state_dict(state, assign=True)
    return net.eval()


class BiSeNetSegmenter:
    """Face regions from a BiSeNet face parser, grouped as in the paper."""

    name = "bisenet"
    classes = CELEBAMASK_CLASSES
    regions = _BISENET_REGIONS
    region_of = np.array([_BISENET_REGIONS.index(CELEBAMASK_GROUPS[c]) for c in CELEBAMASK_CLASSES])
    face_regions = frozenset(_BISENET_REGIONS.index(r) for r in ("skin", "brows", "eye", "nose", "mouth"))

    def __init__(self, net: BiSeNet, input_size: int = 512, device: str | torch.device = "cpu"):
        self.net = net.to(device).eval()
        self.input_size, self.device = input_size, torch.device(device)

    @torch.inference_mode()
    def segment(self, rgb: np.ndarray) -> np.ndarray | None:
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None].div(255.0)
        x = F.interpolate(x, (self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = ((x - _IMAGENET_MEAN) / _IMAGENET_STD).to(self.device)
        classes = self.net(x)[0].argmax(0).byte().cpu().numpy()
        labels = cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)
        if not np.isin(self.region_of[labels], list(self.face_regions)).any():
            return None
        return labels

    def close(self) -> None:
        pass


# ------------------------------------------------------------- assignment
def region_shares(labels: np.ndarray, box, n_labels: int) -> np.ndarray:
    """Per label: (pixels of the label inside ``box``) / (pixels of the label in the image).

    ``labels``: ``(H, W)`` label ids; ``box``: (top, left, bottom, right), may leave the
    image (outside pixels count for no label). Returns ``(n_labels,)`` in [0, 1].
    """
    patch = cut_box(labels.astype(np.int16), box, -1)
    inside = np.bincount(patch[patch >= 0].ravel(), minlength=n_labels)
    total = np.bincount(labels.ravel(), minlength=n_labels)
    return inside / np.maximum(total, 1)


def assign_region(labels: np.ndarray, box, region_of: np.ndarray, normalise: str = "class") -> int:
    """The region of ``box``: the fine class (``labels``' ids) with the largest share of
    its own pixels inside the box, mapped to its region by ``region_of`` (the seed's
    rule, ``normalise="class"``); or, with ``normalise="region"``, the region with the
    largest share of its pixels after grouping (both eyes counted as one region)."""
    region_of = np.asarray(region_of)
    if normalise == "class":
        return int(region_of[np.argmax(region_shares(labels, box, len(region_of)))])
    return int(np.argmax(region_shares(region_of[labels], box, int(region_of.max()) + 1)))


# ----------------------------------------------------------------- config
@dataclass
class RegionsConfig:
    """Options of ``patchforensics regions``."""

    patches_dir: str
    segmenter: str = "mediapipe"
    bisenet_weights: str | None = None
    bisenet_size: int = 512
    output: str | None = None
    seed: int = 0
    grid_max: int = 225
    examples: int = 4
    device: str = "auto"
    force: bool = False
    normalise: str = "class"        # class: the seed's per-class normalisation; region: group first

    def validate(self) -> None:
        resolve_device(self.device)     # a device this machine lacks fails here, even for mediapipe (CPU)
        require(self.segmenter in SEGMENTERS, "segmenter", f"choose one of {', '.join(SEGMENTERS)}")
        require(self.normalise in NORMALISE, "normalise", f"choose one of {', '.join(NORMALISE)}")
        require(self.bisenet_size >= 32, "bisenet_size", "must be >= 32 pixels")
        require(self.grid_max > 0, "grid_max", "must be > 0")
        require(self.examples >= 0, "examples", "must be >= 0")
        if not (Path(self.patches_dir) / "patches.json").is_file():
            raise FileNotFoundError(f"{self.patches_dir} has no patches.json; pass a folder written by "
                                    "'patchforensics patches' (results/<name>/<partition>/epoch_<which>/"
                                    "<dataset>/patches)")
        if self.segmenter == "bisenet" and not self.bisenet_weights:
            raise ConfigError("bisenet_weights: the bisenet segmenter needs --bisenet-weights FILE, a 19-class "
                              "CelebAMask-HQ face-parsing checkpoint (.safetensors or .pth); or use the "
                              "built-in --segmenter mediapipe")

    def output_dir(self) -> Path:
        if self.output:
            return Path(self.output)
        return Path(self.patches_dir) / ("regions" if self.segmenter == "mediapipe" else f"regions_{self.segmenter}")


def build_segmenter(cfg: RegionsConfig) -> Segmenter:
    if cfg.segmenter == "mediapipe":
        return MediapipeSegmenter()
    return BiSeNetSegmenter(load_bisenet(cfg.bisenet_weights), cfg.bisenet_size, resolve_device(cfg.device))


# -------------------------------------------------------------------- run
def run_regions(cfg: RegionsConfig, segmenter: Segmenter | None = None, progress: bool = True) -> Path:
    """Assign every top patch (and a random baseline patch) to a face region; returns the output folder."""
    cfg.validate()
    meta = json.loads((Path(cfg.patches_dir) / "patches.json").read_text())
    sets = {cls: read_patch_set(cfg.patches_dir, cls) for cls in CLASS_DIRS.values()}
    out_dir = cfg.output_dir()
    fileio.ensure_new_output(out_dir, cfg.force)
    own_segmenter = segmenter is None
    segmenter = segmenter or build_segmenter(cfg)
    tcfg = TransformConfig(**meta["transform"])
    corruptions = parse_corruptions(meta["corruptions"])
    boxes = np.load(Path(cfg.patches_dir) / "boxes.npy", allow_pickle=False)    # (H', W', 4)
    grid_h, grid_w = boxes.shape[:2]
    rng = np.random.default_rng(cfg.seed)
    skipped = SkipLog()
    summary: dict = {"segmenter": segmenter.name, "regions": list(segmenter.regions), "seed": cfg.seed,
                     "normalise": cfg.normalise, "patches_dir": str(cfg.patches_dir), "classes": {}}
    rows, examples = [], {}
    try:
        for cls, data in sets.items():
            files = [str(f) for f in data["files"]]
            top = np.full(len(files), -1)             # region id per top patch; -1 = no face / unreadable
            random = np.full(len(files), -1)
            random_pos = np.stack([rng.integers(0, grid_h, len(files)), rng.integers(0, grid_w, len(files))], 1)
            no_face: list[str] = []
            by_file: dict[str, list[int]] = {}
            for i, f in enumerate(files):
                by_file.setdefault(f, []).append(i)
            for f, idx in tqdm(by_file.items(), desc=f"regions {cls}", disable=not progress, leave=False):
                try:
                    rgb = np.asarray(eval_image(load_rgb(f), tcfg, corruptions))
                except ImageLoadError as e:
                    skipped.add(e)
                    continue
                labels = segmenter.segment(rgb)
                if labels is None:
                    no_face.append(f)
                    continue
                if len(examples.get(cls, [])) < cfg.examples:
                    examples.setdefault(cls, []).append((rgb, segmenter.region_of[labels]))
                for i in idx:
                    top[i] = assign_region(labels, data["box"][i], segmenter.region_of, cfg.normalise)
                    random[i] = assign_region(labels, boxes[tuple(random_pos[i])], segmenter.region_of,
                                              cfg.normalise)
            summary["classes"][cls] = class_summary(segmenter.regions, top, random, no_face, files)
            for i, f in enumerate(files):
                rows.append([cls, i, f, *data["pos"][i], _name(segmenter.regions, top[i]), *random_pos[i],
                             _name(segmenter.regions, random[i])])
            sets[cls]["region"] = top
    finally:
        if own_segmenter:
            segmenter.close()
    summary["skipped"] = skipped.as_list()

    with fileio.atomic_dir(out_dir, cfg.force) as tmp:
        for cls, data in sets.items():
            for r, region in enumerate(segmenter.regions):
                chosen = np.flatnonzero(data["region"] == r)[:cfg.grid_max]   # already best first
                if len(chosen):
                    fileio.save_image(Image.fromarray(make_grid(data["patch"][chosen])), tmp / cls / f"{region}.png")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["class", "rank", "file", "y", "x", "region", "random_y", "random_x", "random_region"])
        writer.writerows(rows)
        fileio.write_text(tmp / "regions.csv", buf.getvalue())
        plot_histograms(tmp / "histogram.png", summary, f"{meta['name']} on {meta['dataset']}")
        if examples:
            plot_examples(tmp / "segmentation_examples.png", examples, segmenter.regions)
        fileio.write_json(tmp / "regions.json", summary)
    return out_dir


def _name(regions: tuple[str, ...], region_id: int) -> str:
    return regions[region_id] if region_id >= 0 else ""


def class_summary(regions: tuple[str, ...], top: np.ndarray, random: np.ndarray, no_face: list[str],
                  files: list[str]) -> dict:
    """Counts and shares per region for one class (patches without a region left out of the shares)."""
    n_top, n_random = int((top >= 0).sum()), int((random >= 0).sum())
    no_face_set = set(no_face)
    counts = {}
    for r, region in enumerate(regions):
        t, b = int((top == r).sum()), int((random == r).sum())
        counts[region] = {"top": t, "random": b, "top_share": t / n_top if n_top else 0.0,
                          "random_share": b / n_random if n_random else 0.0}
    return {"patches": len(files), "assigned": n_top, "no_face_images": len(no_face),
            "no_face_patches": sum(f in no_face_set for f in files), "no_face_files": no_face,
            "counts": counts}


# ------------------------------------------------------------------ figures
def plot_histograms(path: Path, summary: dict, title: str) -> None:
    """Per class, the share of top patches in each region next to the random baseline's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(summary["classes"])
    fig, axes = plt.subplots(1, len(classes), figsize=(6.2 * len(classes), 4.2), squeeze=False)
    for ax, cls in zip(axes[0], classes):
        c = summary["classes"][cls]
        regions = [r for r in summary["regions"] if c["counts"][r]["top"] or c["counts"][r]["random"]]
        regions.sort(key=lambda r: -c["counts"][r]["top"])
        x = np.arange(len(regions))
        top = [c["counts"][r]["top_share"] for r in regions]
        base = [c["counts"][r]["random_share"] for r in regions]
        bars = ax.bar(x - 0.2, top, 0.4, label="top patches", color="#d95f02")
        ax.bar(x + 0.2, base, 0.4, label="random patches", color="#7570b3")
        for bar, r in zip(bars, regions):
            ax.annotate(str(c["counts"][r]["top"]), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, regions, rotation=45, ha="right")
        ax.set_ylabel("share of patches")
        note = f", no face in {c['no_face_images']} images" if c["no_face_images"] else ""
        ax.set_title(f"{cls}: {c['assigned']} patches{note}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} ({summary['segmenter']} regions)", fontsize=10)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_examples(path: Path, examples: dict[str, list], regions: tuple[str, ...]) -> None:
    """A few images with their region maps, so a person can judge the segmentation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cmap = plt.get_cmap("tab10" if len(regions) <= 10 else "tab20")
    colors = np.array([cmap(i)[:3] for i in range(len(regions))])
    rows = [(cls, rgb, labels) for cls, items in examples.items() for rgb, labels in items]
    fig, axes = plt.subplots(2, len(rows), figsize=(1.1 * len(rows) + 1.3, 2.5), squeeze=False)
    for k, (cls, rgb, labels) in enumerate(rows):
        blend = 0.45 * rgb / 255.0 + 0.55 * colors[labels]
        axes[0, k].imshow(rgb)
        axes[1, k].imshow(blend)
        axes[0, k].set_title(cls, fontsize=8)
        for ax in axes[:, k]:
            ax.set_axis_off()
    fig.legend(handles=[Patch(color=colors[i], label=r) for i, r in enumerate(regions)],
               loc="center right", fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.01, right=1 - 1.2 / (1.1 * len(rows) + 1.3), top=0.9, bottom=0.01,
                        wspace=0.04, hspace=0.04)
    fileio.save_figure(fig, path, dpi=100)
    plt.close(fig)
