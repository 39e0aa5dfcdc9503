"""Short clips of a real face for the README sample and the tests.

The face is scikit-image's ``astronaut`` (Eileen Collins, a public-domain NASA photo,
512 x 512). Each frame places the photo on the canvas with a similarity transform
(translation, scale, roll) that drifts smoothly over time, like a talking head that moves a
little; the whole head stays inside the frame and dlib's frontal detector finds the face
in every frame.
"""

from __future__ import annotations

import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path, tmp_sibling, tool_write_error
from ciinv.io.ffmpeg import ffmpeg_exe, stderr_tail
from ciinv.io.video import VideoWriter

# Where the head is in astronaut(), in source pixels (x, y).
_FACE_WIDTH = 93.0  # jaw to jaw (dlib landmarks 0 and 16)
_HEAD_BOX = np.array([[140.0, 15.0], [305.0, 15.0], [305.0, 190.0], [140.0, 190.0]])  # hair to chin
_HEAD_CENTRE = _HEAD_BOX.mean(axis=0)  # lands near the canvas centre

# Motion amplitudes: shift as a fraction of the canvas' shorter side, zoom as a fraction
# of the scale, roll in degrees.
_SHIFT = 0.04
_ZOOM = 0.06
_ROLL_DEG = 7.0


_TOP_PAD = 128  # rows of plain background added above the photo


def _face_photo() -> np.ndarray:
    """astronaut() with ``_TOP_PAD`` rows of soft background on top, ``[640, 512, 3]`` float.

    The hair comes within 15 pixels of the photo's top edge, so the canvas often shows what
    lies above it; a blurred copy of the top rows looks like more backdrop, where plain edge
    replication would draw streaks.
    """
    from scipy.ndimage import gaussian_filter1d
    from skimage.data import astronaut  # ships inside scikit-image; no download

    photo = astronaut().astype(np.float64)
    backdrop = gaussian_filter1d(photo[:8].mean(axis=0), sigma=12, axis=0, mode="nearest")
    return np.concatenate([np.broadcast_to(backdrop, (_TOP_PAD, *backdrop.shape)), photo])


def _similarity(scale: float, roll_rad: float, src_centre: np.ndarray, dst_centre: np.ndarray) -> np.ndarray:
    """3x3 matrix taking source (x, y, 1) to canvas (x, y, 1): ``src_centre`` lands on ``dst_centre``."""
    c, s = scale * np.cos(roll_rad), scale * np.sin(roll_rad)
    linear = np.array([[c, -s], [s, c]])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = dst_centre - linear @ src_centre
    return matrix


def head_motion(frames: int, size: tuple[int, int], seed: int = 0, face_scale: float = 1.0) -> np.ndarray:
    """Per-frame source-to-canvas transforms, ``[frames, 3, 3]``.

    ``size`` is the canvas (width, height). At ``face_scale=1`` the face (jaw to jaw) spans
    0.38 of the canvas' shorter side (97 pixels of 256). Translation, zoom and roll follow sines of about one
    period over the clip, with phases drawn from ``seed``.

    Raises ValueError if the head would leave the canvas (``face_scale`` too large).
    """
    width, height = size
    short = min(width, height)
    base = face_scale * 0.38 * short / _FACE_WIDTH
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=4)
    t = 2 * np.pi * np.arange(frames) / max(frames, 2)
    dx = _SHIFT * short * np.sin(t + phases[0])
    dy = _SHIFT * short * np.sin(1.3 * t + phases[1])
    scale = base * (1 + _ZOOM * np.sin(0.8 * t + phases[2]))
    roll = np.deg2rad(_ROLL_DEG) * np.sin(1.1 * t + phases[3])
    centre = np.array([width / 2, height / 2])
    transforms = np.stack(
        [_similarity(scale[i], roll[i], _HEAD_CENTRE, centre + [dx[i], dy[i]]) for i in range(frames)]
    )
    corners = np.einsum("fij,kj->fki", transforms[:, :2, :2], _HEAD_BOX) + transforms[:, None, :2, 2]
    if (corners < 0).any() or (corners[..., 0] > width).any() or (corners[..., 1] > height).any():
        raise ValueError(f"face_scale={face_scale} puts the head outside a {width}x{height} frame; use a smaller one")
    return transforms


