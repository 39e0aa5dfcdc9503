"""`ciinv.models.load_flow` / `load_generator` pick the loader from the spec or the file: a
catalogue file by its entry's kind, any other file as before."""

from __future__ import annotations

import dataclasses

from ciinv.models import (
    FLOW_LOADERS,
    GENERATOR_LOADERS,
    flow_kind,
    generator_kind,
    is_weightless_flow,
    load_flow,
)
from ciinv.models.catalogue import CATALOGUE, GENERATOR_FAMILY
from ciinv.models.flow_dis import DISFlow
from ciinv.models.flownet2 import FlowNet2
from ciinv.dev.tiny import write_tiny_flownet2


def test_flow_specs_pick_their_estimator(tmp_path):
    assert isinstance(load_flow("dis"), DISFlow) and isinstance(load_flow("dis:fast"), DISFlow)
    assert is_weightless_flow("dis:ultrafast") and not is_weightless_flow(tmp_path / "FlowNet2_checkpoint.pth.tar")
    write_tiny_flownet2(tmp_path / "FlowNet2_checkpoint.pth.tar")
    assert isinstance(load_flow(tmp_path / "FlowNet2_checkpoint.pth.tar"), FlowNet2)


def test_every_generator_and_flow_kind_of_the_catalogue_has_a_loader():
    kinds = {e.used_by: set() for e in CATALOGUE.values()}
    for entry in CATALOGUE.values():
        kinds[entry.used_by].add(entry.kind)
    assert kinds["models.generator"] | kinds["models.encoder"] <= set(GENERATOR_LOADERS)
    assert kinds["models.flow"] <= set(FLOW_LOADERS)
    assert set(GENERATOR_LOADERS) <= set(GENERATOR_FAMILY)  # its named directions are known too


def test_a_catalogue_file_is_loaded_by_its_kind_without_reading_it(tmp_path, monkeypatch):
    models = tmp_path / "models"
    assert generator_kind(models / CATALOGUE["stylegan1-ffhq"].filename) == "stylegan1-converted"  # absent
    assert generator_kind(models / CATALOGUE["stylegan2-ada-ffhq"].filename) == "stylegan2-ada-pkl"
    assert generator_kind(models / CATALOGUE["e4e-ffhq-encode"].filename) == "e4e-encoder"
    assert flow_kind(models / CATALOGUE["raft"].filename) == "raft-torchvision"
    assert flow_kind(models / CATALOGUE["flownet2"].filename) == "flownet2"
    # The kind decides, not the name: a RAFT entry filed under any name is loaded as RAFT.
    monkeypatch.setitem(CATALOGUE, "raft", dataclasses.replace(CATALOGUE["raft"], filename="optical/flow.pth"))
    assert flow_kind(models / "optical" / "flow.pth") == "raft-torchvision"
    assert flow_kind(tmp_path / "flow.pth") == "flownet2"  # not that entry's file: a file of the user's


def test_other_files_are_recognised_as_before(tmp_path):
    from ciinv.dev.tiny import write_tiny_stylegan1, write_tiny_stylegan2

    assert flow_kind(tmp_path / "raft-things.pth") == "raft-torchvision"  # by name, as ever
    assert flow_kind(tmp_path / "my_flownet2.pth.tar") == "flownet2"
    write_tiny_stylegan1(tmp_path / "v1.pt", resolution=16, max_channels=16, n_mlp=2)
    write_tiny_stylegan2(tmp_path / "v2.pt", resolution=16, max_channels=16)
    assert generator_kind(tmp_path / "v1.pt") == "stylegan1-converted"  # by its keys
    assert generator_kind(tmp_path / "v2.pt") == "stylegan2-rosinality"
    assert generator_kind(tmp_path / "snapshot.pkl") == "stylegan2-ada-pkl"


def test_generator_formats_pick_their_loader(tmp_path):
    from ciinv.edits.operations import sefa_direction
    from ciinv.models import load_generator
    from ciinv.models.generator import StyleGenerator
    from ciinv.models.stylegan1 import GeneratorV1
    from ciinv.models.stylegan2 import Generator
    from ciinv.dev.tiny import write_tiny_stylegan1, write_tiny_stylegan2

    write_tiny_stylegan2(tmp_path / "v2.pt", resolution=16, max_channels=16)
    write_tiny_stylegan1(tmp_path / "v1.pt", resolution=16, max_channels=16, n_mlp=2)
    v2, v1 = load_generator(tmp_path / "v2.pt"), load_generator(tmp_path / "v1.pt")
    assert type(v2) is Generator and type(v1) is GeneratorV1
    assert isinstance(v2, StyleGenerator) and isinstance(v1, StyleGenerator)  # the one interface
    for generator in (v1, v2):  # SeFa finds the style affines of either architecture
        assert sefa_direction(generator, 0).shape == (generator.w_dim,)


def test_an_ada_pickle_loads_through_load_generator(tmp_path):
    import torch

    from ciinv.models import load_generator
    from ciinv.models.stylegan2 import Generator
    from ciinv.dev.tiny import write_tiny_stylegan2

    from .test_ada_pickle import ada_generator, snapshot, write_pkl

    write_tiny_stylegan2(tmp_path / "g.pt", resolution=16, max_channels=16)
    ckpt = torch.load(tmp_path / "g.pt", weights_only=True)
    write_pkl(tmp_path / "ffhq.pkl", snapshot(ada_generator(ckpt["g_ema"], ckpt["latent_avg"])))
    from_pkl, from_pt = load_generator(tmp_path / "ffhq.pkl"), load_generator(tmp_path / "g.pt")
    assert type(from_pkl) is Generator
    ws = from_pt.w_avg.expand(1, from_pt.num_ws, -1)
    torch.testing.assert_close(from_pkl.synthesis(ws), from_pt.synthesis(ws), atol=1e-5, rtol=0)


def test_the_inversion_runs_with_stylegan_v1_and_dis_by_config_alone(tmp_path):
    """The invert stage takes any generator format and any flow spec the config names."""
    import numpy as np
    import torch
    from PIL import Image

    from ciinv.inversion.invert import invert_shard
    from ciinv.dev.tiny import write_tiny_stylegan1
    from ciinv.dev.tiny import write_tiny_vgg16

    write_tiny_stylegan1(tmp_path / "v1.pt", resolution=16, max_channels=16, n_mlp=2)
    write_tiny_vgg16(tmp_path / "vgg.pth")
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(crops / f"{i:06d}.png")
    settings = {"steps": 2, "perceptual_size": 16, "window": 5, "stride": 4}
    invert_shard(crops, 5, 0, settings, generator_path=tmp_path / "v1.pt", flow_path="dis",
                 vgg_path=tmp_path / "vgg.pth", out_path=tmp_path / "s.pt", device="cpu")
    shard = torch.load(tmp_path / "s.pt", weights_only=True)
    assert tuple(shard["codes"].shape) == (1, 5, 6, 512)  # 16 px StyleGAN v1: 6 W+ layers


def test_a_legacy_format_stylegan_v1_file_is_recognised(tmp_path):
    """The 2019 conversions were saved before torch's zip format; they must still reach the v1 loader."""
    import torch

    from ciinv.models import load_generator
    from ciinv.models.stylegan1 import GeneratorV1
    from ciinv.dev.tiny import write_tiny_stylegan1

    write_tiny_stylegan1(tmp_path / "zip.pt", resolution=16, max_channels=16, n_mlp=2)
    state = torch.load(tmp_path / "zip.pt", weights_only=True)
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert type(load_generator(tmp_path / "legacy.pt")) is GeneratorV1
