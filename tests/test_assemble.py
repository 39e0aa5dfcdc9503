"""Assembly: unedited crops pasted back give the source video again, with its timing and sound."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ciinv.align import align_video
from ciinv.assemble import assemble_video
from ciinv.crops import CropWriter, open_crops
from ciinv.errors import CiinvError
from ciinv.landmarks import detect_video, save_landmarks
from ciinv.sample import make_clip
from ciinv.video import VideoReader, probe


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("assemble")
    video = folder / "clip.mp4"
    make_clip(video, frames=8, fps="30000/1001", size=(256, 192), audio=True)
    meta = probe(video)
    save_landmarks(folder / "landmarks.npz", detect_video(video, detector="dlib", meta=meta))
    align_video(video, folder / "landmarks.npz", folder / "align.npz", folder / "crops.mkv", resolution=256, meta=meta)
    return folder, video, meta


def test_unedited_crops_give_back_the_source(aligned):
    folder, video, meta = aligned
    out = folder / "out.mp4"
    assemble_video(video, meta, folder / "align.npz", folder / "crops.mkv", out, crf=12, preset="ultrafast",
                   log=lambda m: None)
    made = probe(out)
    assert (made["frames"], made["fps"], made["width"], made["height"], made["audio"]) == (
        meta["frames"], meta["fps"], meta["width"], meta["height"], True)
    with VideoReader(video, meta) as source, VideoReader(out, made) as result:
        for (_, a), (_, b) in zip(source.frames(), result.frames()):
            mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
            assert 10 * np.log10(255**2 / mse) > 30  # two H.264 generations and one resampling


def test_a_crop_count_that_does_not_match_the_video_is_refused(aligned, tmp_path):
    folder, video, meta = aligned
    crops = tmp_path / "crops.mkv"
    with CropWriter(crops, 7, 256) as writer:
        for _, crop in open_crops(folder / "crops.mkv").frames(0, 7):
            writer.write(crop)
    with pytest.raises(CiinvError, match="clip.mp4 has 8 frames"):
        assemble_video(video, meta, folder / "align.npz", crops, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_a_damaged_alignment_or_a_black_crop_is_refused_naming_the_file(aligned, tmp_path):
    folder, video, meta = aligned
    data = (folder / "align.npz").read_bytes()
    (tmp_path / "align.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CiinvError, match=r"align.npz: not a readable .npz archive.*rerun the align stage"):
        assemble_video(video, meta, tmp_path / "align.npz", folder / "crops.mkv", tmp_path / "out.mp4")
    crops = tmp_path / "crops"
    crops.mkdir()
    for index, crop in open_crops(folder / "crops.mkv").frames():  # the edit stage's PNG folder
        Image.fromarray(crop).save(crops / f"{index:06d}.png")
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(crops / "000005.png")
    with pytest.raises(CiinvError, match=r"000005.png: the crop of frame 5 is entirely black"):
        assemble_video(video, meta, folder / "align.npz", crops, tmp_path / "out.mp4", preset="ultrafast",
                       log=lambda m: None)
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".tmp-*"))
