"""Assembly: faces pasted back into their frames and encoded with the source's timing and sound; the
edited codes rendered, pasted and encoded in one stream give the video that rendering them to PNG
files first gave."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ciinv.faces.align import align_video, load_align
from ciinv.faces.assemble import assemble_video
from ciinv.faces.paste import paste_back
from ciinv.io.crops import open_crops
from ciinv.errors import CiinvError
from ciinv.faces.landmarks import detect_video, save_landmarks
from ciinv.models import load_generator
from ciinv.faces.render import load_renderer
from ciinv.dev.sample import make_clip
from ciinv.dev.tiny import write_tiny_parser, write_tiny_stylegan2
from ciinv.io.video import VideoReader, VideoWriter, probe

MASKS = ["parser", "landmarks", "ellipse"]


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assemble")
    video = folder / "clip.mp4"
    make_clip(video, frames=8, fps="30000/1001", size=(256, 192), audio=True)
    meta = probe(video)
    save_landmarks(folder / "landmarks.npz", detect_video(video, detector="dlib", meta=meta))
    align_video(video, folder / "landmarks.npz", folder / "align.npz", folder / "crops.mkv", resolution=256, meta=meta)
    return folder, video, meta


def source_crops(folder, frames: int) -> list[np.ndarray]:
    return list(open_crops(folder / "crops.mkv").read(0, frames))


def decoded(path) -> np.ndarray:
    with VideoReader(path, probe(path)) as reader:
        return np.stack([frame for _, frame in reader.frames()])


def test_unedited_crops_give_back_the_source(aligned):
    folder, video, meta = aligned
    out = folder / "out.mp4"
    assemble_video(video, meta, folder / "align.npz", source_crops(folder, 8), out, crf=12, preset="ultrafast")
    made = probe(out)
    assert (made["frames"], made["fps"], made["width"], made["height"], made["audio"]) == (
        meta["frames"], meta["fps"], meta["width"], meta["height"], True)
    for a, b in zip(decoded(video), decoded(out)):
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        assert 10 * np.log10(255**2 / mse) > 30  # two H.264 generations and one resampling


def test_a_crop_count_that_does_not_match_the_video_is_refused(aligned, tmp_path):
    folder, video, meta = aligned
    with pytest.raises(CiinvError, match="clip.mp4 has 8 frames.*age.npy 7 frames"):
        assemble_video(video, meta, folder / "align.npz", source_crops(folder, 7), tmp_path / "out.mp4",
                       name="age.npy")
    assert not (tmp_path / "out.mp4").exists()


def test_a_damaged_alignment_is_refused_naming_the_file(aligned, tmp_path):
    folder, video, meta = aligned
    data = (folder / "align.npz").read_bytes()
    (tmp_path / "align.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CiinvError, match=r"align.npz: not a readable .npz archive.*rerun the align stage"):
        assemble_video(video, meta, tmp_path / "align.npz", source_crops(folder, 8), tmp_path / "out.mp4")


# --------------------------------------------------------------------------------------------
# The stream against the old way: the edit stage rendering a folder of PNGs, assemble reading it


@pytest.fixture(scope="module")
def edited(tmp_path_factory, aligned):
    """A 64² generator, the clip's 'edited codes' near its mean, and the plus variant's noise maps."""
    folder = tmp_path_factory.mktemp("edited")
    write_tiny_stylegan2(folder / "g.pt", resolution=64, w_dim=32, n_mlp=2, max_channels=16)
    write_tiny_parser(folder / "parser.pth")
    generator = load_generator(folder / "g.pt")
    codes = generator.w_avg + 0.5 * torch.randn(8, generator.num_ws, 32, generator=torch.Generator().manual_seed(0))
    np.save(folder / "age.npy", codes.numpy())
    maps = [torch.randn(3, *m.shape[1:], generator=torch.Generator().manual_seed(k)).half()
            for k, m in enumerate(generator.noise_maps())]
    torch.save({"noise": maps, "frame_window": torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])}, folder / "noise.pt")
    return folder, generator


def render_to_files(generator, codes_path, noise_path, out_dir, batch: int = 4) -> None:
    """The edit stage before: every frame rendered, 4 at a time, to out_dir/{i:06d}.png."""
    codes = torch.from_numpy(np.load(codes_path))
    stored = torch.load(noise_path, weights_only=True)
    maps, frame_window = [m.float() for m in stored["noise"]], stored["frame_window"]
    out_dir.mkdir()
    with torch.no_grad():
        for start in range(0, len(codes), batch):
            stop = min(start + batch, len(codes))
            images = generator.synthesis(codes[start:stop], noise=[m[frame_window[start:stop]] for m in maps])
            pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for offset, image in enumerate(pixels):
                Image.fromarray(image).save(out_dir / f"{start + offset:06d}.png", compress_level=1)


def assemble_from_files(video, meta, align_path, crops_dir, out_path, **encoding) -> None:
    """assemble before: each PNG read back, pasted into its frame, encoded."""
    quads = load_align(align_path)["quads"]
    with VideoReader(video, meta) as reader, VideoWriter(
        out_path, fps=meta["fps"], width=meta["width"], height=meta["height"], audio_from=video, audio_tail=True,
        timing=meta.get("timing"), **encoding,
    ) as writer:
        for index, frame in reader.frames():
            crop = np.asarray(Image.open(crops_dir / f"{index:06d}.png").convert("RGB"))
            writer.write(paste_back(frame, crop, quads[index]))


def test_the_stream_gives_the_video_that_rendering_to_files_first_gave(aligned, edited, tmp_path):
    folder, video, meta = aligned
    work, generator = edited
    encoding = dict(crf=18, preset="ultrafast")
    render_to_files(generator, work / "age.npy", work / "noise.pt", tmp_path / "crops")
    assemble_from_files(video, meta, folder / "align.npz", tmp_path / "crops", tmp_path / "files.mp4", **encoding)
    renderer = load_renderer(work / "age.npy", generator, work / "noise.pt", batch=3)  # another batch size
    assemble_video(video, meta, folder / "align.npz", renderer, tmp_path / "stream.mp4", **encoding)

    assert {k: v for k, v in probe(tmp_path / "stream.mp4").items() if k != "path"} == {
        k: v for k, v in probe(tmp_path / "files.mp4").items() if k != "path"}
    old, new = decoded(tmp_path / "files.mp4"), decoded(tmp_path / "stream.mp4")
    assert old.shape == new.shape == (8, 192, 256, 3)
    # The tolerance: a crop pixel may differ by one level where the generator's float result sits at
    # a rounding edge (another batch size, another device); after the paste and H.264 at most a few
    # levels, rarely. (On the CPU the two videos decode identically.)
    difference = np.abs(old.astype(int) - new.astype(int))
    assert difference.max() <= 4 and (difference > 0).mean() < 0.01, (difference.max(), (difference > 0).mean())
    assert not np.array_equal(decoded(video), new)  # the faces did change


def test_a_generator_rendering_nan_leaves_no_video(aligned, edited, tmp_path):
    folder, video, meta = aligned
    work, _ = edited
    broken = load_generator(work / "g.pt")
    with torch.no_grad():
        next(p for name, p in broken.named_parameters() if "conv" in name).fill_(float("nan"))
    renderer = load_renderer(work / "age.npy", broken, work / "noise.pt", name="edit 'age'")
    with pytest.raises(CiinvError, match="edit 'age': the generator rendered non-finite pixels for frame 0"):
        assemble_video(video, meta, folder / "align.npz", renderer, tmp_path / "out.mp4", preset="ultrafast")
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("mask", MASKS)
def test_the_command_renders_the_codes_into_the_video_with_each_mask(aligned, edited, tmp_path, mask):
    from ciinv.cli import main
    from ciinv.io.files import write_json

    folder, video, meta = aligned
    work, _ = edited
    write_json(tmp_path / "meta.json", meta)
    reads = {"parser": ["--parser", str(work / "parser.pth"), "--crops", str(folder / "crops.mkv"),
                        "--parser-size", "128", "--parser-every", "3"],
             "landmarks": ["--landmarks", str(folder / "landmarks.npz")], "ellipse": []}[mask]
    assert main(["assemble", str(video), "--meta", str(tmp_path / "meta.json"), "--align", str(folder / "align.npz"),
                 "--codes", str(work / "age.npy"), "--noise", str(work / "noise.pt"), "--generator",
                 str(work / "g.pt"), "--device", "cpu", "--preset", "ultrafast", "--mask", mask, *reads, "--out",
                 str(tmp_path / "age.mp4")]) == 0
    assert probe(tmp_path / "age.mp4")["frames"] == 8
    if mask != "ellipse":  # what the mask needs is asked for by name
        assert main(["assemble", str(video), "--meta", str(tmp_path / "meta.json"), "--align",
                     str(folder / "align.npz"), "--codes", str(work / "age.npy"), "--generator", str(work / "g.pt"),
                     "--device", "cpu", "--mask", mask, "--out", str(tmp_path / "no.mp4")]) == 1
        assert not (tmp_path / "no.mp4").exists()
    missing = main(["assemble", str(video), "--meta", str(tmp_path / "meta.json"), "--align",
                    str(folder / "align.npz"), "--codes", str(tmp_path / "gone.npy"), "--generator",
                    str(work / "g.pt"), "--device", "cpu", "--mask", "ellipse", "--out", str(tmp_path / "gone.mp4")])
    assert missing == 1 and not (tmp_path / "gone.mp4").exists()


def test_each_frame_gets_its_own_smoothed_mask_through_the_look_ahead(aligned, tmp_path):
    """The stream (masks a batch at a time, smoothed over time some frames behind) pastes frame i
    with mask i: the same video as every mask computed for the whole clip first."""
    from ciinv.faces.assemble import ClipMasks
    from ciinv.faces.landmarks import load_landmarks
    from ciinv.faces.paste import PasteSettings, face_masks, smooth_over_time

    folder, video, meta = aligned
    quads = load_align(folder / "align.npz")["quads"]
    points = load_landmarks(folder / "landmarks.npz")["points"]
    rng = np.random.default_rng(0)
    crops = list(rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8))  # every frame's crop unlike the others
    settings = PasteSettings(mask="landmarks", temporal_sigma=1.5)
    encoding = dict(crf=18, preset="ultrafast")
    assemble_video(video, meta, folder / "align.npz", crops, tmp_path / "stream.mp4",
                   masks=ClipMasks(settings, quads, points=points), **encoding)

    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
    masks = smooth_over_time(face_masks(settings, pixels, points=points, quads=quads), 1.5)
    pasted_whole(tmp_path / "whole.mp4", video, meta, crops, quads, masks, encoding)
    np.testing.assert_array_equal(decoded(tmp_path / "stream.mp4"), decoded(tmp_path / "whole.mp4"))


def pasted_whole(path, video, meta, crops, quads, masks, encoding) -> None:
    """The reference for a streamed assembly: every frame pasted with its crop and its mask from
    whole-clip arrays, encoded as assemble encodes."""
    with VideoReader(video, meta) as reader, VideoWriter(
        path, fps=meta["fps"], width=meta["width"], height=meta["height"], audio_from=video,
        audio_tail=True, **encoding,
    ) as writer:
        for index, frame in reader.frames():
            writer.write(paste_back(frame, crops[index], quads[index], masks[index]))


class InBatches(list):
    """Crops handed out ``size`` at a time with their masks, as ``CodeRenderer.batches`` does."""

    def __init__(self, crops, size: int):
        super().__init__(crops)
        self.size = size

    def batches(self, then):
        for start in range(0, len(self), self.size):
            crops = np.stack(self[start:start + self.size])
            yield crops, then(range(start, start + len(crops)), torch.from_numpy(crops).permute(0, 3, 1, 2))


@pytest.mark.parametrize("batch", [4, 5])  # plain crops (masks 4 at a time), a renderer's batches of 5
def test_with_parser_key_frames_the_stream_gives_the_whole_clips_masks(aligned, tmp_path, batch):
    """parser_every 3 on 8 frames (key frames 0, 3, 6, 7) in batches that are no multiple of 3: the
    stream pastes every frame with the mask that the whole clip's masks (``clip_masks``) give it."""
    from ciinv.faces.assemble import ClipMasks
    from ciinv.faces.paste import PasteSettings, clip_masks
    from tests.test_paste import ColourParser

    folder, video, meta = aligned
    quads = load_align(folder / "align.npz")["quads"]
    sources = source_crops(folder, 8)
    crops = [np.roll(crop, 3 * k, axis=1) for k, crop in enumerate(sources)]  # the face drifts: masks differ
    settings = PasteSettings(mask="parser", parser_size=128, parser_every=3, temporal_sigma=1.0)
    faces = crops if batch == 4 else InBatches(crops, batch)
    encoding = {"crf": 18, "preset": "ultrafast"}
    assemble_video(video, meta, folder / "align.npz", faces, tmp_path / "stream.mp4", **encoding,
                   masks=ClipMasks(settings, quads, parser=ColourParser(), crops=open_crops(folder / "crops.mkv")))

    def as_tensor(images):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)

    masks = clip_masks(settings, as_tensor(crops), source=as_tensor(sources), parser=ColourParser())
    every = clip_masks(PasteSettings(mask="parser", parser_size=128), as_tensor(crops), source=as_tensor(sources),
                       parser=ColourParser())
    assert not np.array_equal(masks, every)  # frames between key frames got other masks
    pasted_whole(tmp_path / "whole.mp4", video, meta, crops, quads, masks, encoding)
    np.testing.assert_array_equal(decoded(tmp_path / "stream.mp4"), decoded(tmp_path / "whole.mp4"))


def test_mask_inputs_of_another_length_are_refused_naming_the_file(aligned, edited):
    from ciinv.faces.assemble import ClipMasks
    from ciinv.faces.landmarks import load_landmarks
    from ciinv.faces.paste import PasteSettings
    from ciinv.models import load_parser

    folder, _, _ = aligned
    work, _ = edited
    quads = load_align(folder / "align.npz")["quads"]
    with pytest.raises(CiinvError, match=r"crops.mkv holds 8 crops but the clip has 9 frames.*align stage"):
        ClipMasks(PasteSettings(mask="parser"), np.concatenate([quads, quads[:1]]),
                  parser=load_parser(work / "parser.pth"), crops=open_crops(folder / "crops.mkv"))
    points = load_landmarks(folder / "landmarks.npz")["points"]
    with pytest.raises(CiinvError, match=r"landmarks.npz holds 7 frames but the clip has 8.*landmarks and align"):
        ClipMasks(PasteSettings(mask="landmarks"), quads, points=points[:7], landmarks_path=folder / "landmarks.npz")
