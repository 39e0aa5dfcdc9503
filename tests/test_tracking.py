"""Identity-consistent tracking: each person keeps their own track, on arrays and on composed clips.

The clips are made of `ciinv sample-clip` clips (the astronaut; different seeds move her
differently) side by side, and of moving astronaut crops composited with numpy: every face is the
same person to dlib's descriptor, so these check the position gates; the arrays check the
appearance gate with descriptors made up for the purpose.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from ciinv.cli import main
from ciinv.errors import CiinvError
from ciinv.faces.identity import SAME_PERSON
from ciinv.faces.landmarks import (
    Face,
    detect_frames,
    detect_video,
    dlib_detector,
    join_by_appearance,
    track_faces,
    tracklets,
)
from ciinv.io.ffmpeg import ffmpeg_exe
from ciinv.io.video import VideoReader, VideoWriter

DESCRIPTOR_NORM = 1.45  # about the norm of dlib's raw descriptors


def face(cx: float, cy: float, size: float = 60.0, look: int | None = None) -> Face:
    """A made-up detection; ``look`` picks a descriptor (different looks are 2.05 apart, far past 0.6)."""
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
    descriptor = None
    if look is not None:
        descriptor = np.zeros(128)
        descriptor[look] = DESCRIPTOR_NORM
    return Face(box, np.tile(np.array([cx, cy], np.float32), (68, 1)), 1.0, descriptor)


# ---------------------------------------------------------------------------------------------
# On arrays


def test_the_gate_stops_growing_so_a_missed_face_never_becomes_its_neighbour():
    """The issue's failure: the right face missed for 8 frames while the left one, two face sizes
    away, is found throughout. The old gate grew by a face size per missed frame; this one stops at
    1.5, so the right track waits and picks up its own face again."""
    left = [face(100, 100) for _ in range(30)]
    right = [face(220, 100) for _ in range(30)]
    frames = [[left[i]] + ([right[i]] if not 3 <= i < 11 else []) for i in range(30)]
    people = track_faces(frames)
    assert len(people) == 2
    assert people[0] == left
    assert people[1] == [right[i] if not 3 <= i < 11 else None for i in range(30)]


def test_someone_else_never_continues_a_track_however_close():
    """Person A (look 0) is missed in frame 3, where person B (look 1) appears right where A would
    be: B starts a track of their own, and A's track goes on with A."""
    a = [face(100 + 2 * i, 100, look=0) for i in range(6)]
    b = face(106, 101, look=1)
    frames = [[a[0]], [a[1]], [a[2]], [b], [a[4]], [a[5]]]
    people = track_faces(frames)
    assert people[0] == [a[0], a[1], a[2], None, a[4], a[5]]
    assert people[1] == [None, None, None, b, None, None]


def test_a_person_who_comes_back_elsewhere_keeps_one_track():
    """A leaves for 20 frames and comes back on the other side of the picture: beyond any position
    gate, so a new tracklet starts, and the two are joined by appearance. B, who looks the same
    as nobody else and is there all the time, is never joined with A."""
    frames = [[face(400, 200, look=1)] + ([face(100, 100, look=0)] if i < 10 else []) for i in range(30)]
    for i in range(30, 40):
        frames.append([face(400, 200, look=1), face(600, 300, look=0)])
    assert len(tracklets(frames)) == 3
    people = track_faces(frames)
    assert len(people) == 2
    assert all(f is not None and f.descriptor[1] > 0 for f in people[0])  # B, found in all 40 frames
    a = people[1]
    assert [f is not None for f in a] == [True] * 10 + [False] * 20 + [True] * 10
    assert all(f.descriptor[0] > 0 for f in a if f is not None)


def test_two_people_seen_together_are_never_joined_even_if_they_look_alike():
    twins = [[face(100, 100, look=0), face(300, 100, look=0)] for _ in range(5)]
    assert len(join_by_appearance(tracklets(twins))) == 2


def test_people_are_ordered_by_how_often_they_are_found():
    frames = [[face(100, 100)] + ([face(300, 100, size=80)] if i % 2 else []) for i in range(10)]
    people = track_faces(frames)
    assert [sum(f is not None for f in p) for p in people] == [10, 5]


def test_the_threshold_is_dlibs():
    assert SAME_PERSON == 0.6


# ---------------------------------------------------------------------------------------------
# On clips: two sample clips side by side (ffmpeg hstack), three faces crossing paths


