"""ciinv.io.codes: latents.npy / edits/<edit>.npy and noise.pt, written and read back, bad files named."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ciinv.errors import CiinvError
from ciinv.io.codes import read_frame_noise, read_latents, write_latents, write_noise

# read_latents only asks the generator for the shape of its codes.
GENERATOR = SimpleNamespace(num_ws=4, w_dim=6)


def test_codes_are_stored_as_float16_and_read_as_float32(tmp_path):
    codes = np.random.default_rng(0).standard_normal((5, 4, 6)) * 3  # float64 in, float16 on disk
    write_latents(tmp_path / "latents.npy", codes)
    assert np.load(tmp_path / "latents.npy").dtype == np.float16
    read = read_latents(tmp_path / "latents.npy", GENERATOR)
    assert read.dtype == torch.float32 and read.shape == (5, 4, 6)
    np.testing.assert_array_equal(read.numpy(), codes.astype(np.float16).astype(np.float32))
    assert np.abs(read.numpy() - codes).max() <= np.abs(codes).max() * 2.0**-11  # half an fp16 step at most
    assert [p.name for p in tmp_path.iterdir()] == ["latents.npy"]


def test_float32_codes_files_of_older_runs_read_exactly(tmp_path):
    codes = np.random.default_rng(1).standard_normal((3, 4, 6)).astype(np.float32)
    np.save(tmp_path / "latents.npy", codes)
    np.testing.assert_array_equal(read_latents(tmp_path / "latents.npy", GENERATOR).numpy(), codes)


def test_codes_beyond_float16_are_refused_by_the_writer_naming_the_frame(tmp_path):
    codes = np.zeros((3, 4, 6), np.float32)
    codes[1, 2, 3] = 7e4  # finite in float32, inf in float16
    with pytest.raises(CiinvError, match=r"out.npy: the codes of frame 1 are not finite numbers once stored as float16"):
        write_latents(tmp_path / "out.npy", codes)
    assert not (tmp_path / "out.npy").exists()


def test_bad_codes_are_named_with_what_makes_them_again(tmp_path):
    path = tmp_path / "latents.npy"
    with pytest.raises(CiinvError, match="latents.npy: no such file; invert that video first"):
        read_latents(path, GENERATOR)
    with pytest.raises(CiinvError, match=r"^morph_with codes \S*other.npy: no such file"):
        read_latents(tmp_path / "other.npy", GENERATOR, role="morph_with")
    write_latents(path, np.zeros((3, 4, 5)))
    with pytest.raises(CiinvError, match=r"\(4, 5\) per frame but the generator expects \(4, 6\)"):
        read_latents(path, GENERATOR)
    bad = np.zeros((3, 4, 6), np.float16)
    bad[2, 1, 0] = np.nan
    np.save(path, bad)  # a damaged file: the writer refuses NaN
    with pytest.raises(CiinvError, match="the first in frame 2; delete it and rerun the edit stage"):
        read_latents(path, GENERATOR, rerun="rerun the edit stage")


def test_noise_maps_round_trip_in_float16_and_no_maps_is_a_file_too(tmp_path):
    path = tmp_path / "noise.pt"
    maps = [torch.randn(2, 1, 4, 4), torch.randn(2, 1, 8, 8)]
    write_noise(path, maps, np.array([0, 0, 1]))
    read, frame_window = read_frame_noise(path, 3)
    assert [m.dtype for m in read] == [torch.float32] * 2
    for got, wrote in zip(read, maps):
        torch.testing.assert_close(got, wrote.half().float(), rtol=0, atol=0)
    assert frame_window.dtype == torch.int64 and frame_window.tolist() == [0, 0, 1]
    assert torch.load(path, weights_only=True)["noise"][0].dtype == torch.float16
    with pytest.raises(CiinvError, match="noise.pt has noise for 3 frames but the codes have 4; rerun the merge"):
        read_frame_noise(path, 4)
    write_noise(path)
    assert read_frame_noise(path, 4) == (None, None)
    torch.save({"maps": []}, path)
    with pytest.raises(CiinvError, match="noise.pt: not a noise file of the merge stage"):
        read_frame_noise(path, 4)
