"""The ``bisenet`` segmenter: a BiSeNet face-parsing network (19 CelebAMask-HQ classes), the seed's.

The network carries the module names of the widely shared face-parsing checkpoints, so
their state dicts load as they are; the weights are the user's (none ship here).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...models.checkpoint import load_legacy_pth
from ...models.resnet import BasicBlock


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
