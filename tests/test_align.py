"""Alignment: FFHQ quads, their temporal smoothing, and cropping (pasting back: test_paste.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ciinv.faces.align import align_video, crop_face, crop_transform, ffhq_quads, load_align
from ciinv.io.crops import open_crops
from ciinv.errors import CiinvError
from ciinv.io.video import VideoReader


def template_points() -> np.ndarray:
    """A [68, 2] landmark set whose eyes are centred at (∓1, 0) and mouth corners at (∓0.8, 2.2).

    Only the points the FFHQ recipe reads (36-47 eyes, 48 and 54 mouth corners) matter.
    """
    points = np.zeros((68, 2))
    ring = np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], axis=1) * 0.3
    points[36:42] = ring + [-1, 0]
    points[42:48] = ring + [1, 0]
    points[48] = [-0.8, 2.2]
    points[54] = [0.8, 2.2]
    return points


def similarity(points: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ (scale * np.array([[c, -s], [s, c]])).T + np.asarray(shift)


# ---------------------------------------------------------------------------------------------
# Quads


def test_quad_of_the_template_follows_the_ffhq_recipe():
    quad = ffhq_quads(template_points()[None], 0, 0)[0]
    # eye_to_eye (2, 0), eye_to_mouth (0, 2.2): x = (4, 0) (2·|e2e| = 4 > 1.8·2.2), y = (0, 4), c = (0, 0.22).
    np.testing.assert_allclose(quad, [[-4, -3.78], [-4, 4.22], [4, 4.22], [4, -3.78]], atol=1e-5)


@pytest.mark.parametrize("angle,scale,shift", [(0.3, 40.0, (300, 200)), (-0.5, 7.5, (20, -5)), (np.pi / 2, 100.0, (0, 0))])
def test_quad_rotates_and_scales_with_the_face(angle, scale, shift):
    base = ffhq_quads(template_points()[None], 0, 0)[0]
    moved = ffhq_quads(similarity(template_points(), angle, scale, shift)[None], 0, 0)[0]
    np.testing.assert_allclose(moved, similarity(base, angle, scale, shift), rtol=1e-5, atol=1e-3 * scale)


def centres_and_axes(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[F, 2] quad centres and [F, 2] half-width axes (the FFHQ script's c and x)."""
    return quads.mean(axis=1), (quads[:, 3] - quads[:, 0]) / 2


def test_smoothing_reduces_jitter_and_sigma_zero_is_per_frame():
    rng = np.random.default_rng(0)
    frames = 60
    clean = np.stack([similarity(template_points(), 0.1 + 0.002 * t, 30.0, (200 + t, 150)) for t in range(frames)])
    noisy = clean + rng.normal(0, 1.0, clean.shape)

    raw = ffhq_quads(noisy, 0, 0)
    per_frame = np.concatenate([ffhq_quads(noisy[t : t + 1], 0, 0) for t in range(frames)])
    np.testing.assert_array_equal(raw, per_frame)

    inner = slice(5, -5)  # away from the ends, where 'nearest' padding biases a moving face
    true_c, true_x = centres_and_axes(ffhq_quads(clean, 0, 0))
    raw_c, raw_x = centres_and_axes(raw)

    def error(estimate, truth):
        return np.abs(estimate - truth)[inner].mean()

    # The centre and the axes are smoothed separately, each by its own sigma.
    c, x = centres_and_axes(ffhq_quads(noisy, center_sigma=1.5, axes_sigma=0))
    assert error(c, true_c) < 0.6 * error(raw_c, true_c)
    np.testing.assert_allclose(x, raw_x, atol=1e-4)
    c, x = centres_and_axes(ffhq_quads(noisy, center_sigma=0, axes_sigma=3.0))
    np.testing.assert_allclose(c, raw_c, atol=1e-4)
    assert error(x, true_x) < 0.4 * error(raw_x, true_x)
    # Frame-to-frame jitter of the corners, with both.
    smooth = ffhq_quads(noisy, 1.0, 3.0)
    truth = ffhq_quads(clean, 0, 0)
    assert np.abs(np.diff(smooth - truth, axis=0)).mean() < 0.4 * np.abs(np.diff(raw - truth, axis=0)).mean()


# ---------------------------------------------------------------------------------------------
# Transforms and crops


def test_crop_transform_maps_the_crops_outer_corners_onto_the_quad():
    quad = similarity(np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]], float), 0.4, 50.0, (320, 240))
    crop_to_frame, frame_to_crop = crop_transform(quad, 256)
    corners = np.array([[-0.5, -0.5, 1], [-0.5, 255.5, 1], [255.5, 255.5, 1], [255.5, -0.5, 1]])
    np.testing.assert_allclose((corners @ crop_to_frame.T)[:, :2], quad, atol=1e-9)
    np.testing.assert_allclose(crop_to_frame @ frame_to_crop, np.eye(3), atol=1e-12)


