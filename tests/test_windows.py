import numpy as np
import pytest

from ciinv.errors import CiinvError
from ciinv.inversion.windows import Window, blend_codes, plan_shards, plan_windows, shard_count


@pytest.mark.parametrize("frames", [5, 6, 9, 10, 13, 17, 30])
@pytest.mark.parametrize("window,stride", [(5, 4), (5, 1), (5, 5), (3, 2), (1, 1)])
def test_windows_cover_every_frame_with_full_windows(frames, window, stride):
    windows = plan_windows(frames, window, stride)
    covered = np.zeros(frames, dtype=int)
    for i, w in enumerate(windows):
        assert w.index == i
        assert w.stop - w.start == window
        assert 0 <= w.start and w.stop <= frames
        covered[w.start : w.stop] += 1
    assert covered.min() >= 1
    assert windows[0].start == 0
    assert windows[-1].stop == frames
    starts = [w.start for w in windows]
    assert starts == sorted(set(starts))
    # All but the last window start on the stride grid.
    assert all(s == i * stride for i, s in enumerate(starts[:-1]))


def test_stride_one_less_than_window_shares_one_frame():
    windows = plan_windows(17, window=5, stride=4)
    assert [(w.start, w.stop) for w in windows] == [(0, 5), (4, 9), (8, 13), (12, 17)]


def test_last_window_moves_back_to_end_at_the_clip_end():
    windows = plan_windows(10, window=5, stride=4)
    assert [(w.start, w.stop) for w in windows] == [(0, 5), (4, 9), (5, 10)]


def test_short_clip_is_an_error_naming_the_file():
    with pytest.raises(CiinvError, match="clip.mp4.*4 frame"):
        plan_windows(4, window=5, stride=4, source="clip.mp4")


@pytest.mark.parametrize("stride", [0, 6])
def test_stride_outside_one_to_window_is_rejected(stride):
    with pytest.raises(CiinvError, match="stride"):
        plan_windows(20, window=5, stride=stride)


def test_shards_are_consecutive_runs_of_windows():
    windows = plan_windows(41, window=5, stride=4)  # 10 windows
    shards = plan_shards(windows, 4)
    assert [len(s) for s in shards] == [4, 4, 2]
    assert [w for s in shards for w in s] == windows
    assert shard_count(41, 5, 4, 4) == 3
    assert shard_count(5, 5, 4, 4) == 1


def test_blend_keeps_codes_of_frames_in_a_single_window_exactly():
    rng = np.random.default_rng(0)
    windows = plan_windows(13, window=5, stride=4)  # (0,5) (4,9) (8,13)
    codes = rng.standard_normal((3, 5, 2, 3)).astype(np.float32)
    out = blend_codes(13, windows, codes, warm=[False, True, True])  # one chain
    assert out.shape == (13, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0:4], codes[0, 0:4])
    np.testing.assert_array_equal(out[5:8], codes[1, 1:4])
    np.testing.assert_array_equal(out[9:13], codes[2, 1:5])
    # Frame 4 is the last of window 0 and the first of window 1: equal edge weights.
    np.testing.assert_allclose(out[4], (codes[0, 4] + codes[1, 0]) / 2, rtol=1e-6)


def test_blend_weights_trust_the_middle_of_a_window_more_than_its_edge():
    windows = [Window(0, 0, 5), Window(1, 2, 7)]
    codes = np.zeros((2, 5, 1, 1), dtype=np.float32)
    codes[1] = 1.0
    out = blend_codes(7, windows, codes, warm=[False, True])[:, 0, 0]
    # Frame 2 is the middle of window 0 (weight 3) and the edge of window 1 (weight 1).
    assert out[2] == pytest.approx(1 / 4)
    # Frame 4 is the edge of window 0 (weight 1) and the middle of window 1 (weight 3).
    assert out[4] == pytest.approx(3 / 4)
    assert np.all(np.diff(out) >= 0)  # a smooth ramp from one window to the next


def test_a_cold_start_is_not_blended_with_the_chain_before_it():
    """Frames shared across a cold start keep one chain's codes: the one where they weigh most."""
    rng = np.random.default_rng(1)
    windows = plan_windows(13, window=5, stride=4)  # (0,5) (4,9) (8,13)
    codes = rng.standard_normal((3, 5, 2, 3)).astype(np.float32)
    out = blend_codes(13, windows, codes, warm=[False, True, False])  # chains: windows 0-1, window 2
    np.testing.assert_allclose(out[4], (codes[0, 4] + codes[1, 0]) / 2, rtol=1e-6)  # inside the chain
    np.testing.assert_array_equal(out[8], codes[1, 4])  # equal edge weights: the earlier chain
    windows = [Window(0, 0, 5), Window(1, 2, 7)]  # frames 2-4 shared, each weighing most in one window
    out = blend_codes(7, windows, np.stack([np.zeros((5, 1, 1)), np.ones((5, 1, 1))]).astype(np.float32))
    assert out[:, 0, 0].tolist() == [0, 0, 0, 0, 1, 1, 1]  # frame 3: weight 2 in both, the earlier


def test_blend_keeps_constant_codes_constant():
    windows = plan_windows(23, window=5, stride=3)
    codes = np.full((len(windows), 5, 4, 8), 0.37, dtype=np.float32)
    np.testing.assert_allclose(blend_codes(23, windows, codes), 0.37, rtol=1e-6)


def test_blend_reports_uncovered_frames():
    windows = [Window(0, 0, 5)]
    with pytest.raises(CiinvError, match="frame"):
        blend_codes(8, windows, np.zeros((1, 5, 1, 1), np.float32))
