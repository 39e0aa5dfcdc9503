"""Alignment: FFHQ quads, their temporal smoothing, and cropping (pasting back: test_paste.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ciinv.faces.align import align_video, antialias, border_padding, crop_face, crop_transform, ffhq_quads, load_align
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
# Padding where the quad runs past the frame's edge


def ffhq_recipe_crop(image: np.ndarray, quad: np.ndarray, output_size: int, transform_size: int) -> np.ndarray:
    """The FFHQ recipe's crop of an H×W×3 uint8 image: NVlabs ffhq-dataset ``recreate_aligned_images``
    re-implemented step by step (shrink, crop, pad, transform, resize) with PIL, numpy and scipy as it
    does, for the quad it computes (ciinv's quads equal it; tested above). The reference for the tests.
    """
    import PIL.Image
    import scipy.ndimage

    img = PIL.Image.fromarray(image)
    quad = np.array(quad, np.float64)
    qsize = np.hypot(*(quad[3] - quad[0]))
    # Shrink.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), PIL.Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    low, high = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(low[0] - border, 0), max(low[1] - border, 0), min(high[0] + border, img.size[0]),
            min(high[1] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
    # Pad.
    low, high = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = (max(-low[0] + border, 0), max(-low[1] + border, 0), max(high[0] - img.size[0] + border, 0),
           max(high[1] - img.size[1] + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = img.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                          1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
        blur = qsize * 0.02
        img += (scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
        img = PIL.Image.fromarray(np.uint8(np.clip(np.rint(img), 0, 255)), "RGB")
        quad += pad[:2]
    # Transform.
    img = img.transform((transform_size, transform_size), PIL.Image.QUAD, (quad + 0.5).flatten(), PIL.Image.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), PIL.Image.LANCZOS)
    return np.asarray(img)


def mirror_crop(frame: np.ndarray, quad: np.ndarray, resolution: int) -> np.ndarray:
    """The crop as ciinv cut it before the recipe's padding: the frame mirrored sharply past its edge."""
    crop_to_frame, _ = crop_transform(quad, resolution)
    image, crop_to_image = antialias(frame, crop_to_frame)
    return cv2.warpAffine(image, crop_to_image[:2], (resolution, resolution),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)


# The FFHQ quad of dlib's 68 landmarks on skimage.data.astronaut() (512×512): a 175-pixel square
# around the face, 14 pixels below the photo's top edge.
ASTRONAUT_QUAD = np.array([[142.28452, 14.354407], [132.62941, 189.04048], [307.3155, 198.69559],
                           [316.97058, 24.009523]])


def crop_pixels_in_frame(quad: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame coordinates (x, y), each [R, R], of the crop's pixel centres."""
    crop_to_frame, _ = crop_transform(quad, resolution)
    u = np.arange(resolution, dtype=np.float64)
    x = crop_to_frame[0, 0] * u[None, :] + crop_to_frame[0, 1] * u[:, None] + crop_to_frame[0, 2]
    y = crop_to_frame[1, 0] * u[None, :] + crop_to_frame[1, 1] * u[:, None] + crop_to_frame[1, 2]
    return x, y


def frame_regions(quad: np.ndarray, resolution: int, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """[R, R] masks of the crop's pixels (in frame, out of frame).

    In frame: the pixel's centre maps inside the frame's pixel centres (the face and whatever of
    its surroundings the frame shows). Out of frame: it maps more than one frame pixel outside
    the frame (the padding alone; the pixels in between mix both).
    """
    x, y = crop_pixels_in_frame(quad, resolution)
    width, height = frame_size
    in_frame = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    out_of_frame = (x < -1) | (x > width) | (y < -1) | (y > height)
    return in_frame, out_of_frame


def psnr_db(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    error = (a.astype(np.float64) - b.astype(np.float64))[where]
    return float(10 * np.log10(255.0**2 / np.mean(error**2)))


def astronaut_at_the_edge(cut: int, upscale: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(frame, quad): astronaut() (enlarged ``upscale``× by bicubic) with its ``cut``·upscale left columns
    removed, so the face's quad runs past the frame's left edge (and, enlarged, near its top)."""
    from skimage.data import astronaut

    image = astronaut()
    if upscale > 1:
        image = cv2.resize(image, (512 * upscale, 512 * upscale), interpolation=cv2.INTER_CUBIC)
    quad = (ASTRONAUT_QUAD + 0.5) * upscale - 0.5  # pixel centres on integers, before and after
    return np.ascontiguousarray(image[:, cut * upscale:]), quad - [cut * upscale, 0]


@pytest.mark.parametrize("cut,upscale,resolution", [
    (180, 1, 256),  # 47 of the quad's 175 pixels past the left edge; a close-up: the crop enlarges the frame
    (180, 3, 128),  # the same face 3× larger: the recipe first shrinks the frame 2× (quad > 4× the crop)
])
def test_crop_at_the_frame_edge_is_padded_as_the_ffhq_recipe(cut, upscale, resolution):
    frame, quad = astronaut_at_the_edge(cut, upscale)
    reference = ffhq_recipe_crop(frame, quad, resolution, 4 * resolution)
    in_frame, out_of_frame = frame_regions(quad, resolution, (frame.shape[1], frame.shape[0]))
    assert in_frame.mean() > 0.5 and out_of_frame.mean() > 0.1

    # The band inside the edge that the recipe softens (where the sharp mirror differed inside the frame).
    padding = border_padding(quad, (frame.shape[1], frame.shape[0]), resolution)
    band = in_frame & (padding.depth(*crop_pixels_in_frame(quad, resolution)) > -1 / 3)

    crop = crop_face(frame, quad, resolution)
    before = mirror_crop(frame, quad, resolution)
    for name, image in [("mirror (before)", before), ("ffhq padding", crop)]:
        print(f"cut {cut} upscale {upscale} R {resolution}: {name}: "
              f"in frame {psnr_db(image, reference, in_frame):.1f} dB "
              f"(softened band inside the edge {psnr_db(image, reference, band):.1f} dB), "
              f"out of frame {psnr_db(image, reference, out_of_frame):.1f} dB")
    assert psnr_db(crop, reference, out_of_frame) >= 35
    assert psnr_db(before, reference, out_of_frame) < 25  # the sharp mirrored half-face the padding removes
    if upscale == 1:
        assert psnr_db(crop, reference, in_frame) >= 44
    else:
        # Shrinking a large face, the recipe (Lanczos, bilinear at 4×, Lanczos) and ciinv (area, then
        # bilinear) resample differently everywhere: the padding must cost nothing on top of that.
        inside = frame_regions(ASTRONAUT_QUAD * upscale, resolution, (512 * upscale,) * 2)[0]
        full, whole_quad = astronaut_at_the_edge(0, upscale)
        resampling = psnr_db(crop_face(full, whole_quad, resolution), ffhq_recipe_crop(full, whole_quad, resolution,
                                                                                   4 * resolution), inside)
        assert psnr_db(crop, reference, in_frame) >= resampling - 0.5


def test_crop_inside_the_frame_is_not_padded_and_padding_changes_only_near_the_edge():
    from skimage.data import astronaut

    frame = astronaut()
    # The quad comes 14 pixels from the top, more than 4 inside the recipe's margin (18): no padding.
    assert border_padding(ASTRONAUT_QUAD, (512, 512), 256) is None
    np.testing.assert_array_equal(crop_face(frame, ASTRONAUT_QUAD, 256), mirror_crop(frame, ASTRONAUT_QUAD, 256))
    # 12 pixels closer to the top (2 from it) the recipe pads, and softens a band inside the edge. Past the
    # band (a third of the padding's reach) the frame is sampled as it is.
    frame, quad = astronaut_at_the_edge(0)
    frame, quad = np.ascontiguousarray(frame[12:]), quad - [0, 12]
    padding = border_padding(quad, (512, 500), 256)
    assert padding is not None and padding.content[1] == 0
    crop, before = crop_face(frame, quad, 256), mirror_crop(frame, quad, 256)
    _, y = crop_pixels_in_frame(quad, 256)
    changed = (crop != before).any(axis=2)
    assert changed.any() and y[changed].max() < padding.reach[1] / 3 + 1
    far = y > padding.reach[1] / 3 + 1
    np.testing.assert_array_equal(crop[far], before[far])


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
