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
    for label in ("plain ffmpeg transcode", "| landmarks |", "| align |", "| assemble |", "CPU stages together",
                  "kept by the finished video", "| crops.mkv |", "| latents.npy |", "| **all** |"):
        assert label in text

    # What a finished video keeps, per frame: the GPU stages' files at the real shapes. At 64² the
    # generator has 10 W+ layers of 512, stored as float16: 10 KB a frame per codes file.
    kept = row["kept"]
    assert kept["crops.mkv"] == (tmp_path / "out" / "clip" / "crops.mkv").stat().st_size / 6
    codes_file = 10 * 512 * 2
    assert codes_file < kept["latents.npy"] < codes_file + 200 / 6  # the .npy header
    edits = 1 + len(config["edits"])
    assert codes_file * edits < kept[f"edits/*.npy ({edits})"] < (codes_file + 200 / 6) * edits
    # The shards: every window's codes, w_b and n_k in float16, and its loss curves over all steps.
    windows = 2  # 6 frames, window 5, stride 4
    steps = config["invert"]["steps"]
    least = windows * (5 + 1) * codes_file + windows * len(("total", "icc", "mse", "perceptual")) * steps * 2
    assert least / 6 < kept["latents/shard_*.pt"] < 1.2 * least / 6
    kept_folder = tmp_path / "out" / "clip" / "kept"
    assert sorted(p.name for p in (kept_folder / "edits").iterdir()) == sorted(
        f"{name}.npy" for name in ["recon"] + [e["name"] for e in config["edits"]])

    assert main(["bench", "stages", str(video), "--config", str(REPO / "config.yaml"), str(overlay),
                 "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "× transcode" in printed and "peak memory" in printed


def test_a_missing_clip_is_named(tmp_path):
    with pytest.raises(CiinvError, match="nope.mp4: no such video file"):
        bench_stages(load_config([REPO / "config.yaml"]), [tmp_path / "nope.mp4"], tmp_path / "out")
