"""The report's pictures and metrics table (ciinv/report.py), on small real files."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from ciinv.errors import CiinvError
from ciinv.models import load_flow, load_generator
from ciinv.faces.render import load_renderer
from ciinv.report import FullFrames, loss_plot, measure, preview, read_losses, report_assets
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


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 6-frame clip of the astronaut (160²), its meta, landmarks and align files, as the stages write them."""
    from ciinv.dev.sample import make_clip
    from ciinv.faces.align import align_video
    from ciinv.faces.landmarks import detect_video, save_landmarks
    from ciinv.io.files import write_json
    from ciinv.io.video import probe

    folder = tmp_path_factory.mktemp("video")
    make_clip(folder / "clip.mp4", frames=6, fps="25", size=(160, 160), audio=False)
    meta = probe(folder / "clip.mp4")
    write_json(folder / "meta.json", meta)
    save_landmarks(folder / "landmarks.npz", detect_video(folder / "clip.mp4", meta=meta))
    align_video(folder / "clip.mp4", folder / "landmarks.npz", folder / "align.npz", folder / "crops.mkv",
                resolution=32, meta=meta)
    return folder


def assembled(video, renderers: dict, out_dir) -> FullFrames:
    """Each renderer's frames pasted into the clip as the assemble stage does: the FullFrames of the report."""
    from ciinv.faces.align import load_align
    from ciinv.faces.assemble import assemble_video
    from ciinv.faces.landmarks import load_landmarks
    from ciinv.io.meta import read_meta

    meta = read_meta(video / "meta.json")
    outputs = {}
    for name, renderer in renderers.items():
        outputs[name] = out_dir / f"clip.{name}.mp4"
        assemble_video(video / "clip.mp4", meta, video / "align.npz", renderer, outputs[name])
    return FullFrames(video / "clip.mp4", meta, load_align(video / "align.npz")["quads"],
                      load_landmarks(video / "landmarks.npz")["points"], outputs)


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


def test_loss_curves_stored_in_bfloat16_plot_as_the_float32_ones(tmp_path):
    """The invert stage stores its loss curves in bfloat16 (ciinv.inversion.shards): read back they
    are the float32 curves to 3 significant digits, and the plot is the float32 curves' picture."""
    from ciinv.inversion.optimizer import WindowResult
    from ciinv.inversion.settings import InvertSettings
    from ciinv.inversion.shards import shard_payload
    from ciinv.inversion.shards import write_shard as write_invert_shard
    from ciinv.inversion.windows import plan_windows

    windows = plan_windows(9, 3, 2)
    rng = torch.Generator().manual_seed(0)
    curves = [torch.logspace(1, -4, 800)[:, None] * (1 + 0.3 * torch.rand(800, 4, generator=rng)) for _ in windows]
    results = [WindowResult(index=w.index, start=w.start, w_b=torch.zeros(2, 4), n_k=torch.zeros(2, 1, 4),
                            codes=torch.zeros(3, 2, 4), losses=c, steps=800, warm=False) for w, c in zip(windows, curves)]
    write_invert_shard(tmp_path / "shard_0000.pt", shard_payload(windows, results, InvertSettings(), "g.pt", 9, 0))
    write_shard(tmp_path / "float32.pt", [800] * len(windows))  # the float32 layout, then its curves replaced
    stored = torch.load(tmp_path / "float32.pt", weights_only=True)
    stored["loss_history"] = {name: torch.stack([c[:, k] for c in curves]) for k, name in
                              enumerate(("total", "icc", "mse", "perceptual"))}
    torch.save(stored, tmp_path / "float32.pt")

    for window, curve in zip(read_losses([tmp_path / "shard_0000.pt"]), curves):
        np.testing.assert_allclose(window["mse"], curve[:, 2].double().numpy(), rtol=2.0**-8)
    loss_plot([tmp_path / "shard_0000.pt"], tmp_path / "bf16.png")
    loss_plot([tmp_path / "float32.pt"], tmp_path / "fp32.png")
    with Image.open(tmp_path / "bf16.png") as a, Image.open(tmp_path / "fp32.png") as b:
        differ = np.any(np.asarray(a.convert("RGB")) != np.asarray(b.convert("RGB")), axis=-1)
    assert differ.mean() < 0.002  # a few pixels of the curves at most


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