def test_crop_of_an_axis_aligned_quad_is_the_frame_block():
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    # Pixels x 10..73, y 20..83: their outer corners are at 9.5 and 73.5 / 19.5 and 83.5.
    quad = np.array([[9.5, 19.5], [9.5, 83.5], [73.5, 83.5], [73.5, 19.5]])
    np.testing.assert_array_equal(crop_face(frame, quad, 64), frame[20:84, 10:74])
    # The same square seen with its top edge on the right: the crop is the block turned 90°.
    turned = np.roll(quad, -1, axis=0)  # corners: top-left is now the frame's bottom-left
    np.testing.assert_array_equal(crop_face(frame, turned, 64), np.rot90(frame[20:84, 10:74], k=-1))


def test_crop_interpolates_between_pixels():
    # Bilinear sampling is exact on a linear ramp: half a pixel to the right adds half a step.
    ramp = np.broadcast_to((2 * np.arange(100))[None, :, None], (60, 100, 3)).astype(np.uint8)
    quad = np.array([[10.0, 10.0], [10.0, 42.0], [42.0, 42.0], [42.0, 10.0]])  # x 10.5 … 41.5 by 1
    crop = crop_face(ramp, quad, 32)
    np.testing.assert_array_equal(crop[:, :, 0], np.broadcast_to(2 * np.arange(10, 42) + 1, (32, 32)))


def test_crop_of_a_large_face_is_antialiased():
    # Pixel noise shrunk 8× must average out (std ≈ 74/8), not alias through (std ≈ 50).
    frame = np.random.default_rng(2).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    crop = crop_face(frame, np.array([[-0.5, -0.5], [-0.5, 511.5], [511.5, 511.5], [511.5, -0.5]]), 64)
    assert crop.std() < 15, crop.std()


# ---------------------------------------------------------------------------------------------
# Whole videos


def test_align_video_writes_upright_crops_and_quads(tmp_path):
    from ciinv.faces.landmarks import detect_video, load_landmarks, save_landmarks
    from ciinv.dev.sample import make_clip

    # A phone-style clip: stored sideways, shown upright through rotation metadata.
    video = tmp_path / "my clip.mp4"
    make_clip(video, frames=6, size=(200, 256), audio=False, rotation=90)
    landmarks = tmp_path / "landmarks.npz"
    save_landmarks(landmarks, detect_video(video, detector="dlib"))

    align_video(video, landmarks, tmp_path / "align.npz", tmp_path / "crops.mkv", resolution=128, center_sigma=1.0,
                axes_sigma=2.0)
    crops = open_crops(tmp_path / "crops.mkv")
    assert (len(crops), crops.resolution) == (6, 128)
    # Exactly the per-frame crops of the upright frames (lossless storage).
    with VideoReader(video) as reader:
        for (index, frame), (_, stored) in zip(reader.frames(), crops.frames()):
            np.testing.assert_array_equal(stored, crop_face(frame, load_align(tmp_path / "align.npz")["quads"][index],
                                                           128))
    aligned = load_align(tmp_path / "align.npz")
    assert aligned["quads"].shape == (6, 4, 2) and aligned["quads"].dtype == np.float32
    assert aligned["resolution"] == 128
    np.testing.assert_allclose(aligned["sigmas"], [1.0, 2.0])
    np.testing.assert_array_equal(aligned["frame_size"], [200, 256])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    # In every crop the eyes sit level, left and right of the centre, a little above the middle.
    points = load_landmarks(landmarks)["points"]
    for quad, frame_points in zip(aligned["quads"], points):
        _, frame_to_crop = crop_transform(quad, 128)
        eyes = np.stack([frame_points[36:42].mean(0), frame_points[42:48].mean(0)])
        eyes = eyes @ frame_to_crop[:2, :2].T + frame_to_crop[:2, 2]
        assert abs(eyes[0, 1] - eyes[1, 1]) < 4
        assert 20 < eyes[0, 0] < 55 < 73 < eyes[1, 0] < 108
        assert 45 < eyes[:, 1].mean() < 64

    # A landmarks file with another frame count is refused, naming it; nothing is written.
    short = {k: v[:3] for k, v in np.load(landmarks).items()}
    np.savez(tmp_path / "short.npz", **short)
    with pytest.raises(CiinvError, match="short.npz"):
        align_video(video, tmp_path / "short.npz", tmp_path / "a2.npz", tmp_path / "crops2.mkv", resolution=64)
    assert not (tmp_path / "crops2.mkv").exists() and not (tmp_path / "a2.npz").exists()
