"""FlowNet2: correlation maths, NVIDIA's checkpoint layout, loader errors, and the resize path.

Random weights cannot tell whether a flow is *accurate*; that needs NVIDIA's real checkpoint
(a benchmark, not a test). Here the flow convention is pinned by the pieces that do not need
trained weights: warp (tests/test_warp.py: warp(b, flow) reproduces a for a known translation),
NVIDIA's architecture (key names, shapes and the exact parameter count of the real file), and the
mapping of flows between the input size and the network's multiple-of-64 size.
"""

from __future__ import annotations

import pytest
import torch

from ciinv.errors import CiinvError
from ciinv.models.flownet2 import (
    CORRELATION_CHANNELS,
    FlowNet2,
    correlation,
    load_flownet2,
    network_size,
    resize_flow,
)
from ciinv.dev.tiny import write_tiny_flownet2


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("flownet2") / "FlowNet2_checkpoint.pth.tar"
    write_tiny_flownet2(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_path):
    return load_flownet2(tiny_path)


def frames(n=2, h=70, w=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.rand(n, 3, h, w, generator=g)


# ----------------------------------------------------------------------------------------------
# Correlation


def correlation_reference(f1, f2, max_displacement, stride):
    """Loops over displacements, pixels and channels, skipping positions outside f2."""
    n, c, h, w = f1.shape
    r = max_displacement // stride
    k = 2 * r + 1
    out = torch.zeros(n, k * k, h, w, dtype=f1.dtype)
    for b in range(n):
        for j in range(-r, r + 1):
            for i in range(-r, r + 1):
                for y in range(h):
                    for x in range(w):
                        y2, x2 = y + stride * j, x + stride * i
                        if 0 <= y2 < h and 0 <= x2 < w:
                            total = sum(f1[b, ch, y, x].item() * f2[b, ch, y2, x2].item() for ch in range(c))
                            out[b, (j + r) * k + (i + r), y, x] = total / c
    return out


@pytest.mark.parametrize("max_displacement, stride", [(20, 2), (3, 1)])
def test_correlation_matches_naive_loop(max_displacement, stride):
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    f2 = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)

    out = correlation(f1, f2, max_displacement, stride)

    torch.testing.assert_close(out, correlation_reference(f1, f2, max_displacement, stride), rtol=0, atol=1e-12)


def test_correlation_of_flownetc_has_441_channels_and_the_zero_shift_in_the_middle():
    f = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    out = correlation(f, f)
    assert out.shape == (1, CORRELATION_CHANNELS, 6, 7) and CORRELATION_CHANNELS == 441
    torch.testing.assert_close(out[:, 220], (f * f).mean(dim=1))


# ----------------------------------------------------------------------------------------------
# Checkpoint layout


def test_architecture_matches_nvidias_checkpoint():
    with torch.device("meta"):
        model = FlowNet2()
    state = model.state_dict()
    # The counts of NVIDIA's published FlowNet2_checkpoint.pth.tar.
    assert len(state) == 220
    assert sum(p.numel() for p in model.parameters()) == 162_518_834
    assert state["flownetc.conv3_1.0.weight"].shape == (256, 473, 3, 3)
    assert state["flownets_d.deconv4.0.weight"].shape == (1026, 256, 4, 4)
    assert state["flownetfusion.inter_conv0.0.weight"].shape == (16, 82, 3, 3)
    assert "flownets_1.upsampled_flow6_to_5.bias" not in state
    assert "flownetc.upsampled_flow6_to_5.bias" in state


