"""Face landmarks for every frame of a video, with the main face tracked through the clip.

Two detectors give 68 points per face in the iBUG-300W order (jaw 0-16, brows 17-26, nose
27-35, eyes 36-47, mouth 48-67):

- ``fan``: face-alignment's S3FD face detector + 2D-FAN-4 (accurate; GPU if there is one).
  Its two weight files are the catalogue's ``s3fd`` and ``2dfan4`` (``ciinv/models/catalogue.py``),
  in ``models_dir`` under the names face-alignment 1.5.0 gives them, or given as two files
  (``fan_files``, any names: the workflow passes its declared inputs); nothing is ever downloaded
  here (``fan_model_files`` lists them for the workflow).
- ``dlib``: dlib's HOG frontal detector + the 68-point shape predictor that ships inside the
  ``face_recognition_models`` package (works offline on a CPU).

Every frame may hold several faces, or none. ``track_main_face`` keeps one of them per frame:
the largest face of the first frame that has any, then in each frame the face nearest to where
the track was last seen. ``fill_gaps`` interpolates the frames where the main face was not found
if the gap is short, and reports long gaps as errors.

Coordinates are pixels of the upright frame, x to the right, y down, with the centre of the
top-left pixel at (0, 0).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path, read_npz
from ciinv.models.registry import resolve

DETECTORS = ("fan", "dlib")

# The catalogue names of FAN's weights: the S3FD face detector and 2D-FAN-4. Their file names must
# be the ones face-alignment 1.5.0 downloads (tests/test_landmarks.py checks them against the
# installed package): it reads the landmark weights from torch hub's folder by that name.
FAN_MODELS = ("s3fd", "2dfan4")

# dlib detects on a copy whose long side is at most this many pixels (HOG cost grows with area).
# HOG finds faces of ~80 px and up; copies no larger than _DLIB_UPSAMPLE_BELOW, and frames where
# nothing was found, are searched again upsampled once (faces down to ~40 px).
_DLIB_DETECT_SIZE = 640
_DLIB_UPSAMPLE_BELOW = 480
# Tracking search (dlib_detector): the region around the previous face, this many face sizes from
# its centre each way, scaled so that the face spans this many pixels (HOG's window is 80).
_DLIB_TRACK_MARGIN = 1.0
_DLIB_TRACK_FACE = 100.0
# HOG detections scoring below this are dropped: the astronaut's suit patch scores ~0.1, real
# frontal faces score ~1 or more.
_DLIB_MIN_SCORE = 0.3

# Tracking gates, per frame elapsed since the main face was last seen: its box centre may move
# by at most _MAX_SHIFT box sizes, and its size may change by at most a factor _MAX_SCALE.
_MAX_SHIFT = 1.0
_MAX_SCALE = 1.5


@dataclass
class Face:
    """One detected face. box: float32 [4] (x0, y0, x1, y1); points: float32 [68, 2]; score: detector confidence."""

    box: np.ndarray
    points: np.ndarray
    score: float

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    @property
    def size(self) -> float:
        """Geometric mean of the box's width and height, in pixels."""
        return float(np.sqrt(max(self.box[2] - self.box[0], 1e-3) * max(self.box[3] - self.box[1], 1e-3)))


# A detector takes a batch of frames (list of H×W×3 uint8 RGB) and returns the faces of each.
Detector = Callable[[Sequence[np.ndarray]], list[list[Face]]]


# ----------------------------------------------------------------------------------------------
# Model files


