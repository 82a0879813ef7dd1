"""The scoring behind ``serve``: uploads decoded and every face in them scored, one at a time.

Scoring holds a lock: the CPU is the bottleneck, and the face finder's mediapipe graphs
are not thread-safe. Decoding is bounded too: uploads are decoded, scored and drawn by
:data:`DECODE_SLOTS` worker threads of the service's own (the others wait, holding only their
bytes), each within the ``--max-pixels`` budget (:mod:`~..decode`). So concurrent large uploads
cannot pile up decoded photos, and the memory a photo's pixels took is reused by the next one
in the same few threads instead of staying behind in the allocator's arenas of every request
thread that ever decoded one.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from ...core.config import require
from ...core.heatmap import scale_text
from ...core.imageio import FIRST_FRAME_TEXT, FORMATS_TEXT, SCREEN_MAX_PIXELS, Decoded, ImageLoadError
from ..decode import check_max_pixels, decode_photo, in_file_pixels
from ..detector import DEFAULT_FACE_MODE, FACE_MODES, Detector, Screened
from ..render import face_caption, render_on_original, render_overlay
from ..report import png_data_url
from .schemas import NO_FACE_MESSAGE, DetectOut, FaceOut, InfoOut

#: uploads decoded, scored and drawn at once: one scored while the next is decoded (scoring is
#: serialised anyway), so at most this many decoded photos, each within --max-pixels, are in memory
DECODE_SLOTS = 2


class DetectService:
    """Decodes uploads and scores every face in them with one :class:`~..detector.Detector`
    (one request at a time); ``faces`` is the face mode of a request that names none; an upload
    that would decode to more than ``max_pixels`` is refused before decoding."""

    def __init__(self, detector: Detector, max_upload_bytes: int, top_k: int = 3, faces: str = DEFAULT_FACE_MODE,
                 max_pixels: int = SCREEN_MAX_PIXELS):
        require(faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        check_max_pixels(max_pixels)
        self.detector = detector
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.top_k = top_k
        self.faces = faces
        self._lock = threading.Lock()
        self._workers = ThreadPoolExecutor(DECODE_SLOTS, thread_name_prefix="patchforensics-decode")

    def close(self) -> None:
        """Stop the worker threads (after the uploads in hand) and release the face finder."""
        self._workers.shutdown()
        self.detector.close()

    def info(self) -> dict:
        """The :class:`~.schemas.InfoOut` fields."""
        card = self.detector.card
        return InfoOut(model=card.name, scope=self.detector.scope, architecture=card.architecture,
                       backend=self.detector.engine.backend, threshold=self.detector.threshold_name,
                       p_fake_threshold=self.detector.p_fake_threshold,
                       validation_false_alarm_rate=self.detector.validation_false_alarm_rate(),
                       thresholds_p_fake={k: card.p_fake_threshold(k) for k in card.thresholds},
                       faces=self.faces, align_style=self.detector.align_style,
                       input_size=card.transform().load_size,
                       heatmap=scale_text(self.detector.p_fake_threshold, self.detector.threshold_name),
                       max_upload_bytes=self.max_upload_bytes,
                       formats=f"{FORMATS_TEXT} ({FIRST_FRAME_TEXT})").model_dump()

    def analyze_bytes(self, data: bytes, filename: str = "upload", faces: str | None = None) -> dict:
        """Score every face of one uploaded file (``faces``: a :data:`~..detector.FACE_MODES`
        value, default the service's); the :class:`~.schemas.DetectOut` fields. Raises
        :class:`ImageLoadError` for a non-image (:class:`~...core.imageio.ImageTooLargeError`
        over ``max_pixels``). Runs on one of the :data:`DECODE_SLOTS` workers."""
        return self._workers.submit(self._analyze, data, filename, faces).result()

    def _analyze(self, data: bytes, filename: str, faces: str | None) -> dict:
        try:
            return self._screen_upload(data, filename, faces)
        finally:
            _give_back_freed_memory()          # the photo's pixels were freed with that call's frame

    def _screen_upload(self, data: bytes, filename: str, faces: str | None) -> dict:
        # decode through load_rgb's checks (EXIF, odd modes, size guard) via a private temp file
        with tempfile.TemporaryDirectory(prefix="patchforensics-upload-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            try:
                photo = decode_photo(path, self.max_pixels)
            except ImageLoadError as e:
                raise type(e)(filename, e.reason) from None
        with self._lock:
            screened = self.detector.screen([photo.image], faces or self.faces, self.top_k)[0]
        return self._answer(filename, photo, screened)

    def _answer(self, filename: str, photo: Decoded, screened: Screened) -> dict:
        """The :class:`~.schemas.DetectOut` fields of one screened upload: pictures drawn from the
        decoded photo, boxes in the file's pixels."""
        image, cut = photo.image, self.detector.p_fake_threshold
        # crops come from the decoded photo, with the face's boxes before they are mapped to the file
        shown = [FaceOut.of(in_file_pixels(face, photo),
                            [(_crop(image, p.box), _crop(image, p.centre_box)) for p in face.top_patches],
                            png_data_url(render_overlay(face, threshold=cut)))
                 for face in screened.faces]
        found = screened.mode == "found" and screened.faces
        captions = [face_caption(i, face) for i, face in enumerate(screened.faces)]
        width, height = photo.file_size
        return DetectOut(filename=filename, model=self.detector.card.name, threshold=self.detector.threshold_name,
                         p_fake_threshold=cut, width=width, height=height,
                         input=screened.mode, faces=shown, message=None if screened.faces else NO_FACE_MESSAGE,
                         overlay=png_data_url(render_on_original(image, screened.faces, captions, threshold=cut))
                         if found else None).model_dump()


def _crop(image: Image.Image, box: tuple[int, int, int, int]) -> str:
    """A ``(top, left, bottom, right)`` box of ``image`` as a PNG data URL."""
    t, l, b, r = box
    return png_data_url(image.crop((l, t, r, b)))


def _give_back_freed_memory() -> None:
    """Return the heap pages freed by a photo's pixels to the system (glibc's ``malloc_trim``;
    elsewhere nothing): Pillow allocates images in 16 MB blocks, which glibc keeps in the
    worker thread's arena once freed, so a burst of large uploads would leave the server
    hundreds of MB larger for good."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()
