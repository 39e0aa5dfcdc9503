"""The e4e encoder (ciinv/models/e4e.py): tiny checkpoints in e4e's exact format through load_encoder,
the encoder-only file, the generator inside the same file, and clear errors for bad files.

Agreement with e4e's own code on the same weights is `benchmarks/compare_reference.py --e4e`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ciinv.errors import CiinvError
from ciinv.models import is_e4e, load_encoder, load_generator
from ciinv.models.e4e import Encoder4Editing
from ciinv.dev.tiny import write_tiny_e4e, write_tiny_stylegan2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e4e")
    generator = folder / "g.pt"
    write_tiny_stylegan2(generator, resolution=64, w_dim=512, n_mlp=2, max_channels=16)
    full, encoder_only = folder / "e4e.pt", folder / "e4e-encoder-only.pt"
    write_tiny_e4e(full, num_ws=10, generator=generator)
    write_tiny_e4e(encoder_only, num_ws=10)
    return {"generator": generator, "full": full, "encoder_only": encoder_only, "dir": folder}


def test_file_is_e4e_format_and_loads_with_weights_only(files):
    ckpt = torch.load(files["full"], map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "latent_avg", "opts"}
    prefixes = {key.split(".", 1)[0] for key in ckpt["state_dict"]}
    assert prefixes == {"encoder", "decoder"}
    assert ckpt["latent_avg"].shape == (10, 512)
    assert ckpt["opts"]["encoder_type"] == "Encoder4Editing" and ckpt["opts"]["stylegan_size"] == 64
    # e4e's key names
    for key in ("encoder.input_layer.0.weight", "encoder.input_layer.2.weight", "encoder.body.0.res_layer.5.fc1.weight",
                "encoder.body.1.shortcut_layer.0.weight", "encoder.styles.9.convs.10.weight",
                "encoder.styles.0.linear.weight", "encoder.latlayer1.weight", "encoder.latlayer2.bias",
                "encoder.body.0.res_layer.0.num_batches_tracked"):
        assert key in ckpt["state_dict"], key
    assert "encoder.body.0.shortcut_layer.0.weight" not in ckpt["state_dict"]  # MaxPool2d(1, 2): no weights


@pytest.mark.parametrize("which", ["full", "encoder_only"])
def test_load_encoder_maps_images_to_wplus(files, which):
    encoder = load_encoder(files[which])
    assert isinstance(encoder, Encoder4Editing) and not encoder.training
    assert all(not p.requires_grad for p in encoder.parameters())
    images = torch.rand(3, 3, 64, 64)
    codes = encoder(images)
    assert codes.shape == (3, 10, 512) and torch.isfinite(codes).all()
    # Different faces, different codes; the same face, the same code.
    assert not torch.allclose(codes[0], codes[1])
    torch.testing.assert_close(encoder(images[:1]), codes[:1], rtol=1e-5, atol=1e-5)


def test_codes_are_latent_avg_plus_base_plus_deltas(files):
    encoder = load_encoder(files["full"])
    generator = load_generator(files["generator"])
    torch.testing.assert_close(encoder.latent_avg, generator.w_avg.expand(10, 512))
    images = torch.rand(2, 3, 64, 64)
    x = encoder.preprocess(images)
    raw = encoder.encode(x)
    torch.testing.assert_close(encoder(images), raw + encoder.latent_avg)
    # Layer 0 is the base code w0 alone; every other layer is w0 plus its own style block's delta.
    features = encoder.input_layer(x)
    for i, unit in enumerate(encoder.body):
        features = unit(features)
        if i == encoder.stage_ends[2]:
            break
    w0 = encoder.styles[0](features)
    torch.testing.assert_close(raw[:, 0], w0)
    torch.testing.assert_close(raw[:, 1], w0 + encoder.styles[1](features))


def test_input_is_resized_to_256_and_mapped_to_minus_one_one():
    images = torch.rand(1, 3, 512, 512)
    out = Encoder4Editing.preprocess(images)
    expected = F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False, antialias=True) * 2 - 1
    torch.testing.assert_close(out, expected)
    same = torch.rand(1, 3, 256, 256)
    torch.testing.assert_close(Encoder4Editing.preprocess(same), same * 2 - 1)


def test_stage_structure_is_read_from_the_file(tmp_path):
    """IR-SE-50's 3, 4, 14, 3 units: the feature maps are those after body units 6, 20 and 23,
    e4e's hard-coded indices; 18 styles as for FFHQ-1024."""
    path = tmp_path / "ir50.pt"
    write_tiny_e4e(path, num_ws=18, widths=(4, 8, 12, 16), units=(3, 4, 14, 3), style_width=8)
    encoder = load_encoder(path)
    assert len(encoder.body) == 24 and encoder.stage_ends == (6, 20, 23)
    assert [len(s.convs) // 2 for s in encoder.styles] == [4] * 3 + [5] * 4 + [6] * 11
    assert encoder(torch.rand(1, 3, 256, 256)).shape == (1, 18, 512)


def test_load_generator_reads_the_decoder_of_an_e4e_file(files):
    assert is_e4e(files["full"]) and not is_e4e(files["generator"])
    ours, reference = load_generator(files["full"]), load_generator(files["generator"])
    torch.testing.assert_close(ours.w_avg, reference.w_avg)
    ws = reference.w_avg.expand(2, reference.num_ws, 512) + 0.5 * torch.randn(2, reference.num_ws, 512)
    torch.testing.assert_close(ours.synthesis(ws), reference.synthesis(ws))


def test_encoder_only_file_has_no_generator(files):
    with pytest.raises(CiinvError, match="only the encoder"):
        load_generator(files["encoder_only"])


def _rewrite(src, dst, change):
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    change(ckpt)
    torch.save(ckpt, dst)
    return dst


def test_bad_files_are_errors_naming_the_file(files, tmp_path):
    cases = {
        "no latent_avg": (lambda c: c.pop("latent_avg"), "no 'latent_avg'"),
        "wrong latent_avg": (lambda c: c.__setitem__("latent_avg", torch.zeros(7, 512)), r"latent_avg' is \[7, 512\]"),
        "missing key": (lambda c: c["state_dict"].pop("encoder.body.2.res_layer.3.weight"), "missing key"),
        "pSp": (lambda c: c["opts"].__setitem__("encoder_type", "GradualStyleEncoder"), "only e4e's Encoder4Editing"),
    }
    for name, (change, message) in cases.items():
        path = _rewrite(files["encoder_only"], tmp_path / f"{name}.pt", change)
        with pytest.raises(CiinvError, match=message) as error:
            load_encoder(path)
        assert str(path) in str(error.value), name
    with pytest.raises(CiinvError, match="no 'state_dict'"):
        load_encoder(files["generator"])
    with pytest.raises(CiinvError, match="not found"):
        load_encoder(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CiinvError, match="cannot be read"):
        load_encoder(garbage)
