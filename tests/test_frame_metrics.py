"""The full-frame metrics (ciinv.frame_metrics): the face box, the seam, TL-ID/TG-ID and a clip streamed in chunks."""

import numpy as np
import pytest
import torch

from ciinv import frame_metrics as fm
from ciinv.faces.align import crop_face, ffhq_quads
from ciinv.faces.landmarks import dlib_detector


def _square(x0, y0, side):
    return np.array([[x0, y0], [x0, y0 + side], [x0 + side, y0 + side], [x0 + side, y0]], np.float32)


def test_face_box_is_the_quads_union_grown_by_the_margin_and_clipped():
    quads = np.stack([_square(40, 50, 100), _square(60, 40, 100)])
    assert fm.face_box(quads, (400, 300), margin=0.1) == (30, 30, 170, 160)
    assert fm.face_box(quads, (150, 150), margin=0.5) == (0, 0, 150, 150)
    with pytest.raises(ValueError):
        fm.face_box(np.zeros((0, 4, 2)), (10, 10))


def test_crop_in_frame_puts_a_crop_back_on_its_quad_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (12, 12, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    frame = smooth.copy()
    quad = _square(48.3, 52.7, 80)
    crop = crop_face(frame, quad, 64)
    back = fm.crop_in_frame(np.zeros_like(frame), crop, quad)
    inside = (slice(70, 110), slice(70, 110))
    assert np.abs(back[inside] - frame[inside]).mean() < 8  # bilinear twice, on 16-pixel blocks
    assert (back[:40] == 0).all() and (back[:, 140:] == 0).all()
    box = (30, 40, 150, 170)
    in_box = fm.crop_in_frame(fm.cut(np.zeros_like(frame), box), crop, quad, box)
    np.testing.assert_allclose(in_box, fm.cut(back, box), atol=1e-3)


def test_excess_edges_is_zero_for_constant_weights_and_grows_with_a_hard_seam():
    rng = torch.Generator().manual_seed(0)
    source = torch.rand(1, 3, 32, 32, generator=rng)
    render = (source * 0.3 + 0.6).clamp(0, 1)  # a different picture, brighter
    for w in (0.0, 0.4, 1.0):
        assert fm.excess_edges(w * render + (1 - w) * source, source, render).item() == pytest.approx(0, abs=1e-7)
    x = torch.arange(32).float().view(1, 1, 1, 32)
    hard = (x >= 16).float()
    soft = ((x - 8) / 16).clamp(0, 1)
    flat_source, flat_render = torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)
    seam_hard = fm.excess_edges(hard * flat_render, flat_source, flat_render).item()
    seam_soft = fm.excess_edges(soft * flat_render, flat_source, flat_render).item()
    # A unit step seen by central differences: 0.5² on two columns of 32; the ramp 1/16² on 16.
    assert seam_hard == pytest.approx(2 * 0.25 / 32, rel=1e-5)
    assert seam_soft == pytest.approx(16 / 256 / 32, rel=0.1)
    assert 0 < seam_soft < seam_hard


def test_identity_consistency_known_answers():
    e = np.eye(3)
    source = np.array([[1.0, 0, 0], [1, 0, 0], [1, 0, 0]])
    assert fm.identity_consistency(source, source) == {"tl_id": 1.0, "tg_id": 1.0}
    turned = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [1, 0, 0]])  # the middle frame drifts
    result = fm.identity_consistency(source, turned)
    assert result["tl_id"] == pytest.approx(0.6)  # adjacent pairs: 0.6, 0.6
    assert result["tg_id"] == pytest.approx((0.6 + 1 + 0.6) / 3)
    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in rng.normal(size=(2, 7, 5)) + 2)
    upper = np.triu_indices(7, k=1)
    expected = (b @ b.T)[upper].mean() / (a @ a.T)[upper].mean()
    assert fm.identity_consistency(a, b)["tg_id"] == pytest.approx(expected)
    with pytest.raises(ValueError):
        fm.identity_consistency(e[:1], e[:1])


@pytest.fixture(scope="module")
def clip():
    """Four frames of the astronaut clip, their landmarks and quads."""
    from ciinv.dev.sample import render_frames

    frames = render_frames(4, (192, 192), seed=1)
    detect = dlib_detector(track=False)
    points = np.stack([max(faces, key=lambda f: f.score).points for faces in [detect([f])[0] for f in frames]])
    return frames, points, ffhq_quads(points)


def test_face_embedder_finds_the_same_face_alike_and_noise_less_alike(clip):
    frames, points, _ = clip
    embed = fm.FaceEmbedder()
    vectors = embed(frames, points)
    assert vectors.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-6)
    assert vectors[0] @ vectors[1] > 0.95
    noise = np.random.default_rng(0).normal(0, 40, frames[:1].shape)
    noisy = embed(np.clip(frames[:1] + noise, 0, 255).astype(np.uint8), points[:1])
    assert noisy[0] @ vectors[0] < vectors[0] @ vectors[1]


def test_clip_measure_streams_chunks_and_scores_the_source_as_one(clip):
    from ciinv.models import load_flow

    frames, points, quads = clip
    box = fm.face_box(quads, (192, 192))
    frames, points = fm.cut(frames, box), points - np.array(box[:2])
    flow = load_flow("dis")
    rng = np.random.default_rng(0)
    flicker = np.clip(frames + rng.normal(0, 12, frames.shape), 0, 255).astype(np.uint8)
    whole = fm.ClipMeasure(flow, fm.FaceEmbedder())
    whole.add(frames, points, {"same": frames, "flicker": flicker}, renders={"same": frames.astype(np.float32)})
    chunked = fm.ClipMeasure(flow, fm.FaceEmbedder())
    for part in (slice(0, 3), slice(3, 4)):  # a one-frame chunk still adds its pair
        chunked.add(frames[part], points[part], {"same": frames[part], "flicker": flicker[part]},
                    renders={"same": frames[part].astype(np.float32)})
    a, b = whole.result(), chunked.result()
    assert a["same"] == {"rel_warp": pytest.approx(1.0), "seam": 0.0, "tl_id": pytest.approx(1.0),
                         "tg_id": pytest.approx(1.0)}
    assert a["flicker"]["rel_warp"] > 1.5 and a["flicker"]["seam"] is None
    assert b["flicker"]["rel_warp"] == pytest.approx(a["flicker"]["rel_warp"], rel=1e-5)
    assert b["source_warp"] == pytest.approx(a["source_warp"], rel=1e-5)
