"""Pasting (edited) face crops back into the video frames they were cut from.

``paste_back`` warps an R×R crop onto its frame's quad (the inverse of ``ciinv.faces.align.crop_face``,
with the same geometry) and blends it in with ``face_mask``: a feathered ellipse around an
FFHQ-aligned face, 1 on the face and exactly 0 outside, so that the frame outside the face is
returned bit for bit. The masks and the blending live here.

Coordinates and quads as in ``ciinv.faces.align``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ciinv.faces.align import antialias, crop_transform

# The feathered paste-back region in crop coordinates (fractions of the crop side): an ellipse
# covering forehead to chin and cheek to cheek of an FFHQ-aligned face (eyes sit at ~0.48 of the
# height, the mouth at ~0.72, the chin at ~0.85).
_MASK_CENTER = (0.5, 0.54)
_MASK_AXES = (0.40, 0.44)


def face_mask(resolution: int, feather: float = 0.1) -> np.ndarray:
    """The paste-back weight in crop space: float32 [R, R] in [0, 1].

    1 well inside an ellipse around the face, falling smoothly (smoothstep) to exactly 0 at the
    ellipse over a band about ``feather``·R pixels wide; 0 outside the ellipse.
    """
    centers = (np.arange(resolution) + 0.5) / resolution
    u = (centers[None, :] - _MASK_CENTER[0]) / _MASK_AXES[0]
    v = (centers[:, None] - _MASK_CENTER[1]) / _MASK_AXES[1]
    # Distance inside the ellipse's edge, approximately, in fractions of the crop side.
    inside = (1.0 - np.sqrt(u**2 + v**2)) * min(_MASK_AXES)
    if feather <= 0:
        return (inside > 0).astype(np.float32)
    t = np.clip(inside / feather, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def paste_back(frame: np.ndarray, crop: np.ndarray, quad: np.ndarray, feather: float = 0.1) -> np.ndarray:
    """Blend an R×R×3 uint8 crop back into (a copy of) the H×W×3 uint8 frame it was cut from.

    The crop is warped onto the quad (bilinear; area-averaged first when the quad is smaller
    than the crop, the usual case, so generator detail finer than a frame pixel does not
    alias) and mixed in with ``face_mask(R, feather)``; frame pixels where the warped mask
    is 0 are returned unchanged, bit for bit.
    """
    resolution = crop.shape[0]
    out = frame.copy()
    height, width = frame.shape[:2]
    # Work only on the frame pixels the quad covers (plus one for bilinear support).
    quad = np.asarray(quad, np.float64)
    x0, y0 = np.maximum(np.floor(quad.min(axis=0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(quad[:, 1].max())) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return out

    _, frame_to_crop = crop_transform(quad, resolution)
    roi_to_crop = frame_to_crop @ np.array([[1.0, 0, x0], [0, 1, y0], [0, 0, 1]])
    mask = face_mask(resolution, feather)
    source, roi_to_source = antialias(np.ascontiguousarray(crop).astype(np.float32), roi_to_crop)
    mask, _ = antialias(mask, roi_to_crop)
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(source, roi_to_source[:2], size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(mask, roi_to_source[:2], size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    roi = out[y0:y1, x0:x1]
    blended = roi + weight[..., None] * (warped - roi)
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(weight[..., None] > 0, blended, roi)
    return out
