"""``serve``'s answers as pydantic models, each field described: what ``/openapi.json`` documents.

A face's fields, and their descriptions, are those of :class:`~..faces.ScoredFace`, the
record ``detect`` writes from too.
"""
from __future__ import annotations

from typing import Literal, Sequence

from pydantic import BaseModel, Field

from ...data.align import STYLES
from ..detector import FACE_MODES, INPUT_KINDS
from ..faces import VERDICTS, Patch, ScoredFace, field_description
from ..render import PATCH_LEGEND

#: the values of ``?faces=`` (and ``--faces``)
FaceMode = Literal[tuple(FACE_MODES)]
AlignStyle = Literal[tuple(STYLES)]
Verdict = Literal[VERDICTS]
InputKind = Literal[INPUT_KINDS]
#: the answer's ``message`` for an image without a face
NO_FACE_MESSAGE = "no face found: no verdict"


def _of(record: type, name: str):
    """A field described as ``record``'s field ``name``."""
    return Field(description=field_description(record, name))


class PatchOut(BaseModel):
    """One of a face's most suspicious patches."""

    box: list[int] = _of(Patch, "box")
    p_fake: float = _of(Patch, "p_fake")
    crop: str = Field(description="PNG data URL of that box cut from the uploaded image")
    centre_box: list[int] = _of(Patch, "centre_box")
    centre_crop: str = Field(description="PNG data URL of centre_box cut from the uploaded image: where to look")


class FaceOut(BaseModel):
    """One face found in the upload (or the upload taken as one aligned face)."""

    index: int = _of(ScoredFace, "index")
    p_fake: float = _of(ScoredFace, "p_fake")
    verdict: Verdict = _of(ScoredFace, "verdict")
    face_box: list[int] = _of(ScoredFace, "face_box")
    quad: list[list[float]] | None = _of(ScoredFace, "quad")
    fill_share: float = _of(ScoredFace, "fill_share")
    upscale: float = _of(ScoredFace, "upscale")
    caveat: str | None = _of(ScoredFace, "caveat")
    top_patches: list[PatchOut] = _of(ScoredFace, "top_patches")
    overlay: str = Field(description="PNG data URL: the examined face beside its per-patch p(fake) heatmap; "
                                     + PATCH_LEGEND)

    @classmethod
    def of(cls, face: ScoredFace, crops: Sequence[tuple[str, str]], overlay: str) -> "FaceOut":
        """``face`` as the API shows it: every field but the pictures read from it; ``crops`` the
        PNG data URLs of its top patches (each its box's and its centre box's), ``overlay`` of its
        heatmap picture."""
        shown = {name: getattr(face, name) for name in cls.model_fields if name not in ("top_patches", "overlay")}
        return cls(**shown, overlay=overlay, top_patches=[
            PatchOut(box=list(p.box), p_fake=p.p_fake, crop=crop, centre_box=list(p.centre_box), centre_crop=centre)
            for p, (crop, centre) in zip(face.top_patches, crops)])


class DetectOut(BaseModel):
    """The answer to POST /api/detect: every face found in one image."""

    filename: str = Field(description="the upload's file name (the form's, or X-Filename; 'upload' when none)")
    model: str = Field(description="the model's name")
    threshold: str = Field(description="the decision threshold's name (fpr3pct, eer, …, or p_fake>=V)")
    p_fake_threshold: float = Field(description="a face is called fake when its p_fake is at least this")
    width: int = Field(description="the uploaded image's width, px")
    height: int = Field(description="the uploaded image's height, px")
    input: InputKind = Field(description="aligned: the image taken as one aligned face; found: faces found in "
                                         "it and aligned")
    faces: list[FaceOut] = Field(description="one per face, largest first; empty: no face found, no verdict")
    message: str | None = Field(description=f"'{NO_FACE_MESSAGE}' when faces is empty, else null")
    overlay: str | None = Field(description="PNG data URL of the upload with every face's heatmap on it; null "
                                            "for an image taken as one aligned face or without a face")


class InfoOut(BaseModel):
    """The answer to GET /api/info: the model and how the server decides."""

    model: str = Field(description="the model's name")
    scope: str = Field(description="what the model was trained on, and what it does not detect")
    architecture: str = Field(description="the model's architecture")
    backend: str = Field(description="the inference backend scoring the images")
    threshold: str = Field(description="the decision threshold's name")
    p_fake_threshold: float = Field(description="a face is called fake when its p_fake is at least this")
    validation_false_alarm_rate: float | None = Field(
        description="share of the validation reals called fake at the threshold; null: unknown")
    thresholds_p_fake: dict[str, float] = Field(description="every threshold stored with the model, as a "
                                                            "p(fake) cut")
    faces: FaceMode = Field(description="the face mode of a request without ?faces=")
    align_style: AlignStyle = Field(description="how found faces are aligned")
    input_size: int = Field(description="the model's input side, px: an image this size (square) with a face "
                                        "in it is taken as one aligned face under faces=auto")
    heatmap: str = Field(description="the heatmaps' colour scale")
    max_upload_bytes: int = Field(description="the upload cap, bytes (over it: HTTP 413)")
    formats: str = Field(description="the image formats an upload may be in, and what is read of an animation")


class ErrorOut(BaseModel):
    """Any answer that is not a result (HTTP 400, 413, 422, 500)."""

    error: str = Field(description="what went wrong, in one line")
