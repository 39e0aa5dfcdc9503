"""RAFT through torchvision behind ciinv's flow interface.

Always run: the errors (torchvision missing or broken, file missing) and the RAFTFlow wrapper
(scaling, padding, last prediction, crop) around a stand-in for torchvision's RAFT. Run only
where torchvision is importable: loading a random RAFT-large state dict in torchvision's file
layout. The flow direction (torchvision: "from img1 to img2") needs real weights to check.
"""

from __future__ import annotations

import re
import sys
import types

import pytest
import torch
from torch import nn

from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE
from ciinv.models.flow_raft import RAFTFlow, crop, load_raft, pad_to_multiple

RAFT_FILENAME = CATALOGUE["raft"].filename
TORCHVISION_MODULES = ("torchvision", "torchvision.models", "torchvision.models.optical_flow")


def torchvision_raft_large():
    """torchvision's raft_large, or skip (with why) where torchvision is missing or broken."""
    try:
        from torchvision.models.optical_flow import raft_large
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"torchvision is not usable here ({type(exc).__name__}: {exc}); RAFT is the optional "
                    "'ciinv[raft]' extra")
    return raft_large


@pytest.fixture
def some_file(tmp_path):
    path = tmp_path / RAFT_FILENAME
    torch.save({}, path)
    return path


# ----------------------------------------------------------------------------------------------
# Errors that need no torchvision


def test_missing_torchvision_says_how_to_install_it(monkeypatch, some_file):
    for name in TORCHVISION_MODULES:  # None in sys.modules makes `import name` fail
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(CiinvError, match=r"RAFT needs torchvision: pip install 'ciinv\[raft\]'"):
        load_raft(some_file)


def test_torchvision_built_for_another_torch_says_so(monkeypatch, some_file):
    # What a torchvision wheel for another torch does on import: its compiled ops are missing.
    broken = types.ModuleType("torchvision.models.optical_flow")

    def fail(name):
        raise RuntimeError("operator torchvision::nms does not exist")

    broken.__getattr__ = fail
    monkeypatch.setitem(sys.modules, "torchvision.models.optical_flow", broken)
    with pytest.raises(CiinvError, match=r"pip install 'ciinv\[raft\]'.*does not match torch.*torchvision::nms"):
        load_raft(some_file)


def test_missing_file_names_it_and_the_download(tmp_path):
    path = tmp_path / "nowhere" / RAFT_FILENAME
    with pytest.raises(CiinvError, match=rf"{re.escape(str(path))}.*not found.*download_models"):
        load_raft(path)


# ----------------------------------------------------------------------------------------------
# The wrapper, around a stand-in for torchvision's RAFT