def sample_clip(path: Path, seed: int, frames: int, size: int) -> None:
    assert main(["sample-clip", str(path), "--frames", str(frames), "--width", str(size), "--height", str(size),
                 "--seed", str(seed), "--no-audio"]) == 0


def read_frames(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [frame for _, frame in reader.frames()]


def centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., :2] + boxes[..., 2:]) / 2


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory):
    """Two 160² sample clips (seeds 1 and 2, faces ~60 px) joined with ffmpeg's hstack; the right
    one blanked in frames 3-5 (a short miss, as in the issue) and 20-29 (longer than max_gap).
    Returns the clip, and each face's centre (the mean of its 68 points) [F, 2] found by dlib on
    its own clip (the right one's in the joined frame's pixels)."""
    folder = tmp_path_factory.mktemp("two_faces")
    frames, size = 36, 160
    left, right, joined = folder / "left.mp4", folder / "right.mp4", folder / "two.mp4"
    sample_clip(left, 1, frames, size)
    sample_clip(right, 2, frames, size)
    blank = "drawbox=x=0:y=0:w=iw:h=ih:color=gray:t=fill:enable='between(n,3,5)+between(n,20,29)'"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(left), "-i", str(right),
                    "-filter_complex", f"[1:v]{blank}[r];[0:v][r]hstack", "-c:v", "libx264", "-crf", "12",
                    "-pix_fmt", "yuv420p", str(joined)], check=True)
    detect = dlib_detector(track=False)
    known = []
    for clip, shift in ((left, 0), (right, size)):
        found = detect(read_frames(clip))
        assert all(len(f) == 1 for f in found)
        known.append(np.stack([f[0].points.mean(axis=0) for f in found]) + [shift, 0])
    return joined, known


def test_two_faces_side_by_side_each_track_stays_on_its_own_face(side_by_side):
    """The issue's clip: every frame of each track is on its own face (its points' centre within
    6 px of where dlib finds it on its own clip, the faces 160 px apart); the right face's short
    miss is interpolated, the long one left unedited; nothing fails."""
    video, (left, right) = side_by_side
    result = detect_video(video, detector="dlib", max_gap=5, min_share=0.25)
    assert result["face_detected"].shape == (36, 2)
    assert result["face_detected"][:, 0].all()  # the left face: found in every frame, so face 0
    found = result["face_points"].mean(axis=2).transpose(1, 0, 2)  # [2 faces, F, 2]
    assert np.abs(found[0] - left).max() < 6
    right_seen = ~np.isin(np.arange(36), [3, 4, 5, *range(20, 30)])
    np.testing.assert_array_equal(result["face_detected"][:, 1], right_seen)
    assert np.abs(found[1][right_seen] - right[right_seen]).max() < 6
    # Interpolated across the short miss (between the right face's own detections), never on the left face.
    assert np.linalg.norm(found[1][3:6] - right[3:6], axis=1).max() < 20
    assert (found[1][:, 0] > 160).all()
    edited = np.ones(36, bool)
    edited[20:30] = False
    np.testing.assert_array_equal(result["face_edited"][:, 1], edited)
    assert result["face_edited"][:, 0].all()


def test_the_log_names_the_frames_left_unedited(side_by_side, caplog):
    video, _ = side_by_side
    with caplog.at_level("INFO", logger="ciinv.faces.landmarks"):
        detect_video(video, detector="dlib", max_gap=5)
    assert f"{video}: face 1 found in 23/36 frames, 3 interpolated; left unedited" in caplog.text
    assert "frames 20-29 (10 frames)" in caplog.text


