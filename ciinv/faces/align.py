"""FFHQ alignment of video frames: where each frame's face crop lies, and cutting it out.

Per frame, the face's 68 landmarks give an oriented square, the *quad*, by the recipe that
built the FFHQ data set (so crops look like the generator's training images). Over time the
quads are smoothed, so the crops do not jitter with the landmarks' noise. ``crop_face`` samples
the quad into a resolution×resolution image; ``ciinv.faces.paste.paste_back`` does the reverse
with the same geometry (``crop_transform``, ``antialias``).

Coordinates: frame pixels with the centre of the top-left pixel at (0, 0), x right, y down
(the landmarks' convention). A quad is float32 [4, 2]: the corners that the crop's top-left,
bottom-left, bottom-right and top-right *outer* corners map to (the order of PIL's QUAD transform
used by the FFHQ script).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path, read_npz

# Bilinear sampling alone aliases when one output pixel spans more than this many input pixels.
_AREA_ABOVE = 1.25


# ----------------------------------------------------------------------------------------------
# Quads


def _perpendicular(v: np.ndarray) -> np.ndarray:
    """flipud(v)·[-1, 1] of the FFHQ script for [..., 2] vectors: (x, y) → (-y, x)."""
    return np.stack([-v[..., 1], v[..., 0]], axis=-1)


def ffhq_quads(points: np.ndarray, center_sigma: float = 1.0, axes_sigma: float = 3.0) -> np.ndarray:
    """FFHQ crop quads of a sequence of landmark sets, smoothed over time.

    points: [F, 68, 2] pixels. The quad's centre is smoothed with a Gaussian of ``center_sigma``
    frames, its half-axes (size and roll) with ``axes_sigma`` frames (0 disables either).
    Returns float32 [F, 4, 2] (see the module docstring for the corner order).
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"points must be [frames, 68, 2], got {points.shape}")
    eye_left = points[:, 36:42].mean(axis=1)
    eye_right = points[:, 42:48].mean(axis=1)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (points[:, 48] + points[:, 54]) / 2
    eye_to_mouth = mouth_avg - eye_avg

    # x: the crop's half-width axis, horizontal in the face, from the eye line and the
    # (rotated) eye-to-mouth line; y: the half-height axis, x turned 90° clockwise on screen.
    x = eye_to_eye - _perpendicular(eye_to_mouth)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    x *= np.maximum(np.linalg.norm(eye_to_eye, axis=-1) * 2.0, np.linalg.norm(eye_to_mouth, axis=-1) * 1.8)[:, None]
    c = eye_avg + eye_to_mouth * 0.1

    if center_sigma > 0:
        c = gaussian_filter1d(c, center_sigma, axis=0, mode="nearest")
    if axes_sigma > 0:
        x = gaussian_filter1d(x, axes_sigma, axis=0, mode="nearest")
    # y = perpendicular(x) is linear in x, so smoothing x then turning it equals smoothing y.
    y = _perpendicular(x)
    quads = np.stack([c - x - y, c - x + y, c + x + y, c + x - y], axis=1)
    return quads.astype(np.float32)


