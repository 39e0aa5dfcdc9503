"""Pivotal tuning (ciinv/inversion/pti.py): the tuned generator fits the crops better with the codes fixed,
its file loads through load_generator in every generator family, and a killed job resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ciinv import models
from ciinv.errors import CiinvError
from ciinv.inversion.pti import pti_video, tuned_parameter_names
from ciinv.inversion.resume import resume_path
from ciinv.inversion.settings import PTISettings
from ciinv.dev.tiny import write_tiny_stylegan1, write_tiny_stylegan2, write_tiny_vgg16

from .conftest import REPO

FRAMES = 6
SMALL = dict(steps=6, batch=3, lr=3e-3, perceptual="vgg", perceptual_size=32, checkpoint_every=2)


class Kill(Exception):
    pass


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A tiny generator, codes for 6 frames and crops the codes do not quite reproduce (rendered
    from nearby codes, with other noise): what an inversion leaves for PTI to close."""
    d = tmp_path_factory.mktemp("pti")
    write_tiny_stylegan2(d / "g.pt", resolution=32, w_dim=64, n_mlp=2, max_channels=16)
    write_tiny_vgg16(d / "vgg.pth", width_divisor=16)
    g = models.load_generator(d / "g.pt")
    rng = torch.Generator().manual_seed(3)
    codes = g.w_avg + 0.5 * torch.randn(FRAMES, g.num_ws, g.w_dim, generator=rng)
    truth = codes + 0.3 * torch.randn(FRAMES, g.num_ws, g.w_dim, generator=rng)
    noise = [torch.randn(1, 1, *m.shape[-2:], generator=rng) for m in g.noise_maps()]
    with torch.no_grad():
        images = ((g.synthesis(truth, noise=noise) + 1) / 2).clamp(0, 1)
    (d / "crops").mkdir()
    for i, image in enumerate(images):
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d / "crops" / f"{i:06d}.png")
    np.save(d / "latents.npy", codes.numpy())
    torch.save({"noise": None, "frame_window": None}, d / "noise.pt")
    return d


def run(video, out, settings=SMALL, **kwargs):
    return pti_video(video / "crops", video / "latents.npy", video / "g.pt", video / "vgg.pth", settings, out,
                     noise_path=video / "noise.pt", **kwargs)


def test_tuning_lowers_the_reconstruction_error_and_keeps_the_mapping(video, tmp_path):
    out = tmp_path / "generator_pti.pt"
    result = run(video, out)
    assert result["mse_after"] < 0.9 * result["mse_before"]
    assert result["losses"].shape == (SMALL["steps"], 4)
    assert not resume_path(out).exists()

    original, tuned = models.load_generator(video / "g.pt"), models.load_generator(out)
    names = set(tuned_parameter_names(tuned))
    saved = torch.load(out, weights_only=True)["g_ema"]
    for name, value in saved.items():  # tuned weights in fp16, the rest exactly the original's, in fp32
        assert value.dtype == (torch.float16 if name in names else torch.float32), name
    for name, value in original.state_dict().items():
        if name not in names:
            assert torch.equal(tuned.state_dict()[name], value), name
    assert torch.equal(tuned.w_avg, original.w_avg)
    assert any(not torch.equal(tuned.state_dict()[n], original.state_dict()[n]) for n in names)
    assert not any(n.startswith("style.") for n in names)


def test_a_killed_job_resumes_and_ends_exactly_like_an_uninterrupted_one(video, tmp_path):
    whole = tmp_path / "whole.pt"
    run(video, whole)
    out = tmp_path / "resumed.pt"
    firsts = []  # the first step each run reports

    def start(kill_at=None):
        reported = []

        def on_step(done):
            reported.append(done)
            if done == kill_at:
                raise Kill

        try:
            return run(video, out, on_step=on_step)
        finally:
            firsts.append(reported[0])

    for kill_at in (3, 5):  # snapshots every 2 steps: resumes after step 2, then after step 4
        with pytest.raises(Kill):
            start(kill_at)
        assert resume_path(out).exists() and not out.exists()
    result = start()
    assert firsts == [1, 3, 5]
    a, b = torch.load(whole, weights_only=True), torch.load(out, weights_only=True)
    assert a.keys() == b.keys() and a["g_ema"].keys() == b["g_ema"].keys()
    for name in a["g_ema"]:
        assert torch.equal(a["g_ema"][name], b["g_ema"][name]), name
    assert result["losses"].shape == (SMALL["steps"], 4)
    assert not resume_path(out).exists()


def test_a_resume_state_from_other_settings_is_not_used(video, tmp_path, caplog):
    out = tmp_path / "g.pt"

    def kill(done):
        if done == 3:
            raise Kill

    with pytest.raises(Kill):
        run(video, out, on_step=kill)
    assert resume_path(out).exists()
    reported = []
    with caplog.at_level("INFO", logger="ciinv"):  # the resume message comes from ciinv.inversion.resume
        run(video, out, settings=SMALL | {"lr": 1e-3}, on_step=reported.append)
    assert reported[0] == 1
    assert "other settings" in caplog.text