def test_report_assets_shows_and_measures_the_full_frames(tmp_path, generator_path, video):
    from ciinv.frame_metrics import FaceEmbedder

    generator = load_generator(generator_path)
    edits = {name: load_renderer(write_codes(tmp_path / f"{name}.npy", generator, seed=k), generator, batch=4)
             for k, name in enumerate(["recon", "edited"])}
    frames = assembled(video, edits, tmp_path)
    shard = write_shard(tmp_path / "shard_0000.pt", [4, 4])
    out = tmp_path / "report"
    result = report_assets(video / "crops.mkv", edits, [shard], frames, out, load_flow("dis"),
                           embedder=FaceEmbedder())
    assert sorted(p.name for p in out.iterdir()) == ["losses.png", "metrics.html", "preview.png", "stills.png"]
    x0, y0, x1, y1 = frames.box
    with Image.open(out / "preview.png") as moving:
        assert moving.n_frames == 6
        # The first frame: source | recon | edited, each the face box 160 px high; the source cell
        # is the source video's frame 0 there.
        first = np.asarray(moving.convert("RGB")).astype(int)
    from ciinv.io.video import VideoReader

    with VideoReader(frames.video) as reader:
        frame0 = next(reader.frames())[1][y0:y1, x0:x1]
    width = round((x1 - x0) * 160 / (y1 - y0))
    expected = np.asarray(Image.fromarray(frame0).resize((width, 160), Image.LANCZOS)).astype(int)
    assert np.abs(first[16 : 16 + 160, :width] - expected).mean() < 6  # 256 colours
    with Image.open(out / "stills.png") as stills:
        assert stills.height == 16 + 3 * 162  # source, recon, edited
    full = result["full_frame"]
    assert list(full) == ["source_warp", "recon", "edited"]
    for name in edits:  # a 32² render of random codes pasted in: a face that flickers, a seam, another identity
        assert full[name]["rel_warp"] > 1 and full[name]["seam"] > 0
        assert 0 < full[name]["tl_id"] <= 1.01 and full[name]["tg_id"] > 0
    table = (out / "metrics.html").read_text()
    assert table.index('id="full-frame"') < table.index('id="metrics"')
    assert "<td>recon</td>" in table and "<td>edited</td>" in table and "LPIPS left out" in table
    assert "TL-ID and TG-ID left out" not in table


def test_a_grainy_preview_of_fifty_frames_is_scaled_to_stay_under_two_megabytes(tmp_path):
    from ciinv.dev.sample import render_frames

    clip = render_frames(50, (256, 256), seed=3)
    noise = np.random.default_rng(0).normal(0, 6, clip.shape)  # sensor noise: worst for PNG
    cells = {label: [Image.fromarray(np.clip(f + k * noise[i], 0, 255).astype(np.uint8)).resize((200, 160))
                     for i, f in enumerate(clip)] for k, label in enumerate(["source", "recon", "smile", "age"])}
    preview(cells, Fraction(25), tmp_path / "preview.png")
    size = (tmp_path / "preview.png").stat().st_size
    assert size < 2_000_000, size
    with Image.open(tmp_path / "preview.png") as moving:
        assert moving.n_frames == 50 and moving.is_animated
        assert moving.width < 4 * (200 + 2)  # grainy pictures: scaled down to fit, every frame kept


def test_edit_codes_of_another_length_are_an_error_naming_the_file(tmp_path, generator_path, video):
    generator = load_generator(generator_path)
    short = load_renderer(write_codes(tmp_path / "short.npy", generator, frames=4), generator)
    frames = FullFrames(video / "clip.mp4", {}, np.zeros((6, 4, 2)), np.zeros((6, 68, 2)), {"recon": tmp_path / "x"})
    with pytest.raises(CiinvError, match=r"short.npy: codes of 4 frames but .*crops.mkv has 6 crops; rerun the edit"):
        report_assets(video / "crops.mkv", {"recon": short}, [], frames, tmp_path / "report", load_flow("dis"))


def test_an_output_video_of_another_length_is_an_error_naming_it(tmp_path, generator_path, video):
    from ciinv.dev.sample import make_clip

    generator = load_generator(generator_path)
    recon = load_renderer(write_codes(tmp_path / "recon.npy", generator), generator)
    frames = assembled(video, {"recon": recon}, tmp_path)
    make_clip(frames.outputs["recon"], frames=4, fps="25", size=(160, 160), audio=False)
    with pytest.raises(CiinvError, match=r"clip.recon.mp4: 4 frames of 160x160, but .*clip.mp4 has 6 .* assemble"):
        report_assets(video / "crops.mkv", {"recon": recon}, [], frames, tmp_path / "report", load_flow("dis"))