def head_patch(face_size: float) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head scaled so her face (jaw to jaw, 93 px in the photo) spans ``face_size``:
    (patch, the face centre in patch pixels, as dlib's box centre finds it on the photo)."""
    photo = data.astronaut()
    head = photo[15:190, 140:305]  # hair to chin, ciinv.dev.sample's _HEAD_BOX
    scale = face_size / 93.0
    patch = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    (found,) = dlib_detector(track=False)([photo])
    centre = (found[0].center - [140, 15]) * scale
    return patch, centre


CANVAS = (640, 480)  # width, height


def crossing_paths(frames: int) -> np.ndarray:
    """Face centres [3, frames, 2] on the 640×480 canvas: A goes right along y = 80, B left along
    y = 400, C down along x = 320; C crosses A's path (at t = 0.1) and B's (at t = 0.9) where
    they were or will be, and A and B pass x = 320 in turn."""
    t = np.linspace(0, 1, frames)
    a = np.stack([60 + 520 * t, np.full(frames, 80.0)], axis=1)
    b = np.stack([580 - 520 * t, np.full(frames, 400.0)], axis=1)
    c = np.stack([np.full(frames, 320.0), 80 + 320 * (t - 0.1) / 0.8], axis=1)
    return np.stack([a, b, c])


def paste_clipped(canvas: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    """``patch`` onto ``canvas`` with its top-left corner at (x0, y0), cut at the canvas' edges."""
    height, width = canvas.shape[:2]
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = min(patch.shape[0], height - y0), min(patch.shape[1], width - x0)
    canvas[y0 + top:y0 + bottom, x0 + left:x0 + right] = patch[top:bottom, left:right]


def test_three_faces_crossing_paths_keep_their_own_tracks(tmp_path):
    frames, face_size = 40, 48.0
    paths = crossing_paths(frames)
    # Never closer than 2.3 face sizes at one time (the faces do not touch), while each path is
    # crossed by another.
    gaps = [np.linalg.norm(paths[i] - paths[j], axis=1).min() for i, j in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2.3 * face_size, gaps
    patch, centre = head_patch(face_size)
    pictures = []
    for f in range(frames):
        canvas = np.full((CANVAS[1], CANVAS[0], 3), 90, np.uint8)
        for person in range(3):
            paste_clipped(canvas, patch, *np.round(paths[person, f] - centre).astype(int))
        pictures.append(canvas)
    video = tmp_path / "three.mp4"
    with VideoWriter(video, "25", *CANVAS, crf=12, preset="ultrafast") as writer:
        for picture in pictures:
            writer.write(picture)

    result = detect_frames(read_frames(video), "dlib", source=str(video))
    assert result["face_detected"].shape == (40, 3) and result["face_detected"].all()
    found = centres(result["face_box"]).transpose(1, 0, 2)  # [3, frames, 2], in some order of the people
    for track in found:
        person = int(np.argmin(np.linalg.norm(paths[:, 0] - track[0], axis=1)))
        error = np.linalg.norm(track - paths[person], axis=1)
        assert error.max() < 0.2 * face_size, (person, error.max())


# ---------------------------------------------------------------------------------------------
# The landmarks file with several faces


def test_each_face_is_written_and_read_back_on_its_own(tmp_path):
    """landmarks.npz holds the main face as before plus every face frame first; `ciinv face-landmarks`
    writes one face in the one-face format; face_count reads the count from a path or an open file."""
    from ciinv.faces.landmarks import face_count, face_landmarks, load_landmarks, save_landmarks

    frames = [[face(100, 100, look=0)] + ([face(300, 100, look=1)] if i < 4 else []) for i in range(10)]
    detections = iter(frames)
    result = detect_frames([np.zeros((8, 8, 3), np.uint8)] * 10, lambda chunk: [next(detections) for _ in chunk],
                           max_gap=2, embedder=False, min_share=0.3)
    assert result["face_detected"].shape == (10, 2)
    save_landmarks(tmp_path / "landmarks.npz", result)
    assert face_count(tmp_path / "landmarks.npz") == 2
    with open(tmp_path / "landmarks.npz", "rb") as f:
        assert face_count(f) == 2
    assert main(["face-landmarks", "--landmarks", str(tmp_path / "landmarks.npz"), "--face", "1", "--out",
                 str(tmp_path / "face1.npz")]) == 0
    one = load_landmarks(tmp_path / "face1.npz")
    np.testing.assert_array_equal(one["detected"], [True] * 4 + [False] * 6)
    np.testing.assert_array_equal(one["edited"], [True] * 4 + [False] * 6)  # 6 > max_gap at the end
    np.testing.assert_allclose(one["points"][:, 0], [[300, 100]] * 10)
    assert face_count(tmp_path / "face1.npz") == 1
    np.testing.assert_array_equal(face_landmarks(load_landmarks(tmp_path / "landmarks.npz"), 0)["points"],
                                  result["points"])
    # A person below min_share is left out; the main face always stays.
    detections = iter(frames)
    few = detect_frames([np.zeros((8, 8, 3), np.uint8)] * 10, lambda chunk: [next(detections) for _ in chunk],
                        embedder=False, min_share=0.5)
    assert few["face_detected"].shape == (10, 1)
    assert main(["face-landmarks", "--landmarks", str(tmp_path / "landmarks.npz"), "--face", "2", "--out",
                 str(tmp_path / "face2.npz")]) == 1
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CiinvError, match="bad.npz"):
        face_count(tmp_path / "bad.npz")
