"""Pasting crops back: an unedited crop restores its frame, an edited one replaces the face only."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt
from skimage import data

from ciinv.faces.align import crop_face, crop_transform, ffhq_quads
from ciinv.faces.paste import (PasteSettings, TemporalSmoother, clip_masks, ellipse_mask, face_masks,
                               interpolated_stream, key_frame_masks, landmark_polygon, paste_back,
                               smooth_over_time, soften)

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


# --------------------------------------------------------------------------------------------
# The masks: parser, landmarks, ellipse; their soft edge; the smoothing over time


class ColourParser(torch.nn.Module):
    """A stand-in for the face parser with known answers: skin (1) where red outweighs blue, hair
    (17) where green outweighs red, background (0) elsewhere. Logits [N, 19, H, W] at the input
    size, from ``forward`` and, as ``FaceParser`` splits it, from ``coarse_logits`` of the
    ``normalize``d images (here the identity, and a coarse grid as fine as the input)."""

    @staticmethod
    def normalize(images):
        return images

    def coarse_logits(self, images):
        return self(images)

    def forward(self, images):
        red, green, blue = images[:, 0], images[:, 1], images[:, 2]
        logits = torch.zeros(images.shape[0], 19, *images.shape[-2:])
        logits[:, 0] = 0.5
        logits[:, 1] = 4 * (red - blue)
        logits[:, 17] = 4 * (green - red)
        return logits


def blobs(resolution, boxes, channel=0):
    """uint8 tensor [N, 3, R, R]: per image one bright box (y0, y1, x0, x1) in ``channel``."""
    images = torch.zeros(len(boxes), 3, resolution, resolution, dtype=torch.uint8)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        images[k, channel, y0:y1, x0:x1] = 255
    return images


def test_the_parser_mask_is_the_union_of_the_source_and_render_faces_grown_and_feathered():
    settings = PasteSettings(mask="parser", parser_size=256, dilate=32, erode=16, feather=16, temporal_sigma=0)
    resolution = 256  # radii at 1024² scale to 8, 4, 4 here
    source = blobs(resolution, [(60, 140, 40, 120), (80, 160, 80, 160)])
    rendered = blobs(resolution, [(80, 180, 100, 180), (80, 160, 80, 160)])
    masks = face_masks(settings, rendered, source=source, parser=ColourParser())
    assert masks.shape == (2, resolution, resolution) and masks.dtype == np.float32
    assert masks.min() == 0.0 and masks.max() == 1.0
    both = (source[:, 0] > 0).numpy() | (rendered[:, 0] > 0).numpy()
    # Both faces are pasted whole (dilate - erode >= feather; the blur kernel's square corners
    # take a little at the region's corners).
    assert masks[both].min() > 0.98 and (masks[both] == 1.0).mean() > 0.95
    # 0 beyond dilate - erode + feather = 8 px (Chebyshev: the kernel is square), and a little more
    # in the notch where the two faces meet, which growing then shrinking fills.
    far = binary_dilation(both, np.ones((1, 23, 23), bool))
    assert (masks[~far] == 0.0).all()
    assert masks[0].sum() > masks[1].sum()  # the first frame's two faces differ: its union is larger


@pytest.mark.parametrize("hair", [False, True])
def test_hair_is_pasted_only_when_asked(hair):
    settings = PasteSettings(mask="parser", parser_size=64, hair=hair, dilate=0, erode=0, feather=0)
    face = blobs(64, [(10, 30, 10, 30)])
    hairy = face | blobs(64, [(40, 60, 10, 30)], channel=1)
    masks = face_masks(settings, hairy, source=face, parser=ColourParser())
    assert masks[0, 20, 20] == 1.0 and masks[0, 50, 20] == float(hair) and masks[0, 5, 50] == 0.0
    assert (17 in settings.excluded_classes()) == (not hair)
    assert settings.excluded_classes()[:1] == [0] and 16 in settings.excluded_classes()


def test_the_parser_reads_crops_at_its_own_size_whatever_the_crops():
    """A 256² render and 128² source crops, parsed at 64²: the mask is the render's size."""
    settings = PasteSettings(mask="parser", parser_size=64, dilate=0, erode=0, feather=0)
    rendered, source = blobs(256, [(64, 128, 64, 128)]), blobs(128, [(64, 96, 64, 96)])
    masks = face_masks(settings, rendered, source=source, parser=ColourParser())
    assert masks.shape == (1, 256, 256)
    assert masks[0, 70:120, 70:120].all() and masks[0, 140:180, 140:180].all() and not masks[0, :50].any()


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_the_parser_regions_are_the_labels_of_its_logits_at_the_crops_pixels(tmp_path, resolution):
    """The real (tiny) parser: at the crop's own size the face is where forward's argmax is not an
    excluded class; a smaller crop reads the same logit field at its pixel centres (no 19-channel
    map of parser_size² is made); a larger one enlarges the labels at parser_size."""
    import torch.nn.functional as F

    from ciinv.dev.tiny import write_tiny_parser
    from ciinv.faces.paste import parser_regions
    from ciinv.models import load_parser

    write_tiny_parser(tmp_path / "parser.pth")
    parser = load_parser(tmp_path / "parser.pth")
    crops = torch.randint(0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    excluded = PasteSettings().excluded_classes()
    found = parser_regions(parser, [crops], excluded, 64, resolution)
    assert found.shape == (2, resolution, resolution) and found.dtype == torch.bool
    logits = parser(crops.float() / 255)  # [2, 19, 64, 64]: forward at the parser size (the crops' own)
    if resolution <= 64:
        # Centres of the crop's pixels in the parser's pixels, then bilinearly in forward's logits.
        centres = (torch.arange(resolution) + 0.5) * 64 / resolution - 0.5
        grid = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1) / 63 * 2 - 1
        logits = F.grid_sample(logits, grid.expand(2, -1, -1, -1), align_corners=True)
    labels = logits.argmax(dim=1)
    face = ~torch.isin(labels, torch.tensor(excluded))
    if resolution > 64:
        face = F.interpolate(face[:, None].float(), size=(resolution, resolution), mode="bilinear")[:, 0] > 0.5
    assert 0.05 < face.float().mean() < 0.95  # a mix of classes: the comparison means something
    assert (found == face).float().mean() > 0.995  # (resampling forward's output is not exactly the field)
    # The fused copy the masks are made with finds the same regions (to float rounding at class borders).
    assert (parser_regions(parser.fused(), [crops], excluded, 64, resolution) == found).float().mean() > 0.999


