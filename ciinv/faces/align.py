"""FFHQ alignment of video frames: where each frame's face crop lies, and cutting it out.

Per frame, the face's 68 landmarks give an oriented square, the *quad*, by the recipe that
built the FFHQ data set (so crops look like the generator's training images). Over time the
quads are smoothed, so the crops do not jitter with the landmarks' noise. ``crop_face`` samples
the quad into a resolution×resolution image; ``ciinv.faces.paste.paste_back`` does the reverse
with the same geometry (``crop_transform``, ``antialias``). Where the quad runs past the frame's
edge, the crop is padded as the FFHQ recipe pads (``border_padding``): the mirrored frame, blurred,
faded towards the image's median colour, with a softened band inside the edge, so the generator
sees the kind of border it was trained on rather than a crisp mirrored half-face.

Coordinates: frame pixels with the centre of the top-left pixel at (0, 0), x right, y down
(the landmarks' convention). A quad is float32 [4, 2]: the corners that the crop's top-left,
bottom-left, bottom-right and top-right *outer* corners map to (the order of PIL's QUAD transform
used by the FFHQ script).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path, read_npz

# Bilinear sampling alone aliases when one output pixel spans more than this many input pixels.
_AREA_ABOVE = 1.25

# The FFHQ recipe's padding (NVlabs ffhq-dataset, recreate_aligned_images), as fractions of the
# quad's side: the margin kept around the quad's bounding box, the least padding on every side
# once any side needs some, and the σ of the blur applied to the padded image.
_PAD_MARGIN = 0.1
_PAD_LEAST = 0.3
_PAD_BLUR = 0.02
# The padding's smooth parts are computed on a grid this many grid pixels per blur σ (cheap, and
# the bilinear resampling onto the crop adds well under a grey level).
_GRID_PER_BLUR = 2.0


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
# Padding at the frame's edge


@dataclass(frozen=True)
class BorderPadding:
    """How the FFHQ recipe pads the frame around one quad, in frame pixels.

    content: (x0, y0, x1, y1), the frame pixels the recipe keeps (columns x0..x1-1, rows y0..y1-1);
    its edge pixels' centres are where the padding starts. reach: (left, top, right, bottom), how far
    beyond those centres the padded image extends. blur: the Gaussian σ of the padded image.
    """

    content: tuple[int, int, int, int]
    reach: tuple[float, float, float, float]
    blur: float

    def depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How far frame points (x, y) (broadcast together) lie in the padding, as a fraction of its reach.

        0 on the content's edge pixels, 1 at the padded image's outer edge, negative inside: the
        largest of four affine functions of (x, y), one per side.
        """
        x0, y0, x1, y1 = self.content
        left, top, right, bottom = self.reach
        return np.maximum(np.maximum((x0 - x) / left, (x - (x1 - 1)) / right),
                          np.maximum((y0 - y) / top, (y - (y1 - 1)) / bottom))

    def weights(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The recipe's blend weights at frame points (x, y): (blur, median).

        With m = ``depth(x, y)``, the blurred image is mixed in with clip(3m + 1) (fully from the
        edge outwards, fading over a band of a third of the reach inside) and the median colour
        with clip(m). Where m ≤ −⅓ the frame is left as it is.
        """
        m = self.depth(x, y)
        return np.clip(3 * m + 1, 0, 1, dtype=m.dtype), np.clip(m, 0, 1, dtype=m.dtype)


def border_padding(quad: np.ndarray, frame_size: tuple[int, int], resolution: int) -> BorderPadding | None:
    """The FFHQ recipe's padding for a quad in a frame of ``frame_size`` (width, height), or None.

    The recipe works on the frame shrunk by an integer factor when the quad is over 4× the
    output ``resolution``, keeps the quad's bounding box plus a margin of 0.1 quad sides, and pads
    only when the quad comes within 4 pixels of what it kept; then every side gets at least 0.3
    quad sides. Rounding follows the recipe in its shrunk pixels; the result is in frame pixels.
    """
    quad = np.asarray(quad, np.float64)
    size = float(np.hypot(*(quad[3] - quad[0])))
    frame = np.array(frame_size, np.int64)
    shrink = int(np.floor(size / resolution * 0.5))
    scale = shrink if shrink > 1 else 1
    work = np.rint(frame / scale).astype(np.int64) if scale > 1 else frame  # the recipe's image size
    quad, size = quad / scale, size / scale
    margin = max(int(np.rint(size * _PAD_MARGIN)), 3)
    low, high = np.floor(quad.min(axis=0)).astype(np.int64), np.ceil(quad.max(axis=0)).astype(np.int64)
    start, stop = np.maximum(low - margin, 0), np.minimum(high + margin, work)
    start, stop = np.minimum(start, work - 1), np.maximum(stop, start + 1)  # a quad all outside: keep a pixel
    need = np.concatenate([np.maximum(start - low + margin, 0), np.maximum(high - stop + margin, 0)])
    if need.max() <= margin - 4:
        return None
    reach = np.maximum(need, int(np.rint(size * _PAD_LEAST)))
    to_frame = frame / work  # frame pixels per pixel of the recipe's image, (x, y)
    first = np.floor(start * to_frame).astype(np.int64)
    last = np.minimum(np.ceil(stop * to_frame).astype(np.int64), frame)
    return BorderPadding(
        content=(int(first[0]), int(first[1]), int(last[0]), int(last[1])),
        reach=tuple(float(r) for r in reach * np.tile(to_frame, 2)),
        blur=size * scale * _PAD_BLUR,
    )


def padding_grid(frame: np.ndarray, padding: BorderPadding) -> tuple[np.ndarray, np.ndarray]:
    """The padding's smooth parts on a coarse grid over the padded image: (grid, frame → grid).

    grid: float32 [h, w, 4]; channels 0-2 are what the padding adds (the blurred, mirrored content
    and the median colour, each times its weight), channel 3 the weight left to the sharp frame,
    so that the padded image is ``sharp · grid[3] + grid[:3]``. frame → grid: 3×3 matrix for
    homogeneous pixel coordinates. The content is area-averaged to _GRID_PER_BLUR grid pixels per
    blur σ, mirrored (edge pixel not repeated, like the recipe's reflect), blurred, and mixed with
    the median colour of the whole padded image as the recipe does.
    """
    x0, y0, x1, y1 = padding.content
    step = max(1, int(padding.blur / _GRID_PER_BLUR))  # frame pixels per grid pixel (whole: cv2's fast path)
    # Mirrored at full resolution (so about the edge pixels' centres, as the recipe mirrors) two grid
    # pixels past the padded image, so that bilinear sampling of its outer edge stays supported, and
    # to a whole number of grid pixels.
    before = [int(np.ceil(r)) + 2 * step for r in padding.reach[:2]]
    after = [int(np.ceil(r)) + 2 * step + (-(n + b + int(np.ceil(r)) + 2 * step) % step)
             for r, n, b in zip(padding.reach[2:], (x1 - x0, y1 - y0), before)]
    mirrored = cv2.copyMakeBorder(np.ascontiguousarray(frame[y0:y1, x0:x1]), before[1], after[1], before[0], after[0],
                                  cv2.BORDER_REFLECT_101)
    size = (mirrored.shape[1] // step, mirrored.shape[0] // step)
    image = cv2.resize(mirrored, size, interpolation=cv2.INTER_AREA) if step > 1 else mirrored
    image = image.astype(np.float32)
    # Area averaging already blurred by a box of one grid pixel (variance 1/12): blur the rest.
    sigma = float(np.sqrt(max((padding.blur / step) ** 2 - (1 / 12 if step > 1 else 0), 0.0)))
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)

    # Grid pixel i's centre is at (i + ½)·step − ½ in the mirrored image; its origin is frame (x0, y0) − before.
    frame_to_grid = np.array([[1 / step, 0, (0.5 + before[0] - x0) / step - 0.5],
                              [0, 1 / step, (0.5 + before[1] - y0) / step - 0.5], [0, 0, 1]])
    x = ((np.arange(size[0]) - frame_to_grid[0, 2]) * step).astype(np.float32)  # grid pixel centres, frame pixels
    y = ((np.arange(size[1]) - frame_to_grid[1, 2]) * step).astype(np.float32)
    blur_weight, median_weight = padding.weights(x[None, :], y[:, None])
    blur_weight, median_weight = blur_weight[..., None], median_weight[..., None]
    softened = image + (blurred - image) * blur_weight
    left, top, right, bottom = padding.reach
    columns = slice(*np.searchsorted(x, [x0 - left, x1 - 1 + right], side="left"))  # the recipe's padded image
    rows = slice(*np.searchsorted(y, [y0 - top, y1 - 1 + bottom], side="left"))
    median = np.median(softened[rows, columns].reshape(-1, 3), axis=0)
    grid = np.empty((size[1], size[0], 4), np.float32)
    grid[..., :3] = (1 - median_weight) * blur_weight * blurred + median_weight * median.astype(np.float32)
    grid[..., 3:] = (1 - median_weight) * (1 - blur_weight)
    return grid, frame_to_grid


# ----------------------------------------------------------------------------------------------
# Crop


def crop_face(frame: np.ndarray, quad: np.ndarray, resolution: int) -> np.ndarray:
    """Sample the quad of an H×W×3 uint8 frame into a resolution×resolution×3 uint8 crop.

    Bilinear, after area-averaging the frame when the face is more than 1.25× the crop's size
    (so a large face does not alias). Where the quad comes near or past the frame's edge the
    frame is padded as the FFHQ recipe pads (``border_padding``, ``padding_grid``): mirrored,
    blurred with σ = 0.02 quad sides, faded to the median colour away from the edge, and blurred
    progressively over a band inside it. A quad well inside the frame is sampled as is.
    """
    crop_to_frame, _ = crop_transform(quad, resolution)
    image, crop_to_image = antialias(np.ascontiguousarray(frame), crop_to_frame)
    sharp = cv2.warpAffine(
        image,
        crop_to_image[:2],
        (resolution, resolution),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    padding = border_padding(quad, (frame.shape[1], frame.shape[0]), resolution)
    if padding is None:
        return sharp
    grid, frame_to_grid = padding_grid(frame, padding)
    crop_to_grid = frame_to_grid @ crop_to_frame
    for rows, columns in _padded_bands(padding, crop_to_frame, resolution):
        # The grid's fields sampled on this band of the crop, then the recipe's blend (the bands are disjoint).
        band_to_grid = crop_to_grid @ np.array([[1, 0, columns.start], [0, 1, rows.start], [0, 0, 1]])
        fields = cv2.warpAffine(grid, band_to_grid[:2], (columns.stop - columns.start, rows.stop - rows.start),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        padded = sharp[rows, columns].astype(np.float32)
        padded *= fields[..., 3:]
        padded += fields[..., :3]
        sharp[rows, columns] = np.rint(np.clip(padded, 0, 255, out=padded), out=padded)
    return sharp


def _padded_bands(padding: BorderPadding, crop_to_frame: np.ndarray, resolution: int,
                  tile: int = 32) -> list[tuple[slice, slice]]:
    """The parts of the crop that the padding changes, as (rows, columns) slices, one per band of ``tile`` rows.

    The padding leaves the frame as it is where its depth m ≤ −⅓ (``BorderPadding.weights``). m is
    a maximum of affine functions, so over a tile of the crop it is largest at one of the corners:
    a tile is left out when all four are at m ≤ −⅓.
    """
    starts = np.arange(0, resolution, tile)
    ends = np.minimum(starts + tile, resolution) - 1  # the tiles' last pixels
    changed = np.zeros((len(starts), len(starts)), bool)
    for v in (starts, ends):
        for u in (starts, ends):
            x = crop_to_frame[0, 0] * u[None, :] + crop_to_frame[0, 1] * v[:, None] + crop_to_frame[0, 2]
            y = crop_to_frame[1, 0] * u[None, :] + crop_to_frame[1, 1] * v[:, None] + crop_to_frame[1, 2]
            changed |= padding.depth(x, y) > -1 / 3
    bands = []
    for row, tiles in enumerate(changed):
        if tiles.any():
            first, last = np.flatnonzero(tiles)[[0, -1]]
            bands.append((slice(starts[row], ends[row] + 1), slice(starts[first], ends[last] + 1)))
    return bands


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
    (int), 'sigmas' float32 [center_sigma, axes_sigma], 'frame_size' int [width, height] and
    'edited' bool [F] (the landmarks' frames where the face is pasted back; elsewhere it was not
    found for longer than landmarks.max_gap and the source frame passes through), each
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
            edited=np.asarray(landmarks["edited"], bool),
        )


def load_align(path: str | os.PathLike) -> dict:
    """Read what align_video wrote: {'quads' [F, 4, 2], 'resolution' (int), 'sigmas', 'frame_size',
    'edited' bool [F]} ('edited' all True in a file from before it was written).

    A truncated or garbled file, or one holding NaN/inf, is a CiinvError naming it.
    """
    result = read_npz(path, ["quads", "resolution"], rerun="rerun the align stage for its video",
                      per_frame=["quads"])
    if result["quads"].ndim != 3 or result["quads"].shape[1:] != (4, 2):
        raise CiinvError(f"{path}: 'quads' has shape {result['quads'].shape}, expected [frames, 4, 2]; "
                         "delete it and rerun the align stage for its video")
    result["resolution"] = int(result["resolution"])
    result.setdefault("edited", np.ones(len(result["quads"]), bool))
    return result
