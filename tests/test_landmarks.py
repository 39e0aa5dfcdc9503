"""Landmarks: dlib detection on a real face, main-face tracking, gap filling, FAN model files."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from ciinv.errors import CiinvError
from ciinv.faces.landmarks import (
    FAN_MODELS,
    Face,
    detect_frames,
    detect_video,
    dlib_detector,
    dlib_predictor_path,
    fan_model_files,
    fill_gaps,
    frame_ranges,
    load_landmarks,
    make_detector,
    save_landmarks,
    track_faces,
    track_main_face,
)
from ciinv.models.catalogue import CATALOGUE

FAN_DETECTOR_FILE, FAN_LANDMARKS_FILE = (CATALOGUE[name].filename for name in FAN_MODELS)

ASTRONAUT = data.astronaut()  # 512×512 RGB; her face box is about (179, 83)-(267, 171)


def place(canvas_hw: tuple[int, int], picture: np.ndarray, scale: float, left: float, top: float) -> tuple[np.ndarray, np.ndarray]:
    """``picture`` scaled by ``scale`` with its top-left corner at (left, top) on a grey canvas.

    Returns the frame and the 2×3 matrix that maps picture pixels to frame pixels.
    """
    matrix = np.array([[scale, 0, left], [0, scale, top]])
    frame = cv2.warpAffine(picture, matrix, canvas_hw[::-1], flags=cv2.INTER_AREA, borderValue=(90, 90, 90))
    return frame, matrix


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    from ciinv.io.video import VideoWriter

    height, width = frames[0].shape[:2]
    with VideoWriter(path, "25", width, height, crf=12, preset="ultrafast") as writer:
        for frame in frames:
            writer.write(frame)


@pytest.fixture(scope="module")
def dlib_detect():
    """Every frame searched whole (the tracking search reports only faces near the last one)."""
    return dlib_detector(track=False)


@pytest.fixture(scope="module")
def astronaut_points(dlib_detect) -> np.ndarray:
    """dlib's 68 points on the full-size astronaut, the reference for moved copies."""
    (face,) = dlib_detect([ASTRONAUT])
    return face[0].points


def fake_face(cx: float, cy: float, size: float, score: float = 1.0) -> Face:
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
    points = np.tile(np.array([cx, cy], np.float32), (68, 1))
    return Face(box, points, score)


# ---------------------------------------------------------------------------------------------
# Model files


def test_dlib_predictor_path_resolves():
    path = dlib_predictor_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat"
    assert path.stat().st_size > 50_000_000


def test_fan_file_names_are_those_face_alignment_downloads(tmp_path):
    # Read the installed package's URLs from its source (importing it costs seconds: numba).
    package = Path(importlib.util.find_spec("face_alignment").origin).parent
    urls = re.findall(r"https://\S+?/([^/'\"]+)['\"]", (package / "api.py").read_text())
    urls += re.findall(r"https://\S+?/([^/'\"]+)['\"]", (package / "detection/sfd/sfd_detector.py").read_text())
    assert FAN_DETECTOR_FILE in urls and FAN_LANDMARKS_FILE in urls, urls
    assert fan_model_files(tmp_path) == [tmp_path / FAN_DETECTOR_FILE, tmp_path / FAN_LANDMARKS_FILE]


def test_fan_without_model_files_names_the_file_and_the_fix(tmp_path):
    (tmp_path / FAN_DETECTOR_FILE).write_bytes(b"present")
    with pytest.raises(CiinvError) as error:
        make_detector("fan", models_dir=tmp_path)
    message = str(error.value)
    assert FAN_LANDMARKS_FILE in message and FAN_DETECTOR_FILE not in message
    assert "ciinv models fetch" in message


def test_unknown_detector_is_an_error():
    with pytest.raises(CiinvError, match="landmarks.detector"):
        make_detector("mtcnn")


# ---------------------------------------------------------------------------------------------
# dlib on real faces


@pytest.mark.parametrize("size", [(256, 256), (720, 1280)])
def test_dlib_finds_the_astronauts_face(dlib_detect, astronaut_points, size):
    # Small frames take the upsampled path, large ones the downscaled one.
    scale = 0.5 if size[0] == 256 else 1.3
    frame, matrix = place(size, ASTRONAUT, scale, 5.0, 3.0)
    (faces,) = dlib_detect([frame])
    assert len(faces) == 1
    expected = astronaut_points @ matrix[:, :2].T + matrix[:, 2]
    error = np.linalg.norm(faces[0].points - expected, axis=1).mean()
    assert error < 2.5 * scale, error
    x0, y0, x1, y1 = faces[0].box
    assert x0 < expected[30, 0] < x1 and y0 < expected[30, 1] < y1  # nose tip inside the box