@pytest.mark.parametrize("channels, side, size", [(3, 64, 512), (3, 37, 64), (1, 300, 1024), (3, 64, 100)])
def test_small_crops_are_enlarged_as_torch_does(channels, side, size):
    """On the CPU the parser's input (and a face region larger than parser_size) is enlarged by
    OpenCV: the bilinear sampling of ``F.interpolate(align_corners=False)``, channels-last."""
    import torch.nn.functional as F

    from ciinv.faces.paste import _resized

    images = torch.rand(2, channels, side, side, generator=torch.Generator().manual_seed(side))
    grown = _resized(images, size)
    assert grown.shape == (2, channels, size, size) and grown.is_contiguous(memory_format=torch.channels_last)
    expected = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    torch.testing.assert_close(grown, expected, rtol=0, atol=1e-5)


def test_the_landmarks_polygon_covers_the_face(astronaut_scene):
    from ciinv.faces.landmarks import dlib_detector

    frame, quad = astronaut_scene
    (faces,) = dlib_detector()([frame])
    points = faces[0].points
    region = landmark_polygon(points, quad, 256)
    _, frame_to_crop = crop_transform(quad, 256)
    inner = points[27:68] @ frame_to_crop[:2, :2].T + frame_to_crop[:2, 2]  # nose, eyes, mouth
    u, v = np.rint(inner).astype(int).T
    assert region[v, u].all()
    assert 0.2 < region.mean() < 0.6  # the face, not the crop
    assert not region[:20].any() and not region[:, :15].any() and not region[:, -15:].any()
    settings = PasteSettings(mask="landmarks", temporal_sigma=0)
    (mask,) = face_masks(settings, np.zeros((1, 3, 256, 256), np.uint8), points=points[None], quads=quad[None])
    assert mask[region].min() > 0.99 and mask.mean() > region.mean() and mask[0, 0] == 0.0