def test_tiny_checkpoint_has_nvidias_file_layout(tiny_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    assert set(ckpt) == {"epoch", "state_dict", "best_EPE"}
    state = ckpt["state_dict"]
    with torch.device("meta"):
        assert set(state) == set(FlowNet2().state_dict())
    assert state["flownetc.conv1.0.weight"].shape[:2] == (64 // 16, 3)
    assert state["flownetc.conv3_1.0.weight"].shape[1] == state["flownetc.conv_redir.0.weight"].shape[0] + 441
    assert state["flownets_1.conv1.0.weight"].shape[1] == 12
    assert state["flownets_d.conv0.0.weight"].shape[1] == 6
    assert state["flownetfusion.conv0.0.weight"].shape[1] == 11
    assert state["flownetfusion.predict_flow0.weight"].shape[0] == 2
    assert state["flownets_2.upsampled_flow3_to_2.weight"].shape == (2, 2, 4, 4)


def test_tiny_checkpoint_is_deterministic_per_seed(tmp_path):
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        write_tiny_flownet2(tmp_path / name, seed=seed)
    a, b, c = (torch.load(tmp_path / name, weights_only=True)["state_dict"] for name in "abc")
    key = "flownets_d.conv3.0.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])


# ----------------------------------------------------------------------------------------------
# Loading and running


def test_loaded_model_is_frozen_and_gives_a_finite_deterministic_flow_of_the_input_size(tiny_model):
    assert not tiny_model.training
    assert not any(p.requires_grad for p in tiny_model.parameters())
    a, b = frames(h=70, w=90)

    flow = tiny_model(a, b)

    assert flow.shape == (2, 2, 70, 90)
    assert torch.isfinite(flow).all() and flow.abs().max() > 0
    assert torch.equal(flow, tiny_model(a, b))


def test_bare_state_dict_loads_like_the_wrapped_file(tiny_path, tiny_model, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save(torch.load(tiny_path, weights_only=True)["state_dict"], bare)
    a, b = frames(n=1, h=64, w=128)
    torch.testing.assert_close(load_flownet2(bare)(a, b), tiny_model(a, b), rtol=0, atol=0)


def test_subnets_predict_at_a_quarter_and_the_fusion_at_full_resolution(tiny_model):
    pair = torch.cat(frames(n=1, h=64, w=128), dim=1)
    assert tiny_model.flownetc(pair).shape == (1, 2, 16, 32)
    assert tiny_model.flownets_d(pair).shape == (1, 2, 16, 32)
    assert tiny_model.flownets_1(torch.zeros(1, 12, 64, 128)).shape == (1, 2, 16, 32)
    assert tiny_model.flownetfusion(torch.zeros(1, 11, 64, 128)).shape == (1, 2, 64, 128)


def test_flow_ignores_a_colour_offset_shared_by_both_frames(tiny_model):
    # NVIDIA subtracts one mean per sample and channel, taken over both frames.
    a, b = frames(n=2, h=64, w=64)
    offset = torch.tensor([0.2, -0.1, 0.05]).view(1, 3, 1, 1)
    torch.testing.assert_close(tiny_model(a + offset, b + offset), tiny_model(a, b), rtol=0, atol=1e-4)


def test_samples_in_a_batch_are_independent(tiny_model):
    a, b = frames(n=2, h=64, w=64)
    torch.testing.assert_close(tiny_model(a, b)[1:], tiny_model(a[1:], b[1:]), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Loader errors


def test_missing_key_is_an_error_naming_the_file_and_the_key(tiny_path, tmp_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    del ckpt["state_dict"]["flownets_2.conv4_1.0.bias"]
    path = tmp_path / "broken checkpoint.pth.tar"
    torch.save(ckpt, path)
    with pytest.raises(CiinvError, match="broken checkpoint.pth.tar.*flownets_2.conv4_1.0.bias"):
        load_flownet2(path)


def test_inconsistent_widths_are_an_error_naming_the_file(tiny_path, tmp_path):
    ckpt = torch.load(tiny_path, weights_only=True)
    state = ckpt["state_dict"]
    state["flownetc.conv2.0.weight"] = torch.zeros(8, 5, 5, 5)  # conv1 gives 4 channels, not 5
    path = tmp_path / "mismatched.pth.tar"
    torch.save(ckpt, path)
    with pytest.raises(CiinvError, match="mismatched.pth.tar.*flownetc.conv2.0.weight"):
        load_flownet2(path)


def test_missing_or_foreign_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(CiinvError, match="nowhere.pth.tar.*download_models"):
        load_flownet2(tmp_path / "nowhere.pth.tar")
    foreign = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CiinvError, match="vgg.pth.*missing key"):
        load_flownet2(foreign)


# ----------------------------------------------------------------------------------------------
# Resizing to multiples of 64 and back


@pytest.mark.parametrize("side, expected", [(30, 64), (64, 64), (70, 64), (95, 64), (96, 128), (1080, 1088),
                                            (1920, 1920)])
def test_network_size_is_the_nearest_multiple_of_64(side, expected):
    assert network_size(side, side) == (expected, expected)


def test_resize_flow_scales_a_translation():
    flow = torch.empty(1, 2, 70, 150)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    out = resize_flow(flow, (64, 128))
    assert out.shape == (1, 2, 64, 128)
    torch.testing.assert_close(out[:, 0], torch.full((1, 64, 128), 3.0 * 128 / 150))
    torch.testing.assert_close(out[:, 1], torch.full((1, 64, 128), -2.0 * 64 / 70))
    assert resize_flow(flow, (70, 150)) is flow


def zoom_flow(h, w, zoom, dtype=torch.float64):
    """Flow of a zoom by ``zoom`` about the image centre: (x - cx) * (zoom - 1), in pixels."""
    ys = torch.arange(h, dtype=dtype).view(h, 1).expand(h, w)
    xs = torch.arange(w, dtype=dtype).view(1, w).expand(h, w)
    return torch.stack(((xs - (w - 1) / 2) * (zoom - 1), (ys - (h - 1) / 2) * (zoom - 1)))[None]


def test_resize_flow_maps_a_zoom_to_the_same_zoom_on_the_other_grid():
    # A zoom about the centre is the same zoom at any resolution; bilinear resampling of this
    # affine field is exact wherever it does not clamp at the border (one source pixel in).
    out = resize_flow(zoom_flow(48, 60, 1.1), (64, 128))
    expected = zoom_flow(64, 128, 1.1)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(out[inner], expected[inner], rtol=0, atol=1e-9)


def test_forward_runs_the_network_at_multiples_of_64_and_maps_the_flow_back(tiny_model, monkeypatch):
    seen = []

    def known_flow(a, b):  # stands in for the network: a zoom on whatever grid it is given
        seen.append(tuple(a.shape[-2:]))
        return zoom_flow(*a.shape[-2:], 1.2, dtype=a.dtype).expand(a.shape[0], -1, -1, -1)

    monkeypatch.setattr(tiny_model, "flow_at_network_size", known_flow)
    a, b = frames(n=1, h=70, w=150)
    flow = tiny_model(a, b)

    assert seen == [(64, 128)]
    assert flow.shape == (1, 2, 70, 150)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    torch.testing.assert_close(flow[inner], zoom_flow(70, 150, 1.2, dtype=torch.float32)[inner],
                               rtol=0, atol=1e-4)