def crop_transform(quad: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """3×3 matrices (crop → frame, frame → crop) for homogeneous pixel coordinates (x, y, 1).

    Crop pixel (u, v) has its centre at (u, v) like frame pixels; the crop's outer corners
    (−½, −½), (−½, R−½), (R−½, R−½), (R−½, −½) land on the quad's four corners. The quad must be a
    parallelogram (``ffhq_quads`` gives squares); the transform is affine.
    """
    quad = np.asarray(quad, np.float64)
    origin, down, across = quad[0], quad[1] - quad[0], quad[3] - quad[0]
    crop_to_frame = np.eye(3)
    crop_to_frame[:2, 0] = across / resolution
    crop_to_frame[:2, 1] = down / resolution
    crop_to_frame[:2, 2] = origin + 0.5 * (across + down) / resolution
    return crop_to_frame, np.linalg.inv(crop_to_frame)


def _pixels_per_pixel(transform: np.ndarray) -> float:
    """How many pixels of the transform's target one of its source pixels spans (geometric mean of the axes)."""
    return float(np.sqrt(abs(np.linalg.det(transform[:2, :2]))))


def antialias(image: np.ndarray, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink ``image`` by area averaging when sampling it through ``transform`` would skip pixels.

    ``transform`` maps output pixels to ``image`` pixels; if one output pixel spans more than
    _AREA_ABOVE image pixels, the image is resized (cv2.INTER_AREA) so that it spans about one,
    and the returned transform maps to the smaller image.
    """
    factor = _pixels_per_pixel(transform)
    if factor <= _AREA_ABOVE:
        return image, transform
    height, width = image.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # cv2.resize puts small pixel i's centre on image coordinate (i + ½)·f − ½.
    fx, fy = width / size[0], height / size[1]
    to_small = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
    return small, to_small @ transform


# ----------------------------------------------------------------------------------------------
# Crop


def crop_face(frame: np.ndarray, quad: np.ndarray, resolution: int) -> np.ndarray:
    """Sample the quad of an H×W×3 uint8 frame into a resolution×resolution×3 uint8 crop.

    Bilinear, after area-averaging the frame when the face is more than 1.25× the crop's size
    (so a large face does not alias); outside the frame the image is mirrored (as in the FFHQ
    script's reflect padding).
    """
    crop_to_frame, _ = crop_transform(quad, resolution)
    image, crop_to_frame = antialias(np.ascontiguousarray(frame), crop_to_frame)
    return cv2.warpAffine(
        image,
        crop_to_frame[:2],
        (resolution, resolution),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )


# ----------------------------------------------------------------------------------------------
# Whole videos


def align_video(
    video_path: str | os.PathLike,
    landmarks_path: str | os.PathLike,
    out_npz: str | os.PathLike,
    out_crops: str | os.PathLike,
    resolution: int = 1024,
    center_sigma: float = 1.0,
    axes_sigma: float = 3.0,
    meta: dict | None = None,
) -> None:
    """Crop every frame of a video to its smoothed FFHQ quad.

    Writes ``out_crops``, the crops in one lossless file (``ciinv.io.crops``: RGB, bit-exact; read it
    with ``ciinv.io.crops.open_crops``), and ``out_npz`` with 'quads' float32 [F, 4, 2], 'resolution'
    (int), 'sigmas' float32 [center_sigma, axes_sigma] and 'frame_size' int [width, height], each
    atomically. ``meta`` is the video's probe result (probed if None). The video is decoded once
    and streamed: memory does not grow with its length.
    """
    from ciinv.io.crops import CropWriter
    from ciinv.faces.landmarks import load_landmarks
    from ciinv.io.video import VideoReader, probe

    landmarks = load_landmarks(landmarks_path)
    quads = ffhq_quads(landmarks["points"], center_sigma, axes_sigma)
    frames = len(quads)
    meta = probe(video_path) if meta is None else meta
    if meta["frames"] != frames:
        raise CiinvError(
            f"{video_path} has {meta['frames']} frames but {landmarks_path} has {frames}; "
            "delete the landmarks file and rerun the landmarks step"
        )

    with VideoReader(video_path, meta) as reader, CropWriter(out_crops, frames, resolution) as writer:
        for index, frame in reader.frames():
            writer.write(crop_face(frame, quads[index], resolution))

    with atomic_path(out_npz) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            quads=quads,
            resolution=np.int64(resolution),
            sigmas=np.array([center_sigma, axes_sigma], np.float32),
            frame_size=np.array((meta["width"], meta["height"]), np.int64),
        )


def load_align(path: str | os.PathLike) -> dict:
    """Read what align_video wrote: {'quads' [F, 4, 2], 'resolution' (int), 'sigmas', 'frame_size'}.

    A truncated or garbled file, or one holding NaN/inf, is a CiinvError naming it.
    """
    result = read_npz(path, ["quads", "resolution"], rerun="rerun the align stage for its video",
                      per_frame=["quads"])
    if result["quads"].ndim != 3 or result["quads"].shape[1:] != (4, 2):
        raise CiinvError(f"{path}: 'quads' has shape {result['quads'].shape}, expected [frames, 4, 2]; "
                         "delete it and rerun the align stage for its video")
    result["resolution"] = int(result["resolution"])
    return result