def test_the_ellipse_is_the_old_paste_back_region():
    (mask,) = face_masks(PasteSettings(mask="ellipse"), np.zeros((1, 3, 64, 64), np.uint8))
    np.testing.assert_array_equal(mask, ellipse_mask(64, 0.1))


def test_the_soft_edge_falls_from_exactly_one_to_exactly_zero():
    region = np.zeros((200, 200), bool)
    region[80:120, 80:120] = True
    mask = soften(region, dilate=12, erode=6, feather=6)
    distance = distance_transform_edt(~region)
    assert mask[region].min() > 0.99 and (mask[region] == 1.0).mean() > 0.95
    # 0 beyond dilate - erode + feather (√2·feather at the blur kernel's square corners).
    assert (mask[distance > 6 + 6 * np.sqrt(2)] == 0.0).all() and (mask[distance > 12] == 0.0).mean() > 0.99
    assert 0 < mask[distance == 6].min() and mask[distance == 6].max() < 1
    assert (mask >= 0).all() and (mask <= 1).all()


def test_sizes_are_given_at_1024_and_scaled():
    settings = PasteSettings(dilate=50, erode=25, feather=25)
    assert settings.radii(1024) == (50, 25, 25) and settings.radii(512) == (25, 12, 12)
    assert settings.radii(64) == (3, 2, 2)


def test_smoothing_over_time_steadies_a_flickering_edge():
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(30):  # a face region whose edge jitters by a few pixels from frame to frame
        region = np.zeros((64, 64), bool)
        top, left = 16 + rng.integers(-3, 4, 2)
        region[top:top + 32, left:left + 32] = True
        masks.append(soften(region, 4, 2, 2))
    masks = np.stack(masks)
    smoothed = smooth_over_time(masks, sigma=1.0)
    change = lambda m: np.abs(np.diff(m, axis=0)).mean()  # noqa: E731
    assert change(smoothed) < 0.5 * change(masks), (change(smoothed), change(masks))
    assert smoothed.shape == masks.shape and smoothed.dtype == np.float32
    # Where every frame's mask is 0 the smoothed one is exactly 0; 1 everywhere stays 1.
    assert (smoothed[:, masks.max(axis=0) == 0] == 0).all()
    assert (smoothed[:, masks.min(axis=0) == 1] == 1).all()
    np.testing.assert_array_equal(smooth_over_time(masks, 0), masks)


def test_the_stream_smooths_as_the_whole_clip_and_holds_three_sigma_of_look_ahead():
    rng = np.random.default_rng(1)
    masks = rng.random((11, 8, 8)).astype(np.float32)
    smoother = TemporalSmoother(1.0)
    out, waited = [], []
    for index, mask in enumerate(masks):
        done = smoother.push(mask, index)
        waited.append(len(done))
        out += done
    out += smoother.finish()
    assert waited[:3] == [0, 0, 0] and waited[3:] == [1] * 8  # ceil(3σ) = 3 frames of look-ahead
    assert [item for _, item in out] == list(range(11))
    np.testing.assert_allclose(np.stack([m for m, _ in out]), smooth_over_time(masks, 1.0), rtol=0, atol=1e-7)
    # Frame 5 (far from the ends) is the Gaussian average of frames 2..8.
    weights = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    np.testing.assert_allclose(out[5][0], np.tensordot(weights / weights.sum(), masks[2:9], axes=1), atol=1e-6)


# --------------------------------------------------------------------------------------------
# The parser on key frames only (paste.parser_every), the masks between interpolated


