"""Face alignment (``align``, ``align-video``): mediapipe face meshes cut into FFHQ / CelebA-HQ crops.

The paper's datasets are aligned face crops: FFHQ and CelebA-HQ were cut from
photos by an oriented square derived from the eyes and the mouth, and the seed
cut FaceForensics++ frames the same way so that every dataset shares one
geometry. :mod:`.landmarks` finds the faces, :mod:`.geometry` cuts the square,
:mod:`.photos` and :mod:`.video` run it over folders of photos and videos;
:mod:`.photographic` tells a photographed face from a drawn one.
"""
from .geometry import (POINT_NAMES, STYLES, AlignedFace, AlignStyle, align_faces, alignment_quad, five_points,
                       output_to_source, pixel_affine, warp_quad)
from .landmarks import FaceLandmarker
from .photographic import flat_share, is_photographic
from .photos import AlignConfig, AlignResult, align_images
from .video import (VideoAlignConfig, VideoAlignResult, align_videos, faceforensics_suite, iter_frames, list_videos,
                    video_identity)

__all__ = ["POINT_NAMES", "STYLES", "AlignConfig", "AlignResult", "AlignStyle", "AlignedFace", "FaceLandmarker",
           "VideoAlignConfig", "VideoAlignResult", "align_faces", "align_images", "align_videos", "alignment_quad",
           "faceforensics_suite", "five_points", "flat_share", "is_photographic", "iter_frames", "list_videos", "output_to_source", "pixel_affine",
           "video_identity", "warp_quad"]