def test_lpips_without_its_weights_is_refused_with_the_fix(video, tmp_path):
    with pytest.raises(CiinvError, match="lpips-0.1.4-wheel.*pti.perceptual: vgg"):
        run(video, tmp_path / "g.pt", settings=SMALL | {"perceptual": "lpips"}, lpips_path=tmp_path / "absent.whl")
    assert not (tmp_path / "g.pt").exists()


@pytest.mark.parametrize("family", ["stylegan2-clamped", "stylegan1"])
def test_the_tuned_file_keeps_the_configured_generators_family(video, tmp_path, family):
    """An NVlabs generator (activation clamping) is written in rosinality's layout with its
    conv_clamp; a StyleGAN (v1) in the seed code's flat layout. Both load and render as tuned."""
    if family == "stylegan1":
        write_tiny_stylegan1(tmp_path / "g1.pt", resolution=32, w_dim=64, max_channels=16, n_mlp=2)
        generator = models.load_generator(tmp_path / "g1.pt")
    else:
        generator = models.load_generator(video / "g.pt")
        generator.conv_clamp = 0.5
        for module in generator.modules():  # the layers read their own copy of the bound
            if hasattr(module, "clamp") and not callable(module.clamp):
                module.clamp = 0.5
    names = tuned_parameter_names(generator)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name in names:
                p.add_(0.01).copy_(p.half().float())  # as if tuned, and fp16-exact
    models.save_generator(generator, tmp_path / "tuned.pt", half=names)
    loaded = models.load_generator(tmp_path / "tuned.pt")
    assert type(loaded) is type(generator)
    assert getattr(loaded, "conv_clamp", None) == getattr(generator, "conv_clamp", None)
    ws = generator.w_avg + torch.randn(2, generator.num_ws, generator.w_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.synthesis(ws), generator.synthesis(ws))


def test_the_settings_defaults_are_the_configs_and_the_schemas():
    config = yaml.safe_load((REPO / "config.yaml").read_text())["pti"]
    schema = yaml.safe_load((REPO / "ciinv/config.schema.yaml").read_text())["properties"]["pti"]["properties"]
    assert PTISettings.from_dict(config) == PTISettings()
    assert {key: entry["default"] for key, entry in schema.items()} == PTISettings().to_dict()
    assert all(entry.get("description") for entry in schema.values())
    assert config["enabled"] is False
    with pytest.raises(CiinvError, match="perceptual"):
        PTISettings.from_dict({"perceptual": "alex"})
    with pytest.raises(CiinvError, match="stepz"):
        PTISettings.from_dict({"stepz": 3})


def test_the_cli_writes_a_generator_the_rendering_stages_render_with(video, tmp_path):
    from ciinv.cli import config_arguments, main

    out = tmp_path / "generator_pti.pt"
    assert main(["pti", "--crops", str(video / "crops"), "--latents", str(video / "latents.npy"), "--noise",
                 str(video / "noise.pt"), "--generator", str(video / "g.pt"), "--vgg16", str(video / "vgg.pth"),
                 *config_arguments("pti", SMALL), "--out", str(out), "--device", "cpu"]) == 0
    from ciinv.models import load_generator
    from ciinv.faces.render import load_renderer

    rendered = load_renderer(video / "latents.npy", load_generator(out), video / "noise.pt")  # as assemble does
    crops = list(rendered)
    assert len(crops) == FRAMES and crops[0].dtype == np.uint8


def test_the_plus_variants_noise_maps_are_the_ones_tuned_with(video, tmp_path):
    """With noise.pt holding per-window maps (the plus variant), each frame is rendered with its own
    window's maps while tuning, as the edit stage renders it; maps of another size are refused."""
    g = models.load_generator(video / "g.pt")
    rng = torch.Generator().manual_seed(7)
    maps = [torch.randn(2, 1, *m.shape[-2:], generator=rng) for m in g.noise_maps()]
    frame_window = torch.tensor([0, 0, 0, 1, 1, 1])
    torch.save({"noise": [m.half() for m in maps], "frame_window": frame_window}, tmp_path / "noise.pt")
    with_maps = pti_video(video / "crops", video / "latents.npy", video / "g.pt", video / "vgg.pth", SMALL,
                          tmp_path / "a.pt", noise_path=tmp_path / "noise.pt")
    plain = run(video, tmp_path / "b.pt")
    assert with_maps["mse_after"] < with_maps["mse_before"]
    assert with_maps["mse_before"] != plain["mse_before"]  # the maps were used
    bad = [m[:, :, :2, :2] for m in maps]
    torch.save({"noise": bad, "frame_window": frame_window}, tmp_path / "bad.pt")
    with pytest.raises(CiinvError, match="do not fit"):
        pti_video(video / "crops", video / "latents.npy", video / "g.pt", video / "vgg.pth", SMALL,
                  tmp_path / "c.pt", noise_path=tmp_path / "bad.pt")
