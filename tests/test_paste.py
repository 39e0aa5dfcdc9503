"""Pasting crops back: an unedited crop restores its frame, an edited one replaces the face only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.ndimage import binary_erosion
from skimage import data

from ciinv.faces.align import crop_face, crop_transform, ffhq_quads
from ciinv.faces.paste import ellipse_mask, paste_back

ASTRONAUT = data.astronaut()


def frame_to_crop_coords(quad: np.ndarray, resolution: int, shape) -> tuple[np.ndarray, np.ndarray]:
    """Crop coordinates (u, v) of every frame pixel centre."""
    _, frame_to_crop = crop_transform(quad, resolution)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    u = frame_to_crop[0, 0] * xs + frame_to_crop[0, 1] * ys + frame_to_crop[0, 2]
    v = frame_to_crop[1, 0] * xs + frame_to_crop[1, 1] * ys + frame_to_crop[1, 2]
    return u, v


@pytest.fixture(scope="module")
def astronaut_scene():
    """A 720p frame holding the astronaut at a realistic scale, and dlib's quad for it (face ≈ 240 px)."""
    from ciinv.faces.landmarks import dlib_detector

    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[10:710, 300:1000] = cv2.resize(ASTRONAUT, (700, 700), interpolation=cv2.INTER_CUBIC)
    (faces,) = dlib_detector()([frame])
    quad = ffhq_quads(faces[0].points[None], 0, 0)[0]
    return frame, quad


@pytest.mark.parametrize("resolution", [256, 512])
def test_unedited_crop_pastes_back_to_the_frame(astronaut_scene, resolution):
    frame, quad = astronaut_scene
    crop = crop_face(frame, quad, resolution)
    out = paste_back(frame, crop, quad)

    u, v = frame_to_crop_coords(quad, resolution, frame.shape)
    in_crop = (u > -0.5) & (u < resolution - 0.5) & (v > -0.5) & (v < resolution - 0.5)
    iu = np.clip(np.rint(u), 0, resolution - 1).astype(int)
    iv = np.clip(np.rint(v), 0, resolution - 1).astype(int)
    mask = ellipse_mask(resolution, 0.1)

    face = in_crop & (mask[iv, iu] > 0.99)
    assert face.sum() > 15_000
    mse = ((out.astype(float) - frame.astype(float)) ** 2)[face].mean()
    psnr = 10 * np.log10(255.0**2 / mse)
    assert psnr > 35.0, psnr

    # Outside the mask (with a margin for the resampling filters) the frame is untouched, bit for bit.
    crop_pixels_per_frame_pixel = resolution / np.linalg.norm(quad[3] - quad[0])
    margin = int(np.ceil(2 * crop_pixels_per_frame_pixel + 2))
    zero = binary_erosion(mask == 0, iterations=margin, border_value=1)
    untouched = ~in_crop | zero[iv, iu]
    assert (in_crop & untouched).sum() > 1000  # the crop's corners are part of the check
    np.testing.assert_array_equal(out[untouched], frame[untouched])


def test_paste_back_puts_the_edited_face_in_and_leaves_the_rest(astronaut_scene):
    frame, quad = astronaut_scene
    white = np.full((256, 256, 3), 255, np.uint8)
    out = paste_back(frame, white, quad)
    u, v = frame_to_crop_coords(quad, 256, frame.shape)
    centre = (np.abs(u - 128) < 40) & (np.abs(v - 138) < 40)
    assert (out[centre] == 255).all()
    outside = (u < -2) | (u > 258) | (v < -2) | (v > 258)
    np.testing.assert_array_equal(out[outside], frame[outside])
    assert out.dtype == np.uint8 and out.shape == frame.shape


def test_paste_back_of_a_quad_partly_outside_the_frame():
    frame = np.full((100, 120, 3), 7, np.uint8)
    quad = np.array([[60, -40], [60, 140], [240, 140], [240, -40]], float)
    out = paste_back(frame, np.full((64, 64, 3), 200, np.uint8), quad)
    assert out.shape == frame.shape and (out[:, :60] == 7).all() and (out[50, 119] > 7).all()