def moving_faces(count: int, resolution: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(rendered, source) uint8 [count, 3, R, R]: a reddish face (ColourParser's skin) that slides
    right a pixel a frame, in the render a little lower than in the source."""
    boxes = [(14, 40, 10 + k, 36 + k) for k in range(count)]
    return blobs(resolution, [(y0 + 4, y1 + 4, x0, x1) for y0, y1, x0, x1 in boxes]), blobs(resolution, boxes)


def test_the_key_frames_are_every_kth_and_the_last_and_only_for_the_parser():
    def keys(settings, count):
        return np.flatnonzero(settings.key_frames(count)).tolist()

    assert keys(PasteSettings(mask="parser", parser_every=4), 10) == [0, 4, 8, 9]
    assert keys(PasteSettings(mask="parser", parser_every=4), 9) == [0, 4, 8]
    assert keys(PasteSettings(mask="parser", parser_every=1), 5) == [0, 1, 2, 3, 4]
    assert keys(PasteSettings(mask="parser", parser_every=8), 1) == [0]
    assert keys(PasteSettings(mask="landmarks", parser_every=4), 6) == list(range(6))
    assert keys(PasteSettings(mask="ellipse", parser_every=4), 6) == list(range(6))
    from ciinv.errors import CiinvError

    with pytest.raises(CiinvError, match="paste/parser_every"):
        PasteSettings(parser_every=0)


def test_parsing_every_frame_gives_todays_masks_exactly():
    rendered, source = moving_faces(7)
    settings = PasteSettings(mask="parser", parser_size=64, parser_every=1)
    today = smooth_over_time(face_masks(settings, rendered, source=source, parser=ColourParser()), 1.0)
    np.testing.assert_array_equal(clip_masks(settings, rendered, source=source, parser=ColourParser()), today)


@pytest.mark.parametrize("count", [9, 10])  # a multiple of k plus one (the last frame is 4k) and not
def test_between_key_frames_the_masks_are_the_key_masks_interpolated(count):
    rendered, source = moving_faces(count)
    every = PasteSettings(mask="parser", parser_size=64, parser_every=1, temporal_sigma=0)
    keyed = dataclasses.replace(every, parser_every=4)
    parsed = clip_masks(every, rendered, source=source, parser=ColourParser())
    masks = clip_masks(keyed, rendered, source=source, parser=ColourParser())
    keys = [0, 4, 8] + ([9] if count == 10 else [])
    np.testing.assert_array_equal(masks[keys], parsed[keys])  # key frames: as if every frame were parsed
    for index in range(count):
        if index in keys:
            continue
        before = max(k for k in keys if k < index)
        after = min(k for k in keys if k > index)
        t = (index - before) / (after - before)
        np.testing.assert_allclose(masks[index], (1 - t) * parsed[before] + t * parsed[after], rtol=0, atol=1e-6)
        both_zero = (parsed[before] == 0) & (parsed[after] == 0)
        assert both_zero.sum() > 1000 and (masks[index][both_zero] == 0).all()  # zero stays exactly zero
        assert (masks[index][(parsed[before] == 1) & (parsed[after] == 1)] == 1).all()
        assert not np.array_equal(masks[index], parsed[index])  # the face moved: interpolated, not parsed
    # The smoothing over time then runs on the filled-in masks, as before.
    smoothed = clip_masks(dataclasses.replace(keyed, temporal_sigma=1.0), rendered, source=source,
                          parser=ColourParser())
    np.testing.assert_array_equal(smoothed, smooth_over_time(masks, 1.0))


def test_only_the_key_frames_are_parsed_and_a_run_without_one_parses_nothing():
    rendered, source = moving_faces(10)
    settings = PasteSettings(mask="parser", parser_size=64, parser_every=4, temporal_sigma=0)

    class Counting(ColourParser):
        parsed = 0

        def coarse_logits(self, images):
            Counting.parsed += images.shape[0]
            return super().coarse_logits(images)

    masks = key_frame_masks(settings, range(5, 8), 10, rendered[5:8], source=source[5:8], parser=Counting())
    assert masks == [None, None, None] and Counting.parsed == 0
    masks = key_frame_masks(settings, range(3, 10), 10, rendered[3:10], source=source[3:10], parser=Counting())
    assert [m is not None for m in masks] == [False, True, False, False, False, True, True]
    assert Counting.parsed == 2 * 3  # frames 4, 8 and 9, each source and render


def test_the_interpolating_stream_holds_the_frames_up_to_the_next_key_frame():
    rng = np.random.default_rng(3)
    keys = {0: rng.random((4, 4)).astype(np.float32), 3: rng.random((4, 4)).astype(np.float32),
            4: rng.random((4, 4)).astype(np.float32)}
    pushed = []

    def frames():
        for index in range(5):
            pushed.append(index)
            yield keys.get(index), index

    out = []
    for mask, index in interpolated_stream(frames()):
        out.append((index, mask, len(pushed)))
    assert [index for index, _, _ in out] == [0, 1, 2, 3, 4]
    assert [seen for _, _, seen in out] == [1, 4, 4, 4, 5]  # frames 1 and 2 wait for frame 3
    np.testing.assert_allclose(out[1][1], keys[0] + (keys[3] - keys[0]) / 3, atol=1e-6)
    with pytest.raises(ValueError, match="last frame"):
        list(interpolated_stream([(keys[0],), (None,)]))
    with pytest.raises(ValueError, match="first frame"):
        list(interpolated_stream([(None,), (keys[0],)]))


@pytest.mark.parametrize("kind, every", [("parser", 1), ("parser", 2), ("landmarks", 1), ("ellipse", 1)])
def test_where_the_final_mask_is_zero_the_frame_is_the_sources_bit_for_bit(astronaut_scene, kind, every):
    """The frame pixels whose (warped) final mask is 0 come back unchanged, for every mask kind (and
    with the parser on key frames only: frame 1 of 3 interpolated)."""
    from ciinv.faces.landmarks import dlib_detector

    frame, quad = astronaut_scene
    resolution = 256
    source = crop_face(frame, quad, resolution)
    rng = np.random.default_rng(2)
    # "Edits": the face moved a little, with noise everywhere (the render gets everything a bit wrong).
    edited = np.stack([np.clip(np.roll(source, 6 * k, axis=1) + rng.normal(0, 8, source.shape), 0, 255)
                       for k in range(3)]).astype(np.uint8)
    (faces,) = dlib_detector()([frame])
    points, quads = np.repeat(faces[0].points[None], 3, 0), np.repeat(quad[None], 3, 0)
    as_tensor = lambda images: torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # noqa: E731
    sources = as_tensor(np.repeat(source[None], 3, 0))
    # The parser stand-in finds the face where the crop is reddish: a region with holes and islands.
    masks = clip_masks(PasteSettings(mask=kind, parser_size=128, parser_every=every, temporal_sigma=1.0),
                       as_tensor(edited), source=sources, points=points, quads=quads, parser=ColourParser())
    assert 0 < (masks == 0).mean() < 1
    # The mask is 0 outside the crop too: pad it, and look up every frame pixel's nearest mask pixel.
    # A frame pixel reads the mask's 2×2 bilinear neighbours (after area-averaging, a few more).
    margin = int(np.ceil(2 * resolution / np.linalg.norm(quad[3] - quad[0]) + 2))
    u, v = frame_to_crop_coords(quad, resolution, frame.shape)
    iu = np.clip(np.rint(u) + 2 * margin, 0, resolution + 4 * margin - 1).astype(int)
    iv = np.clip(np.rint(v) + 2 * margin, 0, resolution + 4 * margin - 1).astype(int)
    for crop, mask in zip(edited, masks):
        out = paste_back(frame, crop, quad, mask)
        padded = np.pad(mask, 2 * margin)
        untouched = binary_erosion(padded == 0, iterations=margin, border_value=1)[iv, iu]
        pasted = (padded == 1)[iv, iu]
        assert untouched.sum() > 1000 and pasted.sum() > 1000
        np.testing.assert_array_equal(out[untouched], frame[untouched])
        assert not np.array_equal(out[pasted], frame[pasted])


def test_paste_settings_come_from_the_schema():
    from ciinv.config import defaults
    from ciinv.errors import CiinvError

    assert dataclasses.asdict(PasteSettings()) | {"exclude": list(PasteSettings().exclude)} == defaults("paste")
    assert PasteSettings.from_dict({"mask": "landmarks"}).mask == "landmarks"
    with pytest.raises(CiinvError, match="paste/exclude"):
        PasteSettings.from_dict({"exclude": ["skin", "fur"]})
    with pytest.raises(CiinvError, match="paste/mask"):
        PasteSettings(mask="circle")


def test_the_excluded_classes_are_named_as_the_parser_labels_them():
    from ciinv.faces.paste import PARSER_CLASSES
    from ciinv.models.parser import PARSER_LABELS

    assert PARSER_CLASSES == PARSER_LABELS
