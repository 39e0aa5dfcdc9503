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

Every frame may hold several faces, or none, and every detection gets an identity descriptor
(dlib's face-recognition network on its 68 points, ``ciinv.faces.identity``). ``track_faces``
follows each person through the clip: a detection continues a track only if it lies near where
the track's face should be (a gate that never grows past ``_MAX_REACH`` face sizes) *and* looks
like that face (descriptor distance below dlib's same-person 0.6); tracks of one person broken by
a long absence are joined again by appearance alone. People are ordered by the number of frames
they are seen in: person 0 is the main face. ``fill_gaps`` interpolates a person's short gaps
(at most ``max_gap`` frames, between detections of that person) and marks longer ones as left
unedited: the source frames pass through there.

Coordinates are pixels of the upright frame, x to the right, y down, with the centre of the
top-left pixel at (0, 0).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ciinv.errors import CiinvError
from ciinv.faces.identity import SAME_PERSON, FaceEmbedder
from ciinv.io.files import atomic_path, read_npz
from ciinv.models.registry import resolve

log = logging.getLogger(__name__)

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
# Tracking search (dlib_detector): the region around each face of the previous frame, this many
# face sizes from its centre each way, scaled so that the face spans this many pixels (HOG's
# window is 80). Every _DLIB_WHOLE_EVERY-th frame, and whenever fewer faces are found than in one
# of the last _DLIB_WHOLE_EVERY frames, the whole frame is searched: a person who comes into view
# is seen within that many frames, one missed for a frame is looked for everywhere at once.
_DLIB_TRACK_MARGIN = 1.0
_DLIB_TRACK_FACE = 100.0
_DLIB_WHOLE_EVERY = 5
# HOG detections scoring below this are dropped: the astronaut's suit patch scores ~0.1, real
# frontal faces score ~1 or more.
_DLIB_MIN_SCORE = 0.3

# Tracking gates (track_faces). From the track's predicted position (its last centre moved on at
# its last velocity), a face may be at most _MAX_SHIFT face sizes away per frame elapsed since the
# track was last seen, and never more than _MAX_REACH face sizes: after a few missed frames the
# gate stops growing, so it never reaches a person standing beside. Its size may change by a
# factor _MAX_SCALE per frame elapsed, at most _MAX_SCALE squared. A track not continued for
# _TRACK_MEMORY frames ends (a later track of the same person is joined to it by appearance).
_MAX_SHIFT = 1.0
_MAX_REACH = 1.5
_MAX_SCALE = 1.5
_TRACK_MEMORY = 10
# A track's appearance: the mean raw descriptor of its last this many detections (a face that
# turns or changes light drifts slowly; the mean follows it).
_APPEARANCE_FRAMES = 10


@dataclass
class Face:
    """One detected face. box: float32 [4] (x0, y0, x1, y1); points: float32 [68, 2]; score: detector
    confidence; descriptor: float64 [128], dlib's raw face descriptor (``ciinv.faces.identity``), or
    None where none was computed (then only the position decides the tracking)."""

    box: np.ndarray
    points: np.ndarray
    score: float
    descriptor: np.ndarray | None = None

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    @property
    def size(self) -> float:
        """Geometric mean of the box's width and height, in pixels."""
        return float(np.sqrt(max(self.box[2] - self.box[0], 1e-3) * max(self.box[3] - self.box[1], 1e-3)))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return float(width * height / union) if union > 0 else 0.0


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

    With ``track`` (frames given in order), a frame after one with faces is first searched only
    near each of them, on copies scaled so the face spans about _DLIB_TRACK_FACE pixels: a few
    times less HOG work than the whole downscaled frame. The whole frame is searched every
    _DLIB_WHOLE_EVERY-th frame, and in every frame that finds fewer faces than one of the last
    _DLIB_WHOLE_EVERY did, so that every person in view is seen. Landmarks stay within about a
    pixel of the whole-frame search (``tests/test_landmarks.py`` states the bound).
    """
    import cv2
    import dlib

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_predictor_path()))
    last: list[np.ndarray] = []  # the boxes of the previous frame's faces
    searched = [0]  # frames searched so far
    counts: deque[int] = deque(maxlen=_DLIB_WHOLE_EVERY)  # faces found in each of the last frames

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
        faces: list[Face] = []
        for box in last if track else []:
            faces += [f for f in near(frame, box) if not any(_overlap(f.box, g.box) > 0.5 for g in faces)]
        # The whole frame too: periodically, and while fewer faces are found than in one of the
        # last _DLIB_WHOLE_EVERY frames (a face missed once is looked for everywhere at once).
        if not track or searched[0] % _DLIB_WHOLE_EVERY == 0 or len(faces) < max(counts, default=0):
            faces += [f for f in whole_frame(frame) if not any(_overlap(f.box, g.box) > 0.5 for g in faces)]
        last[:] = [f.box for f in faces]
        counts.append(len(faces))
        searched[0] += 1
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


Tracklet = dict  # frame index -> Face, the detections of one stretch of one person, frames ascending


def _appearance(faces: Iterable[Face]) -> np.ndarray | None:
    """The mean raw descriptor of faces (those that have one), or None."""
    vectors = [f.descriptor for f in faces if f.descriptor is not None]
    return np.mean(vectors, axis=0) if vectors else None


def _match_cost(track: Tracklet, frame: int, face: Face) -> float | None:
    """How well ``face`` in ``frame`` continues ``track`` (lower is better), or None if it cannot.

    Gates (module constants): the distance from the track's predicted centre, in face sizes,
    within min(_MAX_SHIFT × elapsed, _MAX_REACH); the size ratio within _MAX_SCALE ** min(elapsed, 2);
    the descriptor distance to the track's appearance below SAME_PERSON (where both have
    descriptors). The cost adds the two distances.
    """
    seen = list(track)
    last_frame = seen[-1]
    last = track[last_frame]
    elapsed = frame - last_frame
    predicted = last.center
    if len(seen) >= 2:  # constant velocity from the last two detections
        previous = seen[-2]
        predicted = predicted + (last.center - track[previous].center) / (last_frame - previous) * elapsed
    shift = float(np.linalg.norm(face.center - predicted)) / last.size
    ratio = max(face.size / last.size, last.size / face.size)
    if shift > min(_MAX_SHIFT * elapsed, _MAX_REACH) or ratio > _MAX_SCALE ** min(elapsed, 2):
        return None
    appearance = _appearance(track[f] for f in seen[-_APPEARANCE_FRAMES:])
    if appearance is None or face.descriptor is None:
        return shift
    distance = float(np.linalg.norm(face.descriptor - appearance))
    return shift + distance if distance < SAME_PERSON else None


def tracklets(faces_per_frame: Sequence[Sequence[Face]]) -> list[Tracklet]:
    """Detections linked frame to frame into tracklets (``_match_cost``), ordered by their first frame.

    In each frame the cheapest admissible (track, face) pairs are taken first; a face no open
    track can take starts a new tracklet; a tracklet not continued for _TRACK_MEMORY frames ends.
    """
    open_tracks: list[Tracklet] = []
    ended: list[Tracklet] = []
    for frame, faces in enumerate(faces_per_frame):
        for track in list(open_tracks):
            if frame - next(reversed(track)) > _TRACK_MEMORY:
                open_tracks.remove(track)
                ended.append(track)
        pairs = []
        for t, track in enumerate(open_tracks):
            for f, face in enumerate(faces):
                cost = _match_cost(track, frame, face)
                if cost is not None:
                    pairs.append((cost, t, f))
        taken_tracks, taken_faces = set(), set()
        for _, t, f in sorted(pairs):
            if t not in taken_tracks and f not in taken_faces:
                open_tracks[t][frame] = faces[f]
                taken_tracks.add(t)
                taken_faces.add(f)
        open_tracks += [{frame: face} for f, face in enumerate(faces) if f not in taken_faces]
    return sorted(ended + open_tracks, key=lambda track: next(iter(track)))


def join_by_appearance(pieces: Sequence[Tracklet]) -> list[Tracklet]:
    """Tracklets of one person joined: repeatedly the two groups closest in mean descriptor (below
    SAME_PERSON) that share no frame. A person who leaves the picture and comes back, or was
    missed for longer than the gate allows, keeps one track; two people seen in the same frame are
    never joined. (The distances and overlaps are kept in matrices, a row updated per join: a clip
    with hundreds of short tracklets of false detections joins in well under a second.)"""
    people = [dict(piece) for piece in pieces]
    count = len(people)
    looks = [_appearance(person.values()) for person in people]
    weights = np.array([sum(f.descriptor is not None for f in person.values()) for person in people], float)
    described = np.array([look is not None for look in looks], bool)
    vectors = np.stack([look if look is not None else np.zeros(128) for look in looks]) if count else np.zeros((0, 128))
    distance = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1) if count else np.zeros((0, 0))
    spans = [set(person) for person in people]
    overlap = np.array([[bool(a & b) for b in spans] for a in spans], bool).reshape(count, count)
    alive = np.ones(count, bool)
    while True:
        allowed = ~overlap & described[:, None] & described[None] & alive[:, None] & alive[None]
        np.fill_diagonal(allowed, False)
        candidates = np.where(allowed & (distance < SAME_PERSON), distance, np.inf)
        if not count or not np.isfinite(candidates.min()):
            return [people[i] for i in range(count) if alive[i]]
        i, j = np.unravel_index(np.argmin(candidates), candidates.shape)
        i, j = min(i, j), max(i, j)
        people[i] = dict(sorted((people[i] | people[j]).items()))
        vectors[i] = (weights[i] * vectors[i] + weights[j] * vectors[j]) / (weights[i] + weights[j])
        weights[i] += weights[j]
        alive[j] = False
        overlap[i] |= overlap[j]
        overlap[:, i] = overlap[i]
        distance[i] = distance[:, i] = np.linalg.norm(vectors - vectors[i], axis=1)


def track_faces(faces_per_frame: Sequence[Sequence[Face]]) -> list[list[Face | None]]:
    """Every person through the clip: per person a list with their Face in each frame, None
    where they were not found. People are ordered by the number of frames they are found in
    (most first: person 0 is the main face), ties by the larger mean face size, then the earlier
    first frame, then the box further left."""
    frames = len(faces_per_frame)
    people = join_by_appearance(tracklets(faces_per_frame))

    def order(person: Tracklet):
        first = next(iter(person))
        return (-len(person), -np.mean([f.size for f in person.values()]), first, float(person[first].box[0]))

    return [[person.get(frame) for frame in range(frames)] for person in sorted(people, key=order)]


def track_main_face(faces_per_frame: Sequence[Sequence[Face]]) -> list[Face | None]:
    """The main face in every frame (person 0 of ``track_faces``); None where it was not found."""
    people = track_faces(faces_per_frame)
    return people[0] if people else [None] * len(faces_per_frame)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True in a 1-D bool array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def fill_gaps(track: Sequence[Face | None], max_gap: int = 5, source: str = "the video") -> dict:
    """Turn one person's track into per-frame arrays, interpolating frames without the face.

    Every frame gets points and a box (the crops need one): between two detections they are
    interpolated linearly, before the first and after the last the nearest detection is held.
    Only runs of at most ``max_gap`` frames without the face are *edited*; a longer run (the
    person left, or was hidden) is left unedited: the source frames pass through there.
    No detection at all raises "no face found in <source>". 'detected' is True where the face
    was found; interpolated frames get score 0.

    Returns {'points': float32 [F,68,2], 'score': float32 [F], 'box': float32 [F,4],
    'detected': bool [F], 'interpolated': bool [F], 'edited': bool [F]}.
    """
    frames = len(track)
    detected = np.array([f is not None for f in track], bool)
    if frames == 0 or not detected.any():
        raise CiinvError(
            f"no face found in {source} ({frames} frames); the pipeline needs one face visible in the video"
        )
    edited = detected.copy()
    for start, stop in _runs(~detected):
        if stop - start <= max_gap:
            edited[start:stop] = True

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
    return {"points": points, "score": score, "box": box, "detected": detected, "interpolated": ~detected,
            "edited": edited}


def frame_ranges(mask: np.ndarray) -> str:
    """The runs of True in a per-frame mask, as '3-9 (7 frames), 12 (1 frame)' (0-based, inclusive)."""
    parts = []
    for start, stop in _runs(np.asarray(mask, bool)):
        count = stop - start
        span = f"{start}" if count == 1 else f"{start}-{stop - 1}"
        parts.append(f"{span} ({count} frame{'s' if count > 1 else ''})")
    return ", ".join(parts)


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


def describe_faces(frames: Sequence[np.ndarray], faces_per_frame: Sequence[Sequence[Face]],
                   embedder: FaceEmbedder) -> None:
    """Set every face's ``descriptor`` (raw, ``FaceEmbedder(unit=False)``) from its frame and 68 points."""
    for frame, faces in zip(frames, faces_per_frame):
        for face in faces:
            face.descriptor = embedder.one(frame, face.points)


def detect_frames(
    frames: Iterable[np.ndarray],
    detector: str | Detector = "dlib",
    max_gap: int = 5,
    device: str = "cpu",
    models_dir: str | os.PathLike = "models",
    batch: int = 16,
    source: str = "the video",
    min_share: float = 0.25,
    embedder: FaceEmbedder | None | bool = True,
    fan_files: Sequence[str | os.PathLike] | None = None,
) -> dict:
    """Landmarks of every person tracked through a sequence of H×W×3 uint8 RGB frames.

    ``detector`` is a name from DETECTORS or a ready Detector; ``source`` names the video in errors
    and in the log; ``embedder``: True builds dlib's descriptor network, False/None tracks by
    position alone. Person 0 (the main face, found in most frames) is always kept, every other
    person only if found in at least ``min_share`` of the frames.

    Returns ``fill_gaps`` of person 0 (the main face: 'points', 'score', 'box', 'detected',
    'interpolated', 'edited'), plus every kept person's (T of them) arrays, frame first like all
    the others: 'face_points' [F,T,68,2], 'face_score' [F,T], 'face_box' [F,T,4], 'face_detected'
    and 'face_edited' bool [F,T] (``face_landmarks`` picks one, ``face_count`` counts them).
    """
    detect = make_detector(detector, models_dir, device, fan_files) if isinstance(detector, str) else detector
    if embedder is True:
        embedder = FaceEmbedder(unit=False)
    faces_per_frame: list[list[Face]] = []
    for chunk in _batches(frames, batch):
        found = detect(chunk)
        if embedder:
            describe_faces(chunk, found, embedder)
        faces_per_frame.extend(found)
    count = len(faces_per_frame)
    people = track_faces(faces_per_frame) or [[None] * count]
    found_in = [sum(face is not None for face in person) for person in people]
    kept = [person for k, person in enumerate(people) if k == 0 or found_in[k] >= min_share * count]
    filled = [fill_gaps(person, max_gap, source) for person in kept]
    for k, person in enumerate(filled):
        found, edited = person["detected"], person["edited"]
        line = (f"{source}: face {k} found in {int(found.sum())}/{count} frames, "
                f"{int((edited & ~found).sum())} interpolated")
        if not edited.all():
            line += (f"; left unedited (not found for more than landmarks.max_gap = {max_gap} frames): frames "
                     f"{frame_ranges(~edited)} (counted from 0)")
            log.warning(line)
        else:
            log.info(line)
    if len(people) > len(kept):
        log.info(f"{source}: {len(people) - len(kept)} other face track(s) found in fewer than landmarks.min_share = "
                 f"{min_share} of the frames, left alone")
    result = dict(filled[0])
    for key in ("points", "score", "box", "detected", "edited"):
        result[f"face_{key}"] = np.stack([person[key] for person in filled], axis=1)
    return result


def face_landmarks(result: dict, face: int) -> dict:
    """Person ``face`` of a ``detect_frames`` result (or a loaded landmarks.npz) in the one-face
    format: {'points', 'score', 'box', 'detected', 'interpolated', 'edited'}."""
    count = result["face_detected"].shape[1] if "face_detected" in result else 1
    if not 0 <= face < count:
        raise CiinvError(f"face {face} asked for, but the landmarks hold {count} face track(s) (0-{count - 1}); "
                         "rerun the landmarks stage")
    if "face_points" not in result:  # a file from before face tracks: its one face
        return {key: result[key] for key in ("points", "score", "box", "detected", "interpolated", "edited")}
    one = {key: result[f"face_{key}"][:, face] for key in ("points", "score", "box", "detected", "edited")}
    one["interpolated"] = ~one["detected"]
    return one


def detect_video(
    video_path: str | os.PathLike,
    detector: str = "dlib",
    max_gap: int = 5,
    device: str = "cpu",
    models_dir: str | os.PathLike = "models",
    batch: int = 16,
    meta: dict | None = None,
    min_share: float = 0.25,
    fan_files: Sequence[str | os.PathLike] | None = None,
) -> dict:
    """Landmarks of every person tracked through a video (decoded upright; see ``detect_frames``).

    ``meta`` is the video's probe result (``ciinv.io.video.probe``); probed here if not given.
    The detector is built before decoding starts, so a missing model file fails fast.
    """
    from ciinv.io.video import VideoReader, probe

    detect = make_detector(detector, models_dir, device, fan_files)
    meta = probe(video_path) if meta is None else meta
    reader = VideoReader(video_path, meta)
    frames = (frame for _, frame in reader.frames(batch=batch))
    return detect_frames(frames, detect, max_gap, batch=batch, source=str(video_path), min_share=min_share)


def save_landmarks(path: str | os.PathLike, result: dict) -> None:
    """Write a detect_video result (or one ``face_landmarks``) as an .npz, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{key: np.asarray(value) for key, value in result.items()})


def load_landmarks(path: str | os.PathLike) -> dict:
    """Read what save_landmarks wrote: {'points', 'score', 'box', 'detected', 'interpolated', 'edited'}
    (the main face), and the 'face_*' arrays of every tracked person where written.

    A file from before 'edited' existed (a longer gap then failed the stage) is edited in every
    frame. A truncated or garbled file, or one holding NaN/inf, is a CiinvError naming it.
    """
    result = read_npz(path, ["points", "score", "box", "detected", "interpolated"],
                      rerun="rerun the landmarks stage for its video", per_frame=["points", "score", "box"])
    result.setdefault("edited", np.ones(len(result["detected"]), bool))
    return result


def face_count(path_or_file) -> int:
    """How many face tracks a landmarks.npz holds (1 for a file from before face tracks).

    ``path_or_file``: a path or an open binary file (the workflow reads the checkpoint's output
    through Snakemake's ``.open()``). Light: numpy only, no detector. An unreadable file is a
    CiinvError naming it."""
    name = getattr(path_or_file, "name", path_or_file)
    try:
        with np.load(path_or_file, allow_pickle=False) as data:
            return data["face_detected"].shape[1] if "face_detected" in data.files else 1
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, ...: all mean "rerun the stage"
        raise CiinvError(f"{name}: not a readable landmarks file ({exc}); rerun the landmarks stage for its "
                         "video") from None
