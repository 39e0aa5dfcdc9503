"""The report's pictures and metrics table (ciinv/report.py), on small real files."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from ciinv.errors import CiinvError
from ciinv.models import load_flow, load_generator
from ciinv.faces.render import load_renderer
from ciinv.report import loss_plot, measure, read_losses, report_assets
from ciinv.dev.tiny import write_tiny_stylegan2


def write_crops(folder, frames: int = 6, size: int = 48, seed: int = 0, shift: int = 2):
    """A textured picture sliding right by ``shift`` pixels a frame, as {i:06d}.png crops."""
    folder.mkdir(parents=True)
    texture = np.random.default_rng(seed).integers(0, 256, (size, size + frames * shift, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(texture).resize((size + frames * shift, size), Image.BILINEAR))
    for i in range(frames):
        Image.fromarray(np.ascontiguousarray(texture[:, i * shift : i * shift + size])).save(folder / f"{i:06d}.png")
    return folder


@pytest.fixture(scope="module")
def generator_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g.pt"
    write_tiny_stylegan2(path, resolution=32, w_dim=32, n_mlp=2, max_channels=16)
    return path


def write_codes(path, generator, frames: int = 6, seed: int = 0):
    """An edit stage's codes: near the generator's mean, moving a little from frame to frame."""
    steps = 0.1 * torch.randn(frames, generator.num_ws, 32, generator=torch.Generator().manual_seed(seed))
    np.save(path, (generator.w_avg + steps.cumsum(0)).numpy())
    return path


def write_shard(path, steps: list[int]):
    """A shard file's loss fields: every window's losses, NaN after its last step."""
    history = torch.full((len(steps), max(steps)), float("nan"))
    for k, n in enumerate(steps):
        history[k, :n] = torch.linspace(1.0, 0.1, n) * (k + 1)
    torch.save({"steps": torch.tensor(steps), "loss_history": {name: history.clone() for name in
                                                              ("total", "icc", "mse", "perceptual")}}, path)
    return path


def test_loss_curves_drop_the_padding_and_plot_every_shard(tmp_path):
    shards = [write_shard(tmp_path / "shard_0000.pt", [5, 3]), write_shard(tmp_path / "shard_0001.pt", [4])]
    windows = read_losses(shards)
    assert [len(w["total"]) for w in windows] == [5, 3, 4]
    assert all(np.isfinite(w["mse"]).all() for w in windows)
    loss_plot(shards, tmp_path / "losses.png")
    with Image.open(tmp_path / "losses.png") as image:
        pixels = np.asarray(image.convert("RGB"))
    assert len({tuple(p) for p in pixels.reshape(-1, 3)}) > 3  # axes, text and coloured curves, not a blank page


def test_a_shard_without_loss_curves_is_an_error_naming_it(tmp_path):
    torch.save({"codes": torch.zeros(1)}, tmp_path / "shard_0000.pt")
    with pytest.raises(CiinvError, match="shard_0000.pt"):
        read_losses([tmp_path / "shard_0000.pt"])


def test_an_output_equal_to_the_input_scores_infinite_psnr_and_relative_warp_one(tmp_path):
    source = write_crops(tmp_path / "crops", frames=20)  # more than one chunk of frames
    flicker = tmp_path / "flicker"
    flicker.mkdir()
    for i, path in enumerate(sorted(source.glob("*.png"))):
        pixels = np.asarray(Image.open(path)).astype(np.int16) + (40 if i % 2 else -40)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(flicker / path.name)
    result = measure(source, {"recon": source, "flicker": flicker}, 20, load_flow("dis"), "cpu")
    assert math.isinf(result["psnr"])
    assert result["rel_warp"]["recon"] == pytest.approx(1.0)
    assert result["rel_warp"]["flicker"] > 2  # brightness jumping every frame is far less steady


def test_report_assets_renders_the_edits_codes_into_the_four_files(tmp_path, generator_path):
    generator = load_generator(generator_path)
    source = write_crops(tmp_path / "crops")
    edits = {name: load_renderer(write_codes(tmp_path / f"{name}.npy", generator, seed=k), generator, batch=4)
             for k, name in enumerate(["recon", "edited"])}
    shard = write_shard(tmp_path / "shard_0000.pt", [4, 4])
    out = tmp_path / "report"
    report_assets(source, edits, [shard], Fraction(25), out, load_flow("dis"))
    assert sorted(p.name for p in out.iterdir()) == ["losses.png", "metrics.html", "preview.png", "stills.png"]
    with Image.open(out / "preview.png") as preview:
        assert preview.n_frames == 6
        # The first frame: source | recon | edited, each 160 px wide; the recon cell is the rendered
        # frame 0 of its codes, scaled up.
        first = np.asarray(preview.convert("RGB")).astype(int)
    rendered = np.asarray(Image.fromarray(edits["recon"].render([0])[0]).resize((160, 160), Image.BILINEAR))
    cell = first[16 : 16 + 160, 162 : 162 + 160]
    assert np.abs(cell - rendered.astype(int)).mean() < 8
    table = (out / "metrics.html").read_text()
    assert "<td>recon</td>" in table and "<td>edited</td>" in table and "LPIPS left out" in table


def test_edit_codes_of_another_length_are_an_error_naming_the_file(tmp_path, generator_path):
    generator = load_generator(generator_path)
    source = write_crops(tmp_path / "crops", frames=6)
    short = load_renderer(write_codes(tmp_path / "short.npy", generator, frames=4), generator)
    with pytest.raises(CiinvError, match=r"short.npy: codes of 4 frames but .*crops has 6 crops; rerun the edit"):
        report_assets(source, {"recon": short}, [], Fraction(25), tmp_path / "report", load_flow("dis"))


def test_the_command_measures_lpips_when_its_weights_are_given(tmp_path, generator_path):
    from ciinv.cli import main
    from ciinv.io.files import write_json
    from ciinv.dev.tiny import write_tiny_vgg16
    from ciinv.dev.sample import make_clip
    from ciinv.io.video import probe

    make_clip(tmp_path / "clip.mp4", frames=6, fps="25", size=(64, 64), audio=False)
    write_json(tmp_path / "meta.json", probe(tmp_path / "clip.mp4"))
    # Source crops that are exactly what the recon codes render: no distance to measure.
    generator = load_generator(generator_path)
    codes = write_codes(tmp_path / "recon.npy", generator)
    (tmp_path / "crops").mkdir()
    for i, crop in enumerate(load_renderer(codes, generator)):
        Image.fromarray(crop).save(tmp_path / "crops" / f"{i:06d}.png")
    shard = write_shard(tmp_path / "shard_0000.pt", [3])
    write_tiny_vgg16(tmp_path / "vgg.pth", width_divisor=16)  # LPIPS taps: 4, 8, 16, 32, 32 channels
    torch.save({f"lin{k}.model.1.weight": torch.ones(1, w, 1, 1) for k, w in enumerate([4, 8, 16, 32, 32])},
               tmp_path / "lin.pth")
    out = tmp_path / "report"
    assert main(["report-assets", "--crops", str(tmp_path / "crops"), "--meta", str(tmp_path / "meta.json"),
                 "--edits", str(codes), "--names", "recon", "--generator", str(generator_path), "--shards", str(shard),
                 "--flow", "dis", "--vgg16", str(tmp_path / "vgg.pth"), "--lpips", str(tmp_path / "lin.pth"),
                 "--out", str(out), "--device", "cpu"]) == 0
    table = (out / "metrics.html").read_text()
    assert "<tr><td>recon</td><td>inf</td><td>0</td>" in table  # the crops themselves: no distance
    assert "LPIPS left out" not in table