def dlib_predictor_path() -> Path:
    """The 68-point predictor shipped in the face_recognition_models package.

    Found without importing the package: its ``__init__`` needs pkg_resources, which recent
    setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise CiinvError(
            "the dlib landmark detector needs the face_recognition_models package; "
            "install it (pip install face_recognition_models) or set landmarks.detector: fan"
        )
    path = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise CiinvError(f"{path} is missing; reinstall face_recognition_models")
    return path


def fan_model_files(models_dir: str | os.PathLike = "models") -> list[Path]:
    """The files the ``fan`` detector reads: [S3FD face detector, 2D-FAN-4 landmarks], in ``models_dir``."""
    return [resolve(name, models_dir) for name in FAN_MODELS]


def _check_fan_files(models_dir: str | os.PathLike, files: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    files = fan_model_files(models_dir) if files is None else [Path(f) for f in files]
    if len(files) != len(FAN_MODELS):
        raise CiinvError(f"landmarks.detector 'fan' needs {len(FAN_MODELS)} files ({', '.join(FAN_MODELS)}), "
                         f"got {len(files)}: {', '.join(map(str, files)) or 'none'}")
    missing = [f for f in files if not f.is_file()]
    if missing:
        names = " and ".join(str(f) for f in missing)
        fetch = " ".join(f"--file {resolve(name, '').name}" for name, f in zip(FAN_MODELS, files) if f in missing)
        raise CiinvError(
            f"landmarks.detector 'fan' needs {names}, not found; fetch with `ciinv models fetch {fetch} "
            f"--models-dir {models_dir}` (or `snakemake download_models`) where there is a network, "
            "or set landmarks.detector: dlib in config.yaml"
        )
    return files


# ----------------------------------------------------------------------------------------------
# Detectors


def dlib_detector(track: bool = True) -> Detector:
    """HOG face detection on a downscaled copy, then the 68-point predictor at full resolution.

    With ``track`` (frames given in order), a frame after one with a face is first searched only
    near that face, on a copy scaled so the face spans about _DLIB_TRACK_FACE pixels: a few
    times less HOG work than the whole downscaled frame. Where nothing is found there, the whole
    frame is searched as without ``track``. Landmarks stay within about a pixel of the whole-frame
    search (``tests/test_landmarks.py`` states the bound).
    """
    import cv2
    import dlib

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_predictor_path()))
    last: list[np.ndarray] = []  # the box of the previous frame's largest face, if it had one

    def refine(frame: np.ndarray, rects, scores, scale: float, offset) -> list[Face]:
        faces = []
        for rect, score in zip(rects, scores):
            # Box corners back in full-resolution pixels (dlib's right/bottom are inclusive).
            box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float64) / scale
            box += np.tile(offset, 2)
            full = dlib.rectangle(*(int(round(v)) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))
            shape = predictor(frame, full)
            points = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
            faces.append(Face(box.astype(np.float32), points, float(score)))
        return faces

    def whole_frame(frame: np.ndarray) -> list[Face]:
        height, width = frame.shape[:2]
        scale = min(1.0, _DLIB_DETECT_SIZE / max(height, width))
        small = frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        upsample = 1 if max(small.shape[:2]) <= _DLIB_UPSAMPLE_BELOW else 0
        rects, scores, _ = hog.run(small, upsample, _DLIB_MIN_SCORE)
        if not rects and upsample == 0:
            rects, scores, _ = hog.run(small, 1, _DLIB_MIN_SCORE)
        return refine(frame, rects, scores, scale, (0.0, 0.0))

    def near(frame: np.ndarray, box: np.ndarray) -> list[Face]:
        height, width = frame.shape[:2]
        side = float(np.sqrt((box[2] - box[0]) * (box[3] - box[1])))
        centre = (box[:2] + box[2:]) / 2
        x0, y0 = np.maximum(np.floor(centre - _DLIB_TRACK_MARGIN * side), 0).astype(int)
        x1 = int(min(np.ceil(centre[0] + _DLIB_TRACK_MARGIN * side), width))
        y1 = int(min(np.ceil(centre[1] + _DLIB_TRACK_MARGIN * side), height))
        scale = min(1.0, _DLIB_TRACK_FACE / side)
        region = frame[y0:y1, x0:x1]
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        small = cv2.resize(region, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else np.ascontiguousarray(region)
        rects, scores, _ = hog.run(small, 0, _DLIB_MIN_SCORE)
        return refine(frame, rects, scores, scale, (float(x0), float(y0)))

    def detect_one(frame: np.ndarray) -> list[Face]:
        frame = np.ascontiguousarray(frame)
        faces = near(frame, last[0]) if track and last else []
        if not faces:
            faces = whole_frame(frame)
        last[:] = [max(faces, key=lambda f: f.size).box] if faces else []
        return faces

    return lambda frames: [detect_one(f) for f in frames]


@contextlib.contextmanager
def _torch_hub_dir_at(landmarks_file: Path) -> Iterator[None]:
    """Point torch hub's checkpoint cache (``<hub dir>/checkpoints``) at ``landmarks_file`` for a while.

    face-alignment loads the FAN weights from ``torch.hub.get_dir()/checkpoints/<file>`` (and
    would download them if absent; we check first). A temporary hub dir whose ``checkpoints``
    holds a link to the file, under the name face-alignment looks for, lets it read the file
    wherever it is and whatever it is called.
    """
    import torch.hub

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="ciinv-hub-") as hub:
        (Path(hub) / "checkpoints").mkdir()
        os.symlink(landmarks_file.resolve(), Path(hub) / "checkpoints" / resolve(FAN_MODELS[1], "").name)
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)


def fan_detector(models_dir: str | os.PathLike = "models", device: str = "cpu",
                 fan_files: Sequence[str | os.PathLike] | None = None) -> Detector:
    """S3FD boxes for a whole batch at once, then 2D-FAN-4 landmarks per face.

    The weights are ``fan_files`` (S3FD, 2D-FAN-4) when given, else the catalogue's files in
    ``models_dir``. The face score is S3FD's confidence in [0, 1].
    """
    detector_file, landmarks_file = _check_fan_files(models_dir, fan_files)
    import face_alignment
    import torch

    with _torch_hub_dir_at(landmarks_file):
        fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=device,
            face_detector="sfd",
            face_detector_kwargs={"path_to_detector": str(detector_file)},
            compile=False,  # torch.compile would cache under ~/.cache and take minutes on a CPU
        )

    def detect(frames: Sequence[np.ndarray]) -> list[list[Face]]:
        batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
        boxes_per_frame = fa.face_detector.detect_from_batch(batch)
        result = []
        for frame, boxes in zip(frames, boxes_per_frame):
            # float64: face-alignment's crop() cannot put float32 numbers into its torch matrix.
            boxes = [np.asarray(b, np.float64) for b in boxes]
            if not boxes:
                result.append([])
                continue
            points, _, _ = fa.get_landmarks_from_image(frame, detected_faces=boxes, return_bboxes=True)
            result.append([Face(b[:4].astype(np.float32), np.asarray(p, np.float32)[:, :2], float(b[4])) for b, p in zip(boxes, points)])
        return result

    return detect


def make_detector(detector: str = "dlib", models_dir: str | os.PathLike = "models", device: str = "cpu",
                  fan_files: Sequence[str | os.PathLike] | None = None) -> Detector:
    if detector == "dlib":
        return dlib_detector()
    if detector == "fan":
        return fan_detector(models_dir, device, fan_files)
    raise CiinvError(f"unknown landmarks.detector {detector!r}; choose one of {', '.join(DETECTORS)} in config.yaml")


# ----------------------------------------------------------------------------------------------
# Tracking and gap filling (pure functions on detections)


def track_main_face(faces_per_frame: Sequence[Sequence[Face]]) -> list[Face | None]:
    """Pick the main face in every frame; None where it was not found.

    The main face starts as the largest face of the first frame that has one. In later frames
    it is the face whose box centre is nearest to the last position of the track, among faces
    within ``_MAX_SHIFT`` box sizes and a size ratio of ``_MAX_SCALE`` per frame elapsed since
    then. A frame whose faces all fail these gates has no main face (another person is never
    picked up just because the main face was missed).
    """
    track: list[Face | None] = []
    last: Face | None = None
    last_frame = 0
    for frame, faces in enumerate(faces_per_frame):
        chosen = None
        if faces and last is None:
            chosen = max(faces, key=lambda f: f.size)
        elif faces:
            elapsed = frame - last_frame
            best = np.inf
            for face in faces:
                distance = float(np.linalg.norm(face.center - last.center))
                ratio = max(face.size / last.size, last.size / face.size)
                if distance <= _MAX_SHIFT * last.size * elapsed and ratio <= _MAX_SCALE ** elapsed and distance < best:
                    chosen, best = face, distance
        if chosen is not None:
            last, last_frame = chosen, frame
        track.append(chosen)
    return track


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def fill_gaps(track: Sequence[Face | None], max_gap: int = 5, source: str = "the video") -> dict:
    """Turn a track into per-frame arrays, interpolating frames without the face.

    Gaps between two detections are filled linearly (points and box); a gap at the start or the
    end holds the nearest detection. Gaps longer than ``max_gap`` frames raise CiinvError naming
    ``source`` and the frame ranges (0-based, inclusive); no detection at all raises
    "no face found in <source>". 'detected' is True where the main face was found (a frame
    holding only other faces is part of a gap); interpolated frames get score 0.

    Returns {'points': float32 [F,68,2], 'score': float32 [F], 'box': float32 [F,4],
    'detected': bool [F], 'interpolated': bool [F]}.
    """
    frames = len(track)
    detected = np.array([f is not None for f in track], bool)
    if frames == 0 or not detected.any():
        raise CiinvError(
            f"no face found in {source} ({frames} frames); the pipeline needs one face visible in the video"
        )
    gaps = [(a, b) for a, b in _runs(~detected) if b - a > max_gap]
    if gaps:
        ranges = ", ".join(f"{a}-{b - 1} ({b - a} frames)" for a, b in gaps)
        raise CiinvError(
            f"{source}: no face in frames {ranges} (frames counted from 0); at most {max_gap} consecutive "
            "frames without a face can be interpolated: trim the video, or raise landmarks.max_gap in config.yaml"
        )

    have = np.flatnonzero(detected)
    points = np.zeros((frames, 68, 2), np.float32)
    box = np.zeros((frames, 4), np.float32)
    score = np.zeros(frames, np.float32)
    points[have] = np.stack([track[i].points for i in have])
    box[have] = np.stack([track[i].box for i in have])
    score[have] = [track[i].score for i in have]

    # np.interp holds the end values outside [have[0], have[-1]]: the hold for leading/trailing gaps.
    missing = np.flatnonzero(~detected)
    if len(missing):
        flat_points = points.reshape(frames, -1)
        for values in (flat_points, box):
            for column in range(values.shape[1]):
                values[missing, column] = np.interp(missing, have, values[have, column])
    return {"points": points, "score": score, "box": box, "detected": detected, "interpolated": ~detected}


# ----------------------------------------------------------------------------------------------
# Whole videos


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def detect_frames(
    frames: Iterable[np.ndarray],
    detector: str | Detector = "dlib",
    max_gap: int = 5,
    device: str = "cpu",
    models_dir: str | os.PathLike = "models",
    batch: int = 16,
    source: str = "the video",
    fan_files: Sequence[str | os.PathLike] | None = None,
) -> dict:
    """Landmarks of the main face in a sequence of H×W×3 uint8 RGB frames (see ``fill_gaps``).

    ``detector`` is a name from DETECTORS or a ready Detector; ``source`` names the video in errors.
    """
    detect = make_detector(detector, models_dir, device, fan_files) if isinstance(detector, str) else detector
    faces_per_frame: list[list[Face]] = []
    for chunk in _batches(frames, batch):
        faces_per_frame.extend(detect(chunk))
    return fill_gaps(track_main_face(faces_per_frame), max_gap, source)


def detect_video(
    video_path: str | os.PathLike,
    detector: str = "dlib",
    max_gap: int = 5,
    device: str = "cpu",
    models_dir: str | os.PathLike = "models",
    batch: int = 16,
    meta: dict | None = None,
    fan_files: Sequence[str | os.PathLike] | None = None,
) -> dict:
    """Landmarks of the main face in every frame of a video (decoded upright; see ``fill_gaps``).

    ``meta`` is the video's probe result (``ciinv.io.video.probe``); probed here if not given.
    The detector is built before decoding starts, so a missing model file fails fast.
    """
    from ciinv.io.video import VideoReader, probe

    detect = make_detector(detector, models_dir, device, fan_files)
    meta = probe(video_path) if meta is None else meta
    reader = VideoReader(video_path, meta)
    frames = (frame for _, frame in reader.frames(batch=batch))
    return detect_frames(frames, detect, max_gap, batch=batch, source=str(video_path))


def save_landmarks(path: str | os.PathLike, result: dict) -> None:
    """Write a detect_video result as an .npz, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{key: np.asarray(value) for key, value in result.items()})


def load_landmarks(path: str | os.PathLike) -> dict:
    """Read what save_landmarks wrote: {'points', 'score', 'box', 'detected', 'interpolated'}.

    A truncated or garbled file, or one holding NaN/inf, is a CiinvError naming it.
    """
    return read_npz(path, ["points", "score", "box", "detected", "interpolated"],
                    rerun="rerun the landmarks stage for its video", per_frame=["points", "score", "box"])
