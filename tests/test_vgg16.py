"""VGG16 features (torchvision layout): loading, taps, and equality with a hand-built net."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ciinv.errors import CiinvError
from ciinv.models.vgg16 import VGG16Features, load_vgg16
from ciinv.dev.tiny import write_tiny_vgg16

CONV_KEYS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # every conv of vgg16().features


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16-tiny.pth"
    write_tiny_vgg16(path, width_divisor=16, seed=0)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return load_vgg16(tiny_path)


def hand_built_reference(state: dict) -> nn.Sequential:
    """torchvision's vgg16().features written out layer by layer (in-place ReLUs, as there)."""

    def conv(i):
        w = state[f"features.{i}.weight"]
        layer = nn.Conv2d(w.shape[1], w.shape[0], kernel_size=3, padding=1)
        layer.load_state_dict({"weight": w, "bias": state[f"features.{i}.bias"]})
        return layer

    relu, pool = lambda: nn.ReLU(inplace=True), lambda: nn.MaxPool2d(kernel_size=2, stride=2)
    return nn.Sequential(
        conv(0), relu(), conv(2), relu(), pool(),                  # 0-4   block 1
        conv(5), relu(), conv(7), relu(), pool(),                  # 5-9   block 2
        conv(10), relu(), conv(12), relu(), conv(14), relu(), pool(),  # 10-16 block 3
        conv(17), relu(), conv(19), relu(),                        # 17-20 conv4_1, conv4_2
    )


def test_tiny_file_has_torchvision_keys(tiny_path):
    state = torch.load(tiny_path, weights_only=True)
    expected = {f"features.{i}.{p}" for i in CONV_KEYS for p in ("weight", "bias")}
    expected |= {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    assert set(state) == expected
    assert state["features.0.weight"].shape == (4, 3, 3, 3)
    assert state["features.28.weight"].shape == (32, 32, 3, 3)
    assert state["classifier.0.weight"].shape == (256, 32 * 7 * 7)
    assert state["classifier.6.weight"].shape == (1000, 256)


def test_default_widths_are_vgg16():
    model = VGG16Features()
    assert len(model.features) == 21
    assert sum(p.numel() for p in model.parameters()) == 5_275_456  # features[:21] of vgg16 (conv1_1..conv4_2)
    assert model.features[19].weight.shape == (512, 512, 3, 3)


def test_taps_shapes_and_channels(tiny):
    x = torch.rand(2, 3, 64, 48)
    taps = tiny(x)
    assert [t.shape for t in taps] == [(2, 4, 64, 48), (2, 4, 64, 48), (2, 16, 16, 12), (2, 32, 8, 6)]
    assert all((t >= 0).all() for t in taps)  # post-ReLU


def test_equals_hand_built_sequential(tiny, tiny_path):
    state = torch.load(tiny_path, weights_only=True)
    ref = hand_built_reference(state).eval()
    x = torch.rand(3, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # the official slices features[0:2], [2:4], [4:14], [14:21]
        expected, h = [], x
        for start, stop in ((0, 2), (2, 4), (4, 14), (14, 21)):
            h = ref[start:stop](h)
            expected.append(h.clone())  # in-place ReLUs would overwrite an un-cloned tap
        ours = tiny(x)
    assert len(ours) == 4
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_frozen_and_gradient_reaches_input(tiny):
    assert not tiny.training and not any(p.requires_grad for p in tiny.parameters())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    sum(t.square().mean() for t in tiny(x)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.parameters())


def test_classifier_and_deeper_convs_are_ignored(tiny_path, tmp_path):
    state = torch.load(tiny_path, weights_only=True)
    short = {k: v for k, v in state.items() if k.startswith("features.") and int(k.split(".")[1]) <= 19}
    path = tmp_path / "short.pth"
    torch.save(short, path)
    x = torch.rand(1, 3, 16, 16)
    for a, b in zip(load_vgg16(path)(x), load_vgg16(tiny_path)(x)):
        assert torch.equal(a, b)


def test_missing_key_is_named(tiny_path, tmp_path):
    state = torch.load(tiny_path, weights_only=True)
    del state["features.12.bias"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CiinvError, match=r"broken\.pth.*features\.12\.bias"):
        load_vgg16(path)


def test_inconsistent_shapes_are_named(tiny_path, tmp_path):
    state = torch.load(tiny_path, weights_only=True)
    state["features.7.weight"] = torch.zeros(8, 5, 3, 3)  # conv2_1 gives 8 channels, not 5
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(CiinvError, match=r"odd\.pth.*features\.7"):
        load_vgg16(path)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(CiinvError, match="absent.pth.*not found"):
        load_vgg16(tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(CiinvError, match="junk.pth.*cannot be read"):
        load_vgg16(junk)
