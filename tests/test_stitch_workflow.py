"""End to end with stitching tuning: the smoke workflow on one short clip with `stitch.enabled: true`.
Every edit gets its stitched crops and its video pasted from them; a stitch setting reruns the stitch
jobs and the assemblies only, a setting of how the job runs reruns nothing, and with PTI the stitch
jobs start from the tuned generator."""

from __future__ import annotations

import pytest
import yaml

from ciinv.dev.sample import make_clip
from ciinv.io.crops import open_crops

from .conftest import job_counts, snakemake
from .test_workflow import EDITS

pytestmark = pytest.mark.slow


def overlay(smoke_dir, path, stitch=None, pti=None, paste=None):
    config = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    config["stitch"] = config["stitch"] | {"enabled": True} | (stitch or {})
    config["pti"] = config["pti"] | (pti or {})
    config["paste"] = config.get("paste", {}) | (paste or {})
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, smoke_dir):
    work = tmp_path_factory.mktemp("stitch-workflow")
    (work / "videos").mkdir()
    make_clip(work / "videos" / "clip.mp4", frames=6, fps="25", size=(128, 128), audio=False, seed=4)
    stitch_on = overlay(smoke_dir, work / "stitch.yaml")
    result = snakemake(work, configfiles=[stitch_on])
    assert result.returncode == 0, result.stderr[-4000:]
    return work, stitch_on


def test_every_edit_is_stitched_and_assembled_from_its_stitched_crops(run):
    work, _ = run
    results = work / "results" / "clip"
    for edit in EDITS:
        crops = open_crops(results / "stitched" / f"{edit}.mkv")
        assert len(crops) == 6 and crops.resolution == 64, edit
        assert (work / "results" / f"clip.{edit}.mp4").is_file()
        assert "border loss" in (results / "logs" / f"stitch_{edit}.log").read_text()
    assert not list((results / "stitched").glob("*.parts")) and not list((results / "stitched").glob("*.resume"))


def test_the_report_shows_and_measures_the_stitched_outputs(run):
    work, stitch_on = run
    result = snakemake(work, "--printshellcmds", "report_assets", configfiles=[stitch_on])
    assert result.returncode == 0, result.stderr[-4000:]
    (command,) = [line for line in (result.stdout + result.stderr).splitlines() if "ciinv report-assets" in line]
    assert all(f"results/clip/stitched/{edit}.mkv" in command for edit in EDITS)
    report = work / "results" / "clip" / "report"
    page = (report / "metrics.html").read_text()
    assert f"Stitched (stitch.enabled): {', '.join(EDITS)} pasted the stitch stage" in page
    assert 'id="full-frame"' in page and (report / "stills.png").stat().st_size > 0
    assert (report / "preview.png").stat().st_size < 2_000_000


def test_a_stitch_setting_reruns_the_stitching_and_the_assemblies_only(run, smoke_dir, tmp_path):
    work, _ = run
    changed = overlay(smoke_dir, tmp_path / "lr.yaml", stitch={"lr": 1e-3})
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"stitch": len(EDITS), "assemble": len(EDITS), "all": 1}
    quiet = overlay(smoke_dir, tmp_path / "every.yaml", stitch={"checkpoint_every": 3})
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[quiet])
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout


def test_the_paste_mask_reruns_the_stitching_but_its_settings_across_frames_only_the_assemblies(run, smoke_dir,
                                                                                               tmp_path):
    work, _ = run
    wider = overlay(smoke_dir, tmp_path / "dilate.yaml", paste={"dilate": 60.0})
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[wider])
    assert job_counts(result.stdout) == {"stitch": len(EDITS), "assemble": len(EDITS), "all": 1}
    for across in [{"temporal_sigma": 2.0}, {"parser_every": 3}]:  # the smoothing, the parser's key frames
        changed = overlay(smoke_dir, tmp_path / "across.yaml", paste=across)
        result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[changed])
        assert job_counts(result.stdout) == {"assemble": len(EDITS), "all": 1}, across


def test_with_pti_the_stitching_starts_from_the_tuned_generator(run, smoke_dir, tmp_path):
    work, _ = run
    both = overlay(smoke_dir, tmp_path / "both.yaml", pti={"enabled": True})
    result = snakemake(work, "--dry-run", "--printshellcmds", configfiles=[both])
    assert result.returncode == 0, result.stderr
    commands = [line.split("Shell command:")[-1].strip() for line in result.stdout.splitlines()]
    stitch_lines = [line for line in commands if line.startswith("ciinv stitch ")]
    assert len(stitch_lines) == len(EDITS)
    assert all("results/clip/generator_pti.pt" in line for line in stitch_lines)
    assemble_lines = [line for line in commands if line.startswith("ciinv assemble ")]
    assert len(assemble_lines) == len(EDITS)
    assert all("--stitched" in line and "--codes" not in line for line in assemble_lines)