def test_tracking_picks_the_largest_face_and_follows_it(dlib_detect, astronaut_points):
    head = ASTRONAUT[0:300, 90:370]
    frames, expected = [], []
    for step in range(4):
        canvas = np.full((270, 480, 3), 90, np.uint8)
        # A smaller second face stays put on the right; the main face drifts right and grows.
        small, _ = place((270, 480), head, 0.55, 320, 60)
        big, matrix = place((270, 480), head, 0.8 + 0.03 * step, 10 + 12 * step, 10)
        canvas[:, 300:] = small[:, 300:]
        canvas[:, :300] = big[:, :300]
        frames.append(canvas)
        expected.append((astronaut_points - [90, 0]) @ matrix[:, :2].T + matrix[:, 2])

    faces = dlib_detect(frames)
    assert all(len(f) == 2 for f in faces), [len(f) for f in faces]
    result = detect_frames(frames, dlib_detect, batch=3)
    assert result["detected"].all()
    error = np.linalg.norm(result["points"] - np.stack(expected), axis=2).mean()
    assert error < 3.0, error


@pytest.mark.parametrize("size", [(320, 240), (1280, 720)])
def test_tracking_search_keeps_the_landmarks_of_the_whole_frame_search(tmp_path, size):
    """The faster search near the last face moves the landmarks by about a pixel (HOG boxes of a
    region differ from the whole frame's; dlib's predictor starts from the box): bounds below, in
    pixels of a face ~95 (320x240) or ~250 (1280x720) pixels wide."""
    from ciinv.dev.sample import make_clip
    from ciinv.io.video import VideoReader

    video = tmp_path / "clip.mp4"
    make_clip(video, frames=12, size=size, audio=False)
    with VideoReader(video) as reader:
        frames = [frame for _, frame in reader.frames()]
    whole = detect_frames(frames, dlib_detector(track=False))
    tracked = detect_frames(frames, dlib_detector(track=True))
    assert whole["detected"].all() and tracked["detected"].all()
    distance = np.linalg.norm(tracked["points"] - whole["points"], axis=-1)  # [frames, 68] pixels
    assert distance.mean() < 1.5 and distance.mean(axis=1).max() < 3.0 and distance.max() < 10.0


# ---------------------------------------------------------------------------------------------
# Tracking and gaps on arrays


def test_track_does_not_jump_to_another_face_when_the_main_one_is_missed():
    main = [fake_face(100 + 5 * i, 100, 80) for i in range(6)]
    other = [fake_face(400, 120, 60) for _ in range(6)]
    faces = [[main[0], other[0]], [other[1], main[1]], [other[2]], [other[3]], [main[4], other[4]], [main[5]]]
    people = track_faces(faces)
    assert len(people) == 2
    # The other face is found in 5 frames, the first one in 4: the other is the main face now.
    assert track_main_face(faces) == people[0] == [other[0], other[1], other[2], other[3], other[4], None]
    assert people[1] == [main[0], main[1], None, None, main[4], main[5]]


def test_track_rejects_a_face_of_a_very_different_size():
    faces = [[fake_face(100, 100, 80)], [fake_face(110, 100, 200)], [fake_face(108, 100, 84)]]
    track = track_main_face(faces)
    assert track[1] is None and track[2] is faces[2][0]


def test_fill_gaps_interpolates_inside_and_holds_at_the_ends():
    track = [None, fake_face(10, 20, 50, 0.9), None, None, fake_face(40, 50, 80, 0.7), None]
    result = fill_gaps(track, max_gap=2, source="clip.mp4")
    np.testing.assert_array_equal(result["detected"], [False, True, False, False, True, False])
    np.testing.assert_array_equal(result["interpolated"], ~result["detected"])
    centers = result["points"][:, 0]
    np.testing.assert_allclose(centers, [[10, 20], [10, 20], [20, 30], [30, 40], [40, 50], [40, 50]], atol=1e-5)
    np.testing.assert_allclose(result["box"][2], [20 - 30, 30 - 30, 20 + 30, 30 + 30], atol=1e-5)  # size 50→60→70→80
    np.testing.assert_allclose(result["score"], [0, 0.9, 0, 0, 0.7, 0], atol=1e-6)
    assert result["points"].dtype == np.float32 and result["points"].shape == (6, 68, 2)


