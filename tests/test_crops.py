"""The crops file: bit-exact round trip, random access by frame, damaged files refused naming the frame."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from ciinv.io.crops import FFV1_OPTIONS, CropReader, CropWriter, open_crops, read_crops, read_tensor
from ciinv.errors import CiinvError
from ciinv.io.ffmpeg import ffmpeg_exe

FRAMES, SIDE = 12, 48


def textured_crops(frames: int = FRAMES, side: int = SIDE, seed: int = 0) -> np.ndarray:
    """uint8 [frames, side, side, 3]: a smooth picture drifting, plus noise (every value 0-255 appears)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side]
    frames_ = []
    for t in range(frames):
        base = np.stack([128 + 100 * np.sin((x + 2 * t) / 5), 128 + 100 * np.cos(y / 7), (x * y + 40 * t) % 256], -1)
        frames_.append(np.clip(base + rng.normal(0, 30, base.shape), 0, 255))
    out = np.stack(frames_).round().astype(np.uint8)
    out[0, 0, :3] = [[0, 0, 0], [255, 255, 255], [0, 255, 1]]
    return out


def write(path, crops: np.ndarray) -> None:
    with CropWriter(path, len(crops), crops.shape[1]) as writer:
        for crop in crops:
            writer.write(crop)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("crops") / "crops.mkv"
    crops = textured_crops()
    write(path, crops)
    return path, crops


def test_round_trip_is_bit_exact_and_any_range_reads_exactly_its_frames(stored):
    path, crops = stored
    reader = open_crops(path)
    assert isinstance(reader, CropReader) and (len(reader), reader.resolution) == (FRAMES, SIDE)
    np.testing.assert_array_equal(reader.read(), crops)
    for start, stop in [(0, 1), (5, 9), (11, 12), (3, 3), (1, 12)]:
        np.testing.assert_array_equal(reader.read(start, stop), crops[start:stop])
    assert [i for i, _ in reader.frames(4, 7)] == [4, 5, 6]
    # Float tensors for the networks, any indices, resized when asked.
    tensor = read_tensor(reader, [2, 3, 7])
    assert tensor.shape == (3, 3, SIDE, SIDE)
    np.testing.assert_array_equal((tensor.permute(0, 2, 3, 1).numpy() * 255).round(), crops[[2, 3, 7]])
    assert read_tensor(reader, range(2), 32).shape == (2, 3, 32, 32)


def test_files_of_the_golomb_rice_options_still_read_bit_exact(stored, tmp_path):
    """crops.mkv written before the range coder (FFV1 -coder 0 -context 0) reads as it always did."""
    _, crops = stored
    options = list(FFV1_OPTIONS)
    assert options[options.index("-coder") + 1] == "1" and options[options.index("-context") + 1] == "1"
    options[options.index("-coder") + 1] = options[options.index("-context") + 1] = "0"
    with CropWriter(tmp_path / "golomb.mkv", len(crops), crops.shape[1], tuple(options)) as writer:
        for crop in crops:
            writer.write(crop)
    np.testing.assert_array_equal(open_crops(tmp_path / "golomb.mkv").read(), crops)
    np.testing.assert_array_equal(open_crops(tmp_path / "golomb.mkv").read(7, 10), crops[7:10])


def test_read_crops_opens_a_file_or_folder_and_names_what_makes_it_again(stored, tmp_path):
    path, crops = stored
    np.testing.assert_array_equal(read_crops(path, [1, 4]), read_tensor(open_crops(path), [1, 4]))
    assert read_crops(path, range(3), 32).shape == (3, 3, 32, 32)
    with pytest.raises(CiinvError, match=r"missing.mkv: no such crops file; rerun the align stage"):
        read_crops(tmp_path / "missing.mkv", [0])
    with pytest.raises(CiinvError, match=r"missing.mkv: no such crops file; rerun the edit stage"):
        read_crops(tmp_path / "missing.mkv", [0], rerun="rerun the edit stage")


def test_a_png_folder_reads_through_the_same_interface(stored, tmp_path):
    _, crops = stored
    for i, crop in enumerate(crops[:4]):
        Image.fromarray(crop).save(tmp_path / f"{i:06d}.png")
    reader = open_crops(tmp_path)
    assert (len(reader), reader.resolution) == (4, SIDE)
    np.testing.assert_array_equal(reader.read(1, 3), crops[1:3])


def test_a_truncated_file_names_the_first_missing_frame(stored, tmp_path):
    path, crops = stored
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    reader = open_crops(cut)
    assert len(reader) == FRAMES  # the header still says how many there should be
    np.testing.assert_array_equal(reader.read(0, 2), crops[:2])  # frames before the cut are good
    with pytest.raises(CiinvError, match=r"^\S*cut.mkv: cannot read the crop of frame (7|8) \(.*rerun the align stage"):
        reader.read()


def test_a_damaged_frame_is_an_error_naming_it_never_a_wrong_picture(stored, tmp_path):
    path, crops = stored
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for offset in range(middle, middle + 40, 4):
        data[offset] ^= 0x5A
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    # Which frame the flipped bytes hit: the one a plain decode (which conceals damage) gets wrong.
    plain = subprocess.run([ffmpeg_exe(), "-v", "quiet", "-i", str(bad), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                           capture_output=True).stdout
    plain = np.frombuffer(plain, np.uint8).reshape(-1, SIDE, SIDE, 3)
    hit = [i for i in range(FRAMES) if not np.array_equal(plain[i], crops[i])]
    assert len(hit) == 1 and 0 < hit[0] < FRAMES - 1
    for start in (0, hit[0]):
        with pytest.raises(CiinvError, match=r"bad.mkv: cannot read the crop of frame .*rerun the align") as error:
            open_crops(bad).read(start)
        # The damaged frame, or a short run of frames that holds it (when ffmpeg does not say which).
        named = re.search(r"frame (\d+)(?: or a later one up to (\d+))? ", str(error.value)).groups()
        assert int(named[0]) <= hit[0] <= int(named[1] or named[0])


@pytest.mark.parametrize("content", [b"", b"not a video" * 50])
def test_a_file_that_is_no_crops_file_is_refused_naming_it(tmp_path, content):
    junk = tmp_path / "crops.mkv"
    junk.write_bytes(content)
    with pytest.raises(CiinvError, match=r"crops.mkv: not a crops file of ciinv.*rerun the align stage"):
        open_crops(junk)
    with pytest.raises(CiinvError, match=r"missing.mkv: no such crops file"):
        open_crops(tmp_path / "missing.mkv")


def test_writes_are_atomic(tmp_path):
    crops = textured_crops(frames=3)
    with pytest.raises(RuntimeError):
        with CropWriter(tmp_path / "crops.mkv", 3, SIDE) as writer:
            writer.write(crops[0])
            raise RuntimeError("killed")
    with pytest.raises(CiinvError, match="2 crops written but 3 announced"):
        with CropWriter(tmp_path / "crops.mkv", 3, SIDE) as writer:
            writer.write(crops[0])
            writer.write(crops[1])
    assert list(tmp_path.iterdir()) == []
