"""The ``mediapipe`` segmenter: face-mesh landmarks for the face parts, selfie segmentation for the person."""
from __future__ import annotations

import cv2
import numpy as np

from ...core.stderr import native_stderr_silenced


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