class FakeRAFT(nn.Module):
    """Records its inputs; returns [garbage, ..., flow] with flow = the padded pixel grid (x, y),
    so that after cropping flow[:, :, y, x] = (x + left, y + top)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, image1, image2, num_flow_updates=12):
        self.calls.append((image1, image2, num_flow_updates))
        n, _, h, w = image1.shape
        ys, xs = torch.meshgrid(torch.arange(h, dtype=image1.dtype), torch.arange(w, dtype=image1.dtype), indexing="ij")
        grid = torch.stack((xs, ys)).expand(n, 2, h, w)
        return [torch.full_like(grid, float("nan"))] * (num_flow_updates - 1) + [grid]


def test_wrapper_scales_pads_and_crops_for_torchvision_raft():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 50, 133, generator=g), torch.rand(2, 3, 50, 133, generator=g)
    fake = FakeRAFT()
    flow = RAFTFlow(fake, num_flow_updates=3)(a, b)

    (image1, image2, updates), = fake.calls
    assert updates == 3
    # Sides: multiples of 8, at least 128 (torchvision's minimum); padding split evenly.
    assert image1.shape == image2.shape == (2, 3, 128, 136)
    top, left = (128 - 50) // 2, (136 - 133) // 2
    assert (top, left) == (39, 1)
    # img1 is a, img2 is b, both mapped from [0, 1] to [-1, 1] (torchvision's OpticalFlow transform).
    torch.testing.assert_close(image1[..., top : top + 50, left : left + 133], a * 2 - 1)
    torch.testing.assert_close(image2[..., top : top + 50, left : left + 133], b * 2 - 1)
    # Replicated border, not zeros.
    torch.testing.assert_close(image1[..., :top, left : left + 133], (a[..., :1, :] * 2 - 1).expand(2, 3, top, 133))
    # The last prediction, cropped back onto a's grid.
    assert flow.shape == (2, 2, 50, 133)
    assert torch.isfinite(flow).all()
    assert flow[0, 0, 7, 11].item() == 11 + left and flow[0, 1, 7, 11].item() == 7 + top


def test_padding_round_trips_and_leaves_good_sizes_alone():
    image = torch.rand(1, 2, 128, 256)
    same, pad = pad_to_multiple(image)
    assert same is image and pad == (0, 0, 0, 0)
    image = torch.rand(1, 2, 130, 61)
    padded, pad = pad_to_multiple(image)
    assert padded.shape[-2:] == (136, 128)
    assert torch.equal(crop(padded, pad), image)


def test_wrapper_rejects_mismatched_frames():
    with pytest.raises(ValueError, match="two \\[N, 3, H, W\\] frames"):
        RAFTFlow(FakeRAFT())(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 8))


# ----------------------------------------------------------------------------------------------
# The real torchvision RAFT-large, random weights in the published file's layout


@pytest.fixture(scope="module")
def random_raft_file(tmp_path_factory):
    raft_large = torchvision_raft_large()
    torch.manual_seed(0)
    model = raft_large(weights=None, progress=False)
    path = tmp_path_factory.mktemp("raft") / RAFT_FILENAME
    torch.save(model.state_dict(), path)  # torchvision's file is a bare state dict
    return path


def test_loads_torchvision_state_dict_frozen_in_eval_mode(random_raft_file):
    model = load_raft(random_raft_file, num_flow_updates=2)
    assert isinstance(model, RAFTFlow) and not model.training and not model.raft.training
    assert not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 5_257_536  # torchvision's published count
    saved = torch.load(random_raft_file, weights_only=True)
    for name, tensor in model.raft.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_flow_shape_on_odd_sizes(random_raft_file):
    model = load_raft(random_raft_file, num_flow_updates=2)
    a, b = torch.rand(2, 3, 90, 100), torch.rand(2, 3, 90, 100)
    with torch.no_grad():
        flow = model(a, b)
    assert flow.shape == (2, 2, 90, 100) and flow.dtype == torch.float32
    assert torch.isfinite(flow).all()


def test_wrong_keys_and_wrong_shapes_are_clear_errors(random_raft_file, tmp_path):
    state = torch.load(random_raft_file, weights_only=True)

    renamed = tmp_path / "module_prefixed.pth"  # e.g. a DataParallel checkpoint
    torch.save({f"module.{k}": v for k, v in state.items()}, renamed)
    with pytest.raises(CiinvError, match=r"module_prefixed.pth: not a torchvision RAFT-large state dict: "
                                         r"169 missing key\(s\).*169 unexpected key\(s\)"):
        load_raft(renamed)

    reshaped = tmp_path / "reshaped.pth"
    name = "mask_predictor.convrelu.0.weight"
    torch.save({**state, name: torch.zeros(3, 3)}, reshaped)
    with pytest.raises(CiinvError, match=rf"reshaped.pth: RAFT-large weights have unexpected shapes: .*{name}"):
        load_raft(reshaped)

    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": state}, nested)
    with pytest.raises(CiinvError, match="expected torchvision's RAFT-large state dict"):
        load_raft(nested)


def test_unreadable_file_is_a_clear_error(tmp_path):
    torchvision_raft_large()
    path = tmp_path / RAFT_FILENAME
    path.write_bytes(b"not a torch file")
    with pytest.raises(CiinvError, match=rf"{RAFT_FILENAME}: cannot be read as a torch checkpoint"):
        load_raft(path)