def test_long_gaps_are_left_unedited_and_named():
    """A run without the face longer than max_gap no longer fails the video: its frames keep
    interpolated (or held) positions for the crops but are not edited, and frame_ranges names them."""
    track = [fake_face(10, 10, 50)] * 3 + [None] * 7 + [fake_face(10, 10, 50)] + [None] * 2 + [None] * 4
    result = fill_gaps(track, max_gap=5, source="videos/my clip.mp4")
    expected = np.ones(17, bool)
    expected[3:10] = expected[11:17] = False
    np.testing.assert_array_equal(result["edited"], expected)
    assert frame_ranges(~result["edited"]) == "3-9 (7 frames), 11-16 (6 frames)"
    short = fill_gaps([fake_face(10, 10, 50)] + [None] * 5 + [fake_face(20, 10, 50)], max_gap=5)
    assert short["edited"].all() and short["interpolated"][1:6].all()


def test_no_face_anywhere_is_an_error():
    with pytest.raises(CiinvError, match="no face found in blank.mp4"):
        fill_gaps([None, None], max_gap=5, source="blank.mp4")


# ---------------------------------------------------------------------------------------------
# Whole videos


def test_detect_video_and_save_load(tmp_path, astronaut_points):
    frames, expected = [], []
    for step in range(5):
        frame, matrix = place((256, 256), ASTRONAUT, 0.5 + 0.01 * step, -20 + 4 * step, 10 - 2 * step)
        frames.append(frame)
        expected.append(astronaut_points @ matrix[:, :2].T + matrix[:, 2])
    video = tmp_path / "moving astronaut.mp4"
    write_video(video, frames)

    result = detect_video(video, detector="dlib", batch=2)
    assert result["detected"].all() and not result["interpolated"].any()
    assert result["points"].shape == (5, 68, 2) and result["box"].shape == (5, 4) and result["score"].shape == (5,)
    assert np.linalg.norm(result["points"] - np.stack(expected), axis=2).mean() < 2.5

    save_landmarks(tmp_path / "landmarks.npz", result)
    loaded = load_landmarks(tmp_path / "landmarks.npz")
    assert set(loaded) == set(result)
    for key in result:
        np.testing.assert_array_equal(loaded[key], result[key])
        assert loaded[key].dtype == result[key].dtype


def test_blank_video_names_the_file(tmp_path):
    video = tmp_path / "blank clip.mp4"
    write_video(video, [np.full((64, 96, 3), 30, np.uint8)] * 3)
    with pytest.raises(CiinvError, match=f"no face found in {video}"):
        detect_video(video, detector="dlib")


# ---------------------------------------------------------------------------------------------
# FAN glue, with random weights in the real formats (no real weights here; ~25 s on 2 CPU cores)


def test_fan_files_given_as_files_are_checked_and_named(tmp_path):
    detector_file, landmarks_file = tmp_path / "a.pth", tmp_path / "b.pth"
    detector_file.write_bytes(b"present")
    with pytest.raises(CiinvError, match=f"{landmarks_file}, not found.*--file {FAN_LANDMARKS_FILE}"):
        make_detector("fan", fan_files=[detector_file, landmarks_file])
    with pytest.raises(CiinvError, match="needs 2 files"):
        make_detector("fan", fan_files=[detector_file])


# From models_dir, or as two files of any names elsewhere (the workflow's declared inputs: with a
# storage provider, the job's local copies).
@pytest.mark.slow
@pytest.mark.parametrize("given_as", ["models_dir", "files"])
def test_fan_runs_from_models_dir(tmp_path, given_as):
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(0)
    detector_file, landmarks_file = fan_model_files(tmp_path)
    if given_as == "files":
        (tmp_path / "copies").mkdir()
        detector_file, landmarks_file = tmp_path / "copies" / "detector.pth", tmp_path / "copies" / "landmarks.pth"
    # An S3FD whose only confident output is its coarsest anchor: exactly one box per frame.
    weights = s3fd().state_dict()
    for key, value in weights.items():
        if "mbox_conf" in key or "mbox_loc" in key:
            value.zero_()
        if "mbox_conf" in key and key.endswith("bias"):
            value[-1] = 2.0 if key.startswith("conv7_2") else -10.0
    torch.save({k: v.half() for k, v in weights.items()}, detector_file)
    torch.save({k: v.half() for k, v in FAN(4).state_dict().items()}, landmarks_file)
    hub_before = torch.hub.get_dir()

    frames = [np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)]
    if given_as == "files":
        result = detect_frames(frames, "fan", models_dir=tmp_path / "empty", fan_files=[detector_file, landmarks_file])
    else:
        result = detect_frames(frames, "fan", models_dir=tmp_path)
    assert result["detected"].all()
    assert result["points"].shape == (1, 68, 2) and np.isfinite(result["points"]).all()
    assert result["score"][0] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-4)  # softmax of (background 0, face 2)
    assert torch.hub.get_dir() == hub_before