def render_frames(frames: int, size: tuple[int, int], seed: int = 0, face_scale: float = 1.0) -> np.ndarray:
    """The clip's upright frames, ``[frames, height, width, 3]`` uint8 RGB."""
    from skimage.transform import ProjectiveTransform, warp

    photo = _face_photo()
    width, height = size
    out = np.empty((frames, height, width, 3), np.uint8)
    below_pad = np.array([[1.0, 0, 0], [0, 1, _TOP_PAD], [0, 0, 1]])  # photo (x, y) -> padded photo
    for i, matrix in enumerate(head_motion(frames, size, seed, face_scale)):
        # warp() wants the map from output (canvas) to input (padded photo) coordinates.
        to_photo = ProjectiveTransform(below_pad @ np.linalg.inv(matrix))
        picture = warp(photo, to_photo, output_shape=(height, width), order=1, mode="edge", preserve_range=True)
        out[i] = np.clip(np.rint(picture), 0, 255).astype(np.uint8)
    return out


def make_clip(
    path: str | os.PathLike,
    frames: int = 50,
    fps: str = "25",
    size: tuple[int, int] = (256, 256),
    audio: bool = True,
    rotation: int = 0,
    seed: int = 0,
    face_scale: float = 1.0,
) -> None:
    """Write a clip of the astronaut's moving face to ``path`` (H.264, written atomically; .mp4 or .mkv).

    ``size`` is the DISPLAYED (width, height). With ``rotation`` (clockwise degrees, as in
    `ciinv.io.video.probe`), the pictures are stored turned the other way and the file carries
    display-rotation metadata, as phones do; players show them upright. ``audio`` adds an
    AAC track (a 440 Hz tone from ffmpeg's ``sine`` source) as long as the video.

    The defaults (2 s at 25 fps, 256 x 256, about 60 kB) make the README sample.
    """
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270, not {rotation}")
    if frames < 1:
        raise ValueError("frames must be at least 1")
    pictures = render_frames(frames, size, seed, face_scale)
    # Stored = display turned counter-clockwise by `rotation`; turning it clockwise shows it upright.
    stored = np.rot90(pictures, k=rotation // 90, axes=(1, 2))
    path = Path(path)
    if not audio and rotation == 0:
        _encode(path, stored, fps)
        return
    with atomic_path(path) as final_tmp:
        video_tmp = tmp_sibling(path, "video")
        try:
            _encode(video_tmp, stored, fps)
            _remux(video_tmp, final_tmp, fps, frames, audio, rotation, path)
        finally:
            video_tmp.unlink(missing_ok=True)


def _encode(path: Path, stored: np.ndarray, fps: str) -> None:
    height, width = stored.shape[1:3]
    with VideoWriter(path, fps, width, height, crf=20) as writer:
        for picture in stored:
            writer.write(picture)


def _remux(video: Path, out: Path, fps: str, frames: int, audio: bool, rotation: int, final: Path) -> None:
    """Copy ``video`` into ``out`` (the temporary name of ``final``), adding the tone and the display rotation."""
    duration = f"{float(frames / Fraction(fps)):.6f}"
    tone = ["-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:sample_rate=44100:duration={duration}"]
    faststart = ["-movflags", "+faststart"] if out.suffix.lower() in (".mp4", ".mov", ".m4v") else []
    maps = ["-map", "0:v", "-c:v", "copy"]
    if audio:
        maps += ["-map", "1:a", "-c:a", "aac", "-b:a", "48k"]

    def run(rotate_args_in: list[str], rotate_args_out: list[str]) -> subprocess.CompletedProcess:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               *rotate_args_in, "-i", str(video), *(tone if audio else []),
               *maps, *rotate_args_out, "-t", duration, *faststart, str(out)]
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace")

    if rotation == 0:
        result = run([], [])
    else:
        # ffmpeg >= 7: an input option, counter-clockwise degrees. Older: the clockwise "rotate" tag.
        result = run(["-display_rotation", str(-rotation)], [])
        if result.returncode != 0 and "display_rotation" in result.stderr:
            result = run([], ["-metadata:s:v:0", f"rotate={rotation}"])
    if result.returncode != 0:
        raise tool_write_error(final, result.stderr, result.returncode) or CiinvError(
            f"{out}: ffmpeg failed while adding audio/rotation:\n{stderr_tail(result.stderr)}")
