"""Face meshes in photos: mediapipe's 478-point face mesh (iris included) and its face detectors.

The seed found the eyes and mouth with dlib; here mediapipe's face mesh provides
them (the detector and mesh models ship inside the mediapipe wheel, nothing is
downloaded). :class:`FaceLandmarker` also finds faces the whole-photo mesh
misses: turned faces, small faces in large photos, the faces of rows and groups.
"""
from __future__ import annotations

import cv2
import numpy as np

from ...core.stderr import native_stderr_silenced

#: side and stride (px) of the overlapping tiles searched for faces too small for a whole-photo pass;
#: the overlap (128 px) is larger than the faces the whole-photo pass misses (~120 px), so every such
#: face lies whole in some tile, where it is large enough for the short-range detector (from ~50 px);
#: beside faces found already both are scaled up so that the overlap holds the largest of them
TILE, TILE_STRIDE = 384, 256
#: a photo in which the whole-photo mesh found faces is searched further (tiles, full-range detector)
#: when its long side is more than this many times the smallest face found: the mesh sees the photo
#: shrunk to 128 px and loses faces of rows and groups (a row of five ~300 px portraits: 1 face of 5),
#: while a portrait's long side is under 2.3 face sides (300 wild portraits; 1.9 for 1024 px FFHQ)
GROUP_RATIO = 3.0
#: how far apart two detections may overlap (intersection over union) and still be two faces
SAME_FACE_IOU = 0.3


class FaceLandmarker:
    """mediapipe's 478-point face mesh on still images (one call per image or frame).

    ``detect`` returns one ``(478, 2)`` array of pixel coordinates per face:

    1. **upright**: the mesh assumes a roughly upright face (it reads most faces turned
       by ±90°, but fits an upside-down face as if it were upright, eyes on the mouth).
       So the photo is turned upside down first when mediapipe's short-range face
       detector is surer of a face that way (on the 316 upright raw photos of the shared
       data the upright photo always scored higher, by 0.09 at least); when nothing is
       found, a quarter turn either way is tried where the detector sees a face. The
       points are given back in the photo's own pixels;
    2. the mesh runs on the whole photo; when it finds nothing, or the photo's long side is
       more than :data:`GROUP_RATIO` times the smallest face it found (a row, a grid, a group),
    3. mediapipe's full-range detector and, in a photo larger than a tile, the short-range
       detector on overlapping tiles (:data:`TILE` px, larger for large faces: faces down to
       ~60 px high in large photos) propose boxes; the mesh is re-run on an enlarged crop of
       each box not on a face found already, and a face found twice is kept once.
    """

    def __init__(self, max_faces: int = 10, min_confidence: float = 0.5):
        with native_stderr_silenced():
            import mediapipe as mp  # heavy import, only when aligning

            solutions = mp.solutions
            self.min_confidence = min_confidence
            self._mesh = solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                                      refine_landmarks=True,
                                                      min_detection_confidence=min_confidence)
            self._crop_mesh = solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                           refine_landmarks=True,
                                                           min_detection_confidence=min_confidence)
            self._full_range = solutions.face_detection.FaceDetection(model_selection=1,
                                                                      min_detection_confidence=min_confidence)
            # weak detections too: the orientation test compares scores below the threshold
            self._short_range = solutions.face_detection.FaceDetection(model_selection=0,
                                                                       min_detection_confidence=0.05)
            # the graphs set up their models on worker threads, which log as they go; one image through
            # each waits for that to end inside this silenced block instead of leaking lines later
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in self._graphs():
                graph.process(blank)

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _graphs(self) -> tuple:
        return self._mesh, self._crop_mesh, self._full_range, self._short_range

    def close(self) -> None:
        for graph in self._graphs():
            graph.close()

    @staticmethod
    def _run(graph, rgb: np.ndarray):
        with native_stderr_silenced():
            return graph.process(np.ascontiguousarray(rgb))

    def _meshes(self, graph, rgb: np.ndarray) -> list[np.ndarray]:
        h, w = rgb.shape[:2]
        faces = self._run(graph, rgb).multi_face_landmarks or []
        return [np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float64) for face in faces]

    def _detections(self, graph, rgb: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """``(score, box x0, y0, x1, y1 in px)`` of each face a face-detection graph finds."""
        h, w = rgb.shape[:2]
        out = []
        for det in self._run(graph, rgb).detections or []:
            box = det.location_data.relative_bounding_box
            out.append((float(det.score[0]), np.array([box.xmin * w, box.ymin * h, (box.xmin + box.width) * w,
                                                       (box.ymin + box.height) * h])))
        return out

    def face_score(self, rgb: np.ndarray) -> float:
        """The short-range detector's best face score on a whole (H, W, 3) RGB array (0: none)."""
        return max((score for score, _ in self._detections(self._short_range, rgb)), default=0.0)

    def has_face(self, rgb: np.ndarray) -> bool:
        """Whether the short-range detector finds a face at ``min_confidence`` (it found one in
        every one of the 902 aligned 128 px test faces of the shared data, and none in flat or
        noise pictures; it does find drawn faces: :mod:`.photographic` tells those apart)."""
        return self.face_score(rgb) >= self.min_confidence

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Face meshes in an (H, W, 3) uint8 RGB array, as (478, 2) pixel (x, y) arrays.

        The photo is searched as it is or turned upside down, whichever holds the surer
        face; when that finds nothing, turned a quarter turn where the detector sees a face
        that way (a sideways face the mesh could not read as it was)."""
        h, w = rgb.shape[:2]
        turned = {k: np.rot90(rgb, k) for k in range(4)}
        upright = max((0, 2), key=lambda k: self.face_score(turned[k]))    # a tie keeps the photo as it is
        faces = self._find(turned[upright])
        if faces:
            return [_turned_back(mesh, upright, w, h) for mesh in faces]
        sideways = {k: self.face_score(turned[k]) for k in (1, 3)}
        for k in sorted((k for k in sideways if sideways[k] >= self.min_confidence), key=lambda k: -sideways[k]):
            faces = self._find(turned[k])
            if faces:
                return [_turned_back(mesh, k, w, h) for mesh in faces]
        return []

    def _find(self, rgb: np.ndarray) -> list[np.ndarray]:
        """The whole-photo mesh's faces, and where it may have missed some (it found none, or the
        photo is a group: :func:`_may_hold_more`) the faces mediapipe's full-range detector and the
        tiles propose beside them, each read by the mesh on an enlarged crop; one mesh per face."""
        faces = self._meshes(self._mesh, rgb)
        if faces and not _may_hold_more(faces, rgb.shape[:2]):
            return faces
        found = self._detections(self._full_range, rgb) + self._tiled_boxes(rgb, faces)
        found = [(score, box) for score, box in found
                 if not any(_inside(_face_box(face), (box[:2] + box[2:]) / 2) for face in faces)]
        boxes = [found[i][1] for i in _distinct([box for _, box in found], [score for score, _ in found])]
        faces = faces + self._crop_meshes(rgb, boxes)
        # a crop may hold a face found already (a neighbour's): the whole-photo mesh's own come first
        return [faces[i] for i in _distinct([_face_box(face) for face in faces], range(len(faces), 0, -1))]

    def _crop_meshes(self, rgb: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        """The mesh read on a crop of twice each box's side around it (the mesh wants context)."""
        h, w = rgb.shape[:2]
        faces = []
        for box in boxes:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            half = max(box[2] - box[0], box[3] - box[1])
            x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
            x1, y1 = int(min(cx + half, w)), int(min(cy + half, h))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            faces += [mesh + (x0, y0) for mesh in self._meshes(self._crop_mesh, rgb[y0:y1, x0:x1])]
        return faces

    def _tiled_boxes(self, rgb: np.ndarray, faces: list[np.ndarray]) -> list[tuple[float, np.ndarray]]:
        """``(score, box)`` of the faces the short-range detector finds in overlapping tiles:
        :data:`TILE` px every :data:`TILE_STRIDE` px, both scaled up so that the overlap holds the
        largest face found (``faces``) whole; none when the photo fits in one tile."""
        scale = max([1.0] + [_side(face) / (TILE - TILE_STRIDE) for face in faces])
        tile, stride = round(TILE * scale), round(TILE_STRIDE * scale)
        h, w = rgb.shape[:2]
        if max(h, w) <= tile:
            return []
        corners = [(x, y) for y in _tile_starts(h, tile, stride) for x in _tile_starts(w, tile, stride)]
        return [(score, box + (x, y, x, y)) for x, y in corners
                for score, box in self._detections(self._short_range, rgb[y:y + tile, x:x + tile])
                if score >= self.min_confidence]