def test_the_command_measures_lpips_when_its_weights_are_given(tmp_path, generator_path, video):
    from ciinv.cli import main
    from ciinv.dev.tiny import write_tiny_vgg16

    generator = load_generator(generator_path)
    codes = write_codes(tmp_path / "recon.npy", generator)
    frames = assembled(video, {"recon": load_renderer(codes, generator)}, tmp_path)
    # Source crops that are exactly what the recon codes render: no distance to measure.
    (tmp_path / "crops").mkdir()
    for i, crop in enumerate(load_renderer(codes, generator)):
        Image.fromarray(crop).save(tmp_path / "crops" / f"{i:06d}.png")
    shard = write_shard(tmp_path / "shard_0000.pt", [3])
    write_tiny_vgg16(tmp_path / "vgg.pth", width_divisor=16)  # LPIPS taps: 4, 8, 16, 32, 32 channels
    torch.save({f"lin{k}.model.1.weight": torch.ones(1, w, 1, 1) for k, w in enumerate([4, 8, 16, 32, 32])},
               tmp_path / "lin.pth")
    out = tmp_path / "report"
    assert main(["report-assets", "--video", str(video / "clip.mp4"), "--crops", str(tmp_path / "crops"),
                 "--meta", str(video / "meta.json"), "--align", str(video / "align.npz"),
                 "--landmarks", str(video / "landmarks.npz"), "--outputs", str(frames.outputs["recon"]),
                 "--edits", str(codes), "--names", "recon", "--generator", str(generator_path), "--shards", str(shard),
                 "--flow", "dis", "--vgg16", str(tmp_path / "vgg.pth"), "--lpips", str(tmp_path / "lin.pth"),
                 "--out", str(out), "--device", "cpu"]) == 0
    table = (out / "metrics.html").read_text()
    assert "<tr><td>recon</td><td>inf</td><td>0</td>" in table  # the crops themselves: no distance
    assert "LPIPS left out" not in table
    assert re.search(r'id="full-frame".*<tr><td>recon</td>(<td>[0-9.e-]+</td>){4}</tr>', table, re.S)


def test_the_frames_left_unedited_are_named_in_the_report():
    from ciinv.report import unedited_note

    assert unedited_note(None) is None and unedited_note(np.ones(5, bool)) is None
    edited = np.ones(40, bool)
    edited[20:30] = False
    assert unedited_note(edited).endswith("20-29 (10 frames)")


def test_each_edits_codes_are_rendered_once_for_both_tables(tmp_path, generator_path, video, monkeypatch):
    from ciinv.faces.render import CodeRenderer

    generator = load_generator(generator_path)
    edits = {name: load_renderer(write_codes(tmp_path / f"{name}.npy", generator, seed=k), generator, batch=4)
             for k, name in enumerate(["recon", "edited"])}
    frames = assembled(video, edits, tmp_path)
    rendered = []
    original = CodeRenderer.render

    def counted(self, indices):
        rendered.extend(indices)
        return original(self, indices)

    monkeypatch.setattr(CodeRenderer, "render", counted)
    result = report_assets(video / "crops.mkv", edits, [write_shard(tmp_path / "shard_0000.pt", [3])], frames,
                           tmp_path / "report", load_flow("dis"))
    assert sorted(rendered) == sorted(2 * list(range(6)))  # every frame of both edits, once
    assert set(result["crops"]["rel_warp"]) == {"recon", "edited"} and "psnr" in result["crops"]
    assert set(result["full_frame"]) == {"source_warp", "recon", "edited"}


def test_with_stitching_the_report_shows_and_measures_the_stitched_crops(tmp_path, generator_path, video):
    """The stitch stage's crops (here: a crops folder), which the output pasted, stand for the codes."""
    generator = load_generator(generator_path)
    renderer = load_renderer(write_codes(tmp_path / "recon.npy", generator), generator)
    frames = assembled(video, {"recon": renderer}, tmp_path)
    stitched = tmp_path / "stitched"
    stitched.mkdir()
    for i, crop in enumerate(renderer):
        Image.fromarray(crop).save(stitched / f"{i:06d}.png")
    out = tmp_path / "report"
    result = report_assets(video / "crops.mkv", {"recon": stitched}, [write_shard(tmp_path / "shard_0000.pt", [3])],
                           frames, out, load_flow("dis"))
    # The same faces as the codes render: the same measures as without stitching.
    plain = report_assets(video / "crops.mkv", {"recon": renderer}, [write_shard(tmp_path / "shard_0001.pt", [3])],
                          frames, tmp_path / "plain", load_flow("dis"))
    assert result["crops"]["psnr"] == pytest.approx(plain["crops"]["psnr"])
    assert result["full_frame"]["recon"]["seam"] == pytest.approx(plain["full_frame"]["recon"]["seam"])
    assert "Stitched (stitch.enabled): recon pasted the stitch stage" in (out / "metrics.html").read_text()
    assert "Stitched" not in (tmp_path / "plain" / "metrics.html").read_text()
    with pytest.raises(CiinvError, match=r"stitched: 5 stitched crops but .*crops.mkv has 6 crops; rerun the stitch"):
        (stitched / "000005.png").unlink()
        report_assets(video / "crops.mkv", {"recon": stitched}, [], frames, tmp_path / "short", load_flow("dis"))
