"""`ciinv bench stages`: every CPU stage runs on a clip and the table reports seconds, ratios and bytes."""

from __future__ import annotations

import pytest

from ciinv.bench.stages import STAGES, bench_stages, table
from ciinv.cli import main
from ciinv.config import load_config
from ciinv.io.crops import open_crops
from ciinv.errors import CiinvError
from ciinv.dev.sample import make_clip
from tests.conftest import REPO


def test_bench_stages_runs_every_stage_and_prints_the_table(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    make_clip(video, frames=6, size=(256, 192), audio=True)
    overlay = tmp_path / "cpu.yaml"
    overlay.write_text("landmarks: {detector: dlib}\nalign: {resolution: 64}\nassemble: {preset: ultrafast}\n")
    config = load_config([REPO / "config.yaml", overlay])

    (row,) = bench_stages(config, [video], tmp_path / "out")
    assert row["frames"] == 6 and set(row["seconds"]) == {"transcode", *STAGES}
    assert all(seconds > 0 for seconds in row["seconds"].values())
    assert all(row["bytes"][name] > 0 for name in ("landmarks", "align", "assemble"))
    assert len(open_crops(tmp_path / "out" / "clip" / "crops.mkv")) == 6
    text = table(row)
    for label in ("plain ffmpeg transcode", "| landmarks |", "| align |", "| assemble |", "CPU stages together"):
        assert label in text

    assert main(["bench", "stages", str(video), "--config", str(REPO / "config.yaml"), str(overlay),
                 "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "× transcode" in printed and "peak memory" in printed


def test_a_missing_clip_is_named(tmp_path):
    with pytest.raises(CiinvError, match="nope.mp4: no such video file"):
        bench_stages(load_config([REPO / "config.yaml"]), [tmp_path / "nope.mp4"], tmp_path / "out")