def _face_box(mesh: np.ndarray) -> np.ndarray:
    """``(x0, y0, x1, y1)``: a mesh's extent."""
    return np.concatenate([mesh.min(0), mesh.max(0)])


def _side(mesh: np.ndarray) -> float:
    """A face's size: its mesh's longer extent (px)."""
    return float(np.ptp(mesh, axis=0).max())


def _inside(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _may_hold_more(faces: list[np.ndarray], shape: tuple[int, int]) -> bool:
    """Whether a photo in which the whole-photo mesh found ``faces`` is searched further: its long
    side is more than :data:`GROUP_RATIO` times the smallest face found (a row, a grid, a group)."""
    return max(shape) > GROUP_RATIO * min(_side(face) for face in faces)


def _distinct(boxes: list[np.ndarray], scores) -> list[int]:
    """Indices of ``(x0, y0, x1, y1)`` boxes, one per face: of boxes overlapping by more than
    :data:`SAME_FACE_IOU`, the highest-scored is kept (OpenCV's non-maximum suppression)."""
    if not boxes:
        return []
    rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    return [int(i) for i in np.asarray(cv2.dnn.NMSBoxes(rects, [float(s) for s in scores], 0.0,
                                                        SAME_FACE_IOU)).reshape(-1)]


def _turned_back(points: np.ndarray, turns: int, width: int, height: int) -> np.ndarray:
    """(N, 2) points ``(x, y)`` found in ``np.rot90(image, turns)`` (quarter turns
    anticlockwise), given back in the ``width x height`` image itself."""
    for k in range(turns, 0, -1):
        # one quarter turn takes (x, y) of an image w px wide to (y, w - x): undo it
        before_width = width if (k - 1) % 2 == 0 else height
        points = np.column_stack([before_width - points[:, 1], points[:, 0]])
    return points


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of ``tile`` px tiles every ``stride`` px, the last flush with the end."""
    starts = list(range(0, max(length - tile, 0) + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts
