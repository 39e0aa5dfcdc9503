"""FID's Inception-v3: pytorch-fid's key layout, the TensorFlow pooling quirks, and FID through it."""

import warnings

import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from ciinv import metrics
from ciinv.errors import CiinvError
from ciinv.models.inception import (
    FID_WIDTHS,
    NUM_CLASSES,
    ConvBN,
    FIDInception,
    conv_names,
    load_inception,
)
from ciinv.dev.tiny import write_tiny_inception


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "pt_inception-tiny.pth"
    write_tiny_inception(path, width_divisor=8)
    return path


def smooth_images(n, size=48, seed=0):
    """Random low-frequency pictures [n, 3, size, size] in [0, 1]."""
    rng = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 8, 8, generator=rng), size=size, mode="bilinear", align_corners=False)


def test_the_full_network_has_pytorch_fids_layout():
    model = FIDInception()
    state = model.state_dict()
    # torchvision's Inception3 without AuxLogits and fc: 21,785,568 parameters; 94 conv+BN units.
    assert sum(p.numel() for p in model.parameters()) == 21_785_568
    assert len(conv_names()) == 94 and len(state) == 94 * 6
    assert model.features == 2048
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_5b.branch5x5_2.conv.weight"].shape == (64, 48, 5, 5)
    assert state["Mixed_6a.branch3x3.conv.weight"].shape == (384, 288, 3, 3)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7a.branch7x7x3_4.conv.weight"].shape == (192, 192, 3, 3)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state


def test_tiny_checkpoint_loads_and_gives_pool3_features(tiny_path):
    state = torch.load(tiny_path, weights_only=True)
    assert all(f"{name}.conv.weight" in state for name in conv_names())
    assert state["fc.weight"].shape == (NUM_CLASSES, 2048 // 8)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (FID_WIDTHS["Mixed_5b.branch_pool"] // 8, 192 // 8, 1, 1)

    net = load_inception(tiny_path)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    images = smooth_images(3)
    features = metrics.inception_features(images, net, batch=2)
    assert features.shape == (3, 2048 // 8) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and (features >= 0).all()  # averages of ReLU outputs
    # The input is resized to 299x299 (bilinear, align_corners=False) inside the network.
    resized = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(resized), features)
    torch.testing.assert_close(metrics.inception_features(images, net, batch=32), features)


def test_conv_bn_uses_the_running_statistics_with_tensorflows_epsilon():
    unit = ConvBN(1, 1, 1).eval()
    with torch.no_grad():
        unit.conv.weight.fill_(2.0)
        unit.bn.weight.fill_(3.0)
        unit.bn.bias.fill_(0.5)
        unit.bn.running_mean.fill_(1.0)
        unit.bn.running_var.fill_(4.0)
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
    expected = torch.relu(3.0 * (2 * x - 1.0) / (4.0 + 1e-3) ** 0.5 + 0.5)
    torch.testing.assert_close(unit(x), expected)


def test_branch_pools_follow_the_tensorflow_graph(tiny_path):
    """Average pools ignore the padding; Mixed_7c's fourth branch is a 3x3 max pool."""
    net = load_inception(tiny_path)
    seen = {}

    def keep(name):
        def hook(module, inputs):
            seen[name] = inputs[0]
        return hook

    for name in ("Mixed_5b", "Mixed_6b", "Mixed_7b", "Mixed_7c"):
        block = getattr(net, name)
        block.register_forward_pre_hook(keep(name))
        block.branch_pool.register_forward_pre_hook(keep(name + ".branch_pool"))
    net(smooth_images(2))
    for name in ("Mixed_5b", "Mixed_6b", "Mixed_7b"):
        expected = F.avg_pool2d(seen[name], 3, stride=1, padding=1, count_include_pad=False)
        torch.testing.assert_close(seen[name + ".branch_pool"], expected)
        # not the PyTorch default: corners would be averaged with 5 zeros of padding
        assert not torch.allclose(seen[name + ".branch_pool"], F.avg_pool2d(seen[name], 3, stride=1, padding=1))
    torch.testing.assert_close(seen["Mixed_7c.branch_pool"], F.max_pool2d(seen["Mixed_7c"], 3, stride=1, padding=1))


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(tiny_path):
    net = load_inception(tiny_path)
    images = smooth_images(16)
    rng = torch.Generator().manual_seed(1)
    noise = torch.randn(images.shape, generator=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # 16 samples of 256 features: singular
        same = metrics.fid(images, images, inception=net)
        distances = [metrics.fid(images, (images + s * noise).clamp(0, 1), inception=net) for s in (0.05, 0.1, 0.2)]
    assert same == pytest.approx(0.0, abs=1e-3)
    assert 1e-3 < distances[0] < distances[1] < distances[2]


def test_loader_errors_name_the_file_and_the_fix(tmp_path, tiny_path):
    with pytest.raises(CiinvError, match="ciinv models fetch inception-fid"):
        load_inception(tmp_path / "missing.pth")

    state = torch.load(tiny_path, weights_only=True)
    torchvision_like = dict(state) | {"AuxLogits.fc.weight": torch.zeros(1000, 768)}
    torch.save(torchvision_like, tmp_path / "tv.pth")
    with pytest.raises(CiinvError, match="torchvision"):
        load_inception(tmp_path / "tv.pth")

    truncated = {k: v for k, v in state.items() if not k.startswith("Mixed_7c.")}
    torch.save(truncated, tmp_path / "short.pth")
    with pytest.raises(CiinvError, match=r"short\.pth.*Mixed_7c"):
        load_inception(tmp_path / "short.pth")

    bad = dict(state)
    bad["Mixed_5b.branch5x5_2.conv.weight"] = torch.zeros(8, 5, 5, 5)  # in-channels do not chain
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CiinvError, match="shapes do not fit"):
        load_inception(tmp_path / "bad.pth")

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CiinvError, match="cannot be read"):
        load_inception(tmp_path / "junk.pth")


def test_files_without_batch_counters_load_the_same(tmp_path, tiny_path):
    state = torch.load(tiny_path, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    images = smooth_images(2)
    torch.testing.assert_close(load_inception(tmp_path / "old.pth")(images), load_inception(tiny_path)(images))
