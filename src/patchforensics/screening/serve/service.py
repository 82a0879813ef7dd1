"""The scoring behind ``serve``: uploads decoded and every face in them scored, one at a time.

Scoring holds a lock: the CPU is the bottleneck, and the face finder's mediapipe graphs
are not thread-safe.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from PIL import Image

from ...core.config import require
from ...core.heatmap import SCALE_TEXT
from ...core.imageio import FIRST_FRAME_TEXT, FORMATS_TEXT, ImageLoadError, load_rgb
from ..detector import DEFAULT_FACE_MODE, FACE_MODES, Detector
from ..render import face_caption, render_on_original, render_overlay
from ..report import png_data_url
from .schemas import NO_FACE_MESSAGE, DetectOut, FaceOut, InfoOut


class DetectService:
    """Decodes uploads and scores every face in them with one :class:`~..detector.Detector`
    (one request at a time); ``faces`` is the face mode of a request that names none."""

    def __init__(self, detector: Detector, max_upload_bytes: int, top_k: int = 3, faces: str = DEFAULT_FACE_MODE):
        require(faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        self.detector = detector
        self.max_upload_bytes = max_upload_bytes
        self.top_k = top_k
        self.faces = faces
        self._lock = threading.Lock()

    def info(self) -> dict:
        """The :class:`~.schemas.InfoOut` fields."""
        card = self.detector.card
        return InfoOut(model=card.name, scope=self.detector.scope, architecture=card.architecture,
                       backend=self.detector.engine.backend, threshold=self.detector.threshold_name,
                       p_fake_threshold=self.detector.p_fake_threshold,
                       validation_false_alarm_rate=self.detector.validation_false_alarm_rate(),
                       thresholds_p_fake={k: card.p_fake_threshold(k) for k in card.thresholds},
                       faces=self.faces, align_style=self.detector.align_style,
                       input_size=card.transform().load_size, heatmap=SCALE_TEXT,
                       max_upload_bytes=self.max_upload_bytes,
                       formats=f"{FORMATS_TEXT} ({FIRST_FRAME_TEXT})").model_dump()

    def analyze_bytes(self, data: bytes, filename: str = "upload", faces: str | None = None) -> dict:
        """Score every face of one uploaded file (``faces``: a :data:`~..detector.FACE_MODES`
        value, default the service's); the :class:`~.schemas.DetectOut` fields. Raises
        :class:`ImageLoadError` for a non-image."""
        # decode through load_rgb (EXIF, odd modes, size guard) via a private temp file
        with tempfile.TemporaryDirectory(prefix="patchforensics-upload-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            try:
                image = load_rgb(path)
            except ImageLoadError as e:
                raise ImageLoadError(filename, e.reason) from None
        with self._lock:
            screened = self.detector.screen([image], faces or self.faces, self.top_k)[0]
        shown = [FaceOut.of(face, [(_crop(image, p.box), _crop(image, p.centre_box)) for p in face.top_patches],
                            png_data_url(render_overlay(face)))
                 for face in screened.faces]
        found = screened.mode == "found" and screened.faces
        captions = [face_caption(i, face) for i, face in enumerate(screened.faces)]
        return DetectOut(filename=filename, model=self.detector.card.name, threshold=self.detector.threshold_name,
                         p_fake_threshold=self.detector.p_fake_threshold, width=image.width, height=image.height,
                         input=screened.mode, faces=shown, message=None if screened.faces else NO_FACE_MESSAGE,
                         overlay=png_data_url(render_on_original(image, screened.faces, captions)) if found else None
                         ).model_dump()


def _crop(image: Image.Image, box: tuple[int, int, int, int]) -> str:
    """A ``(top, left, bottom, right)`` box of ``image`` as a PNG data URL."""
    t, l, b, r = box
    return png_data_url(image.crop((l, t, r, b)))
