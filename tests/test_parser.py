"""The BiSeNet face parser (ciinv/models/parser.py): a tiny checkpoint in the key layout of
face-parsing.PyTorch's 79999_iter.pth loads through `load_parser`, and a file that does not fit
is refused with its name. (Equality with the reference code: benchmarks/compare_reference.py.)"""

from __future__ import annotations

import re

import pytest
import torch

from ciinv.dev.tiny import write_tiny_parser
from ciinv.errors import CiinvError
from ciinv.models import PARSER_LOADERS, load_parser, parser_kind
from ciinv.models.catalogue import CATALOGUE
from ciinv.models.parser import PARSER_LABELS, FaceParser, parser_widths

# Keys and shapes of 79999_iter.pth (face-parsing.PyTorch's BiSeNet(n_classes=19).state_dict()).
REFERENCE_SHAPES = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.bn2.running_var": (512,),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.bn_atten.num_batches_tracked": (),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "cp.conv_head16.conv.weight": (128, 128, 3, 3),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}


@pytest.fixture(scope="module")
def tiny_parser(tmp_path_factory):
    path = tmp_path_factory.mktemp("parser") / "79999_iter.pth"
    write_tiny_parser(path)
    return path


def test_the_real_architecture_has_the_checkpoints_keys_and_shapes():
    state = FaceParser().state_dict()
    assert len(state) == 191  # 79999_iter.pth's tensors, num_batches_tracked included
    assert sum(p.numel() for p in FaceParser().parameters()) == 13_300_416  # the reference's BiSeNet(19)
    for key, shape in REFERENCE_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(key.startswith(("cp.sp", "sp.")) for key in state)  # the reference has no spatial path


def test_labels_are_the_checkpoints_classes():
    assert len(PARSER_LABELS) == 19
    assert PARSER_LABELS.index("background") == 0 and PARSER_LABELS.index("skin") == 1
    assert [PARSER_LABELS.index(name) for name in ("cloth", "hair", "hat")] == [16, 17, 18]


def test_a_tiny_parser_in_the_reference_layout_loads_and_parses(tiny_parser):
    state = torch.load(tiny_parser, weights_only=True)
    assert set(state) == set(FaceParser().state_dict())  # the same 191 keys, narrower
    model = load_parser(tiny_parser)
    assert isinstance(model, FaceParser)
    assert not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert model.widths == parser_widths(state) and model.widths.classes == 19
    images = torch.rand(2, 3, 64, 64)
    logits = model(images)
    assert logits.shape == (2, 19, 64, 64) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and logits.std() > 0
    # No resizing inside: any size comes back at that size, also one that is no multiple of 32.
    assert model(torch.rand(1, 3, 37, 53)).shape == (1, 19, 37, 53)
    # The frames are independent, and the result does not depend on the batch.
    torch.testing.assert_close(model(images[1:]), logits[1:], rtol=1e-5, atol=1e-5)


def test_the_fused_parser_gives_the_same_logits(tiny_parser):
    """``fused()``: the BatchNorms folded into the convs and the weights channels-last, for the masks;
    the same logits to float rounding, whatever the input's layout; the loaded model is left as it was."""
    model = load_parser(tiny_parser)
    fused = model.fused()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 31  # every conv's, untouched
    assert set(model.state_dict()) == set(torch.load(tiny_parser, weights_only=True))
    assert not fused.training and not any(p.requires_grad for p in fused.parameters())
    assert fused.cp.resnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 64, 64)
    expected = model(images)
    torch.testing.assert_close(fused(images), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused(images.contiguous(memory_format=torch.channels_last)), expected,
                               rtol=1e-4, atol=1e-5)


def test_normalisation_is_inside(tiny_parser):
    """The input is [0, 1] RGB: a mid-grey image and a black one are different inputs, and the
    ImageNet mean image gives the logits of an all-zero normalised input."""
    model = load_parser(tiny_parser)
    mean_image = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    zeros_inside = torch.nn.functional.interpolate(
        model.conv_out(model.ffm(*model.cp(torch.zeros(1, 3, 32, 32))[:2])), (32, 32), mode="bilinear",
        align_corners=True)
    torch.testing.assert_close(model(mean_image), zeros_inside, rtol=1e-5, atol=1e-6)


def test_the_parser_file_is_a_catalogue_entry_with_its_own_loader(tmp_path):
    entry = CATALOGUE["face-parsing-bisenet"]
    assert entry.used_by == "models.parser" and entry.kind in PARSER_LOADERS
    assert entry.sha256 == "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"
    assert entry.size == 53_289_463
    assert "drive.google" not in entry.url
    assert parser_kind(tmp_path / "models" / entry.filename) == entry.kind
    assert parser_kind(tmp_path / "79999_iter.pth") == "bisenet-face-parsing"  # a file of the user's


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.pop("conv_out.conv_out.weight"), r"missing key\(s\).*conv_out\.conv_out\.weight"),
    (lambda s: s.pop("cp.arm16.conv.bn.running_var"), r"missing key\(s\).*cp\.arm16\.conv\.bn\.running_var"),
    (lambda s: s.__setitem__("cp.sp.conv1.weight", torch.zeros(1)), r"unexpected key\(s\).*cp\.sp\.conv1\.weight"),
    (lambda s: s.__setitem__("ffm.conv2.weight", torch.zeros(3, 3, 1, 1)), r"wrong shapes: ffm\.conv2\.weight"),
    (lambda s: s.update({f"module.{k}": s.pop(k) for k in list(s)}), r"missing key\(s\)"),
    (lambda s: s.__setitem__("conv_out.conv_out.weight", s["conv_out.conv_out.weight"][:5]), "5 classes"),
])
def test_a_file_that_does_not_fit_is_named(tiny_parser, tmp_path, change, expected):
    state = torch.load(tiny_parser, weights_only=True)
    change(state)
    bad = tmp_path / "bad_parser.pth"
    torch.save(state, bad)
    with pytest.raises(CiinvError, match=re.escape(str(bad)) + ".*" + expected):
        load_parser(bad)


def test_an_older_file_without_batch_counters_loads(tiny_parser, tmp_path):
    state = torch.load(tiny_parser, weights_only=True)
    older = tmp_path / "older.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, older)
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(load_parser(older)(images), load_parser(tiny_parser)(images))


def test_a_file_in_torchs_legacy_format_loads(tiny_parser, tmp_path):
    """79999_iter.pth dates from 2019 (torch 1.x, before the zip format): the legacy pickle layout."""
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(tiny_parser, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(load_parser(legacy)(images), load_parser(tiny_parser)(images), rtol=0, atol=0)


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(CiinvError, match=re.escape(str(tmp_path / "absent.pth")) + ".*not found.*download_models"):
        load_parser(tmp_path / "absent.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CiinvError, match=re.escape(str(broken)) + ".*cannot be read"):
        load_parser(broken)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CiinvError, match=re.escape(str(listed)) + ".*state dict"):
        load_parser(listed)


def test_smoke_models_point_models_parser_at_a_tiny_parser(smoke_dir):
    import yaml

    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    model = load_parser(overlay["models"]["parser"])
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 19, 64, 64)
