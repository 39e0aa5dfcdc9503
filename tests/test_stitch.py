"""Stitching tuning (ciinv/inversion/stitch.py): the tuned renders meet the original crop on the border band
better than the plain edited render, the regions are STIT's, and a killed job resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ciinv import models
from ciinv.dev.tiny import write_tiny_parser, write_tiny_stylegan2
from ciinv.errors import CiinvError
from ciinv.inversion.resume import resume_path
from ciinv.inversion.settings import StitchSettings
from ciinv.inversion.stitch import band_pixels, parts_dir, stitch_regions, stitch_video
from ciinv.io.crops import CropWriter, open_crops

FRAMES = 5
RESOLUTION = 32
SMALL = dict(steps=15, lr=3e-3, chain=2, checkpoint_every=2, stop_loss=0.0, precision="fp32")


class Kill(Exception):
    pass


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A tiny generator, edited codes for 5 frames, and aligned crops rendered from other codes with
    other noise: the edited render differs from the crop everywhere, border band included."""
    d = tmp_path_factory.mktemp("stitch")
    write_tiny_stylegan2(d / "g.pt", resolution=RESOLUTION, w_dim=64, n_mlp=2, max_channels=16)
    g = models.load_generator(d / "g.pt")
    rng = torch.Generator().manual_seed(5)
    codes = g.w_avg + 0.5 * torch.randn(FRAMES, g.num_ws, g.w_dim, generator=rng)
    truth = codes + 0.4 * torch.randn(FRAMES, g.num_ws, g.w_dim, generator=rng)
    noise = [torch.randn(1, 1, *m.shape[-2:], generator=rng) for m in g.noise_maps()]
    with torch.no_grad():
        images = ((g.synthesis(truth, noise=noise).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    with CropWriter(d / "crops.mkv", FRAMES, RESOLUTION) as writer:
        for image in images:
            writer.write(image.permute(1, 2, 0).numpy())
    np.save(d / "edit.npy", codes.numpy())
    torch.save({"noise": None, "frame_window": None}, d / "noise.pt")
    return d


def run(video, out, settings=SMALL, **kwargs):
    kwargs.setdefault("paste", {"mask": "ellipse"})
    return stitch_video(video / "crops.mkv", video / "edit.npy", video / "g.pt", settings, out,
                        noise_path=video / "noise.pt", **kwargs)


def test_the_regions_are_a_band_around_the_face_and_along_the_crop_edge():
    masks = torch.zeros(1, 40, 40)
    masks[0, 10:20, 10:20] = 1.0  # a face region well inside
    masks[0, 30:40, 15:25] = 0.7  # one that runs to the bottom edge
    masks[0, 0:5, 0:5] = 0.4  # below one half: not face
    content, border = stitch_regions(masks, band=3)
    assert content.shape == border.shape == (1, 1, 40, 40)
    assert content[0, 0].sum() == 100 + 100
    assert not border[0, 0, 10:20, 10:20].any()  # a face away from the edge is no border
    assert border[0, 0, 7:23, 7:23].sum() == 16 * 16 - 100  # the dilated square minus the face
    assert border[0, 0, 6, 10] == 0 and border[0, 0, 7, 10] == 1
    assert border[0, 0, 37:40, 15:25].all() and not border[0, 0, 34, 18]  # the edge band inside the face
    assert set(border.unique().tolist()) <= {0.0, 1.0}
    assert band_pixels(50, 1024) == 50 and band_pixels(50, 256) == 12 and band_pixels(50, 16) == 1


def test_stitching_lowers_the_border_loss_and_writes_one_crop_per_frame(video, tmp_path):
    out = tmp_path / "stitched.mkv"
    result = run(video, out)
    assert (result["steps"] == SMALL["steps"]).all()
    assert (result["border_after"] < 0.8 * result["border_before"]).all()
    crops = open_crops(out)
    assert len(crops) == FRAMES and crops.resolution == RESOLUTION
    assert not resume_path(out).exists() and not parts_dir(out).exists()


def test_a_copy_stops_once_its_border_loss_is_below_the_threshold(video, tmp_path):
    out = tmp_path / "stitched.mkv"
    result = run(video, out, {**SMALL, "stop_loss": 100.0})  # every untuned render is already below it
    assert (result["steps"] == 0).all()
    assert torch.equal(result["border_before"], result["border_after"])
    g = models.load_generator(video / "g.pt")
    with torch.no_grad():
        plain = g.synthesis(torch.from_numpy(np.load(video / "edit.npy")))
    pixels = ((plain.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(open_crops(out).read(), pixels)  # what assemble renders without stitching


def test_the_parser_mask_is_computed_as_assemble_computes_it(video, tmp_path):
    write_tiny_parser(tmp_path / "parser.pth")
    out = tmp_path / "parsed.mkv"
    result = run(video, out, {**SMALL, "steps": 3}, paste={"mask": "parser"}, parser_path=tmp_path / "parser.pth")
    assert len(open_crops(out)) == FRAMES and result["steps"].tolist() == [3] * FRAMES
    with pytest.raises(CiinvError, match="paste.mask parser needs --parser"):
        run(video, tmp_path / "none.mkv", paste={"mask": "parser"})


def test_a_chain_starts_each_frame_from_the_previous_frames_copy(video, tmp_path):
    fresh = run(video, tmp_path / "fresh.mkv", {**SMALL, "chain": 1})
    chained = run(video, tmp_path / "chained.mkv", {**SMALL, "chain": FRAMES})
    a, b = open_crops(tmp_path / "fresh.mkv").read(), open_crops(tmp_path / "chained.mkv").read()
    assert np.array_equal(a[0], b[0])  # both start from the generator
    assert all(not np.array_equal(a[i], b[i]) for i in range(1, FRAMES))
    assert torch.equal(fresh["border_before"], chained["border_before"])  # the untuned render's, in both


def test_a_killed_job_resumes_and_ends_exactly_like_an_uninterrupted_one(video, tmp_path):
    whole = tmp_path / "whole.mkv"
    run(video, whole)
    out = tmp_path / "resumed.mkv"
    firsts = []  # the first frame count each run reports

    def start(kill_at=None):
        reported = []

        def on_frames(done):
            reported.append(done)
            if done == kill_at:
                raise Kill

        try:
            return run(video, out, on_frames=on_frames)
        finally:
            firsts.append(reported[0])

    for kill_at in (3, 5):  # parts every 2 frames, at chain restarts: resumes after frame 2, then after frame 4
        with pytest.raises(Kill):
            start(kill_at)
        assert resume_path(out).exists() and not out.exists()
    result = start()
    assert firsts == [1, 3, 5]
    assert np.array_equal(open_crops(whole).read(), open_crops(out).read())
    assert result["steps"].shape == (FRAMES,)
    assert not resume_path(out).exists() and not parts_dir(out).exists()


def test_a_resume_state_from_other_settings_is_not_used(video, tmp_path):
    out = tmp_path / "stitched.mkv"

    def kill(done):
        if done == 3:
            raise Kill

    with pytest.raises(Kill):
        run(video, out, on_frames=kill)
    reported = []
    run(video, out, {**SMALL, "lr": 1e-3}, on_frames=reported.append)
    assert reported[0] == 1
    expected = tmp_path / "expected.mkv"
    run(video, expected, {**SMALL, "lr": 1e-3})
    assert np.array_equal(open_crops(expected).read(), open_crops(out).read())


def test_settings_default_to_stits_but_for_the_chain():
    s = StitchSettings()
    assert (s.enabled, s.steps, s.lr, s.border_band, s.content_weight, s.stop_loss) == (
        False, 100, 3e-4, 50.0, 0.01, 0.005)
    assert s.chain == 16


def test_the_command_line_stitches_with_the_config_options(video, tmp_path):
    from ciinv.cli import config_arguments, main

    out = tmp_path / "cli.mkv"
    assert main(["stitch", "--crops", str(video / "crops.mkv"), "--codes", str(video / "edit.npy"), "--noise",
                 str(video / "noise.pt"), "--generator", str(video / "g.pt"), *config_arguments("stitch", SMALL),
                 "--mask", "ellipse", "--out", str(out), "--device", "cpu"]) == 0
    assert np.array_equal(open_crops(out).read(), open_crops(run_once(video, tmp_path)).read())


def run_once(video, tmp_path):
    out = tmp_path / "api.mkv"
    run(video, out)
    return out


def test_assemble_needs_codes_or_stitched_crops(tmp_path, capsys):
    from ciinv.cli import main

    assert main(["assemble", str(tmp_path / "v.mp4"), "--meta", "m.json", "--align", "a.npz", "--mask", "ellipse",
                 "--out", str(tmp_path / "o.mp4")]) == 1
    assert "give --codes and --generator (render the codes), or --stitched" in capsys.readouterr().err


def test_codes_and_crops_of_different_lengths_are_refused_naming_both(video, tmp_path):
    np.save(tmp_path / "short.npy", np.load(video / "edit.npy")[:4])
    with pytest.raises(CiinvError, match=r"crops.mkv holds 5 crops but .*short.npy codes for 4 frames"):
        stitch_video(video / "crops.mkv", tmp_path / "short.npy", video / "g.pt", SMALL, tmp_path / "out.mkv",
                     noise_path=video / "noise.pt", paste={"mask": "ellipse"})
    assert not (tmp_path / "out.mkv").exists()
