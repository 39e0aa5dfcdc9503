"""End to end: Snakemake over a folder of real-face clips with the smoke models.

One run covers the "done when" of the pipeline issue: clips of different sizes, frame rates
(25 and 30000/1001), lengths, with and without audio, one with rotation metadata and one with a
space in its name, next to bad inputs (not a video, shorter than a window, no face) that must
fail with a clear message while every other video completes (--keep-going). Then a dry run
checks that changing one edit's strength plans only that edit's jobs.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from ciinv.dev.sample import make_clip
from ciinv.io.video import probe

from .conftest import GOOD, REPO, job_counts, snakemake

pytestmark = pytest.mark.slow

EDITS = ["recon", "smile", "age"]


def test_every_good_video_gets_every_edit_with_the_source_timing_and_sound(smoke_run):
    work, result = smoke_run
    for name in GOOD:
        source = probe(work / "videos" / f"{name}.mp4")
        for edit in EDITS:
            out = work / "results" / f"{name}.{edit}.mp4"
            assert out.exists(), f"{out} missing\n{result.stderr[-4000:]}"
            made = probe(out)
            assert made["frames"] == source["frames"]
            assert made["fps"] == source["fps"]
            assert (made["width"], made["height"]) == (source["width"], source["height"])
            assert made["audio"] == source["audio"]
            assert made["rotation"] == 0


def test_edits_are_stored_as_codes_not_as_picture_folders(smoke_run):
    work, _ = smoke_run
    for name in GOOD:
        edits = work / "results" / name / "edits"
        assert sorted(p.name for p in edits.iterdir()) == sorted(f"{edit}.npy" for edit in EDITS)
        codes = np.load(edits / "recon.npy")
        np.testing.assert_array_equal(codes, np.load(work / "results" / name / "latents.npy"))
        # No picture per frame anywhere but the aligned crops of the align stage (and the report's own).
        folder = work / "results" / name
        assert not [p for p in folder.rglob("*.png") if p.relative_to(folder).parts[0] not in ("crops", "report")]


def test_bad_inputs_fail_clearly_and_alone(smoke_run):
    work, result = smoke_run
    assert result.returncode != 0  # the bad videos failed ...
    results = work / "results"
    for bad in ["broken", "short", "faceless"]:
        assert not list(results.glob(f"{bad}.*.mp4"))
    # ... each with a message that names the file.
    logs = {bad: "".join(p.read_text() for p in (results / bad / "logs").glob("*.log")) for bad in
            ["broken", "short", "faceless"]}
    assert "broken.mp4" in logs["broken"]
    assert "short.mp4" in logs["short"] and "window" in logs["short"]
    assert "faceless.mp4" in logs["faceless"] and "face" in logs["faceless"]
    # No temporary or partial file is left where a later run would take it as done.
    assert not [p for p in results.rglob("*") if ".tmp" in p.name]


def test_changing_one_edit_strength_plans_only_that_edit(smoke_run, smoke_dir, tmp_path):
    work, _ = smoke_run
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    overlay["edits"][0]["strength"] += 1.0  # "smile"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(overlay))
    # The failed bad videos would be planned again: take them out.
    for bad in ["broken.mp4", "short.mp4", "faceless.mp4"]:
        (work / "videos" / bad).unlink(missing_ok=True)
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    planned = job_counts(result.stdout)
    assert planned == {"edit": len(GOOD), "assemble": len(GOOD), "all": 1}, result.stdout
    detail = snakemake(work, "--dry-run", configfiles=[changed]).stdout
    assert "edit=smile" in detail and "edit=age" not in detail and "edit=recon" not in detail


@pytest.mark.parametrize("change", ["steps", "fast preset"])
def test_changing_an_inversion_setting_reruns_inversion_onwards_not_alignment(smoke_run, smoke_dir, tmp_path, change):
    """One more step, or configs/fast.yaml (the looser stop rule) put before the smoke overlay."""
    work, _ = smoke_run
    for bad in ["broken.mp4", "short.mp4", "faceless.mp4"]:
        (work / "videos" / bad).unlink(missing_ok=True)
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    if change == "steps":
        overlay["invert"]["steps"] += 1
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(overlay))
    presets = [REPO / "configs" / "fast.yaml"] if change == "fast preset" else []
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[*presets, changed])
    assert result.returncode == 0, result.stderr
    planned = job_counts(result.stdout)
    assert not {"probe", "landmarks", "align"} & set(planned), planned
    assert planned["merge"] == len(GOOD) and planned["edit"] == planned["assemble"] == len(GOOD) * len(EDITS)
    assert planned["invert"] >= len(GOOD)


@pytest.mark.parametrize("paste", [{"mask": "landmarks"}, {"mask": "ellipse"}, {"dilate": 40.0}, {"parser_every": 3}])
def test_changing_the_paste_mask_reruns_only_the_assemblies(smoke_run, smoke_dir, tmp_path, paste):
    """The smoke run pasted with the parser mask (the default); another mask or mask setting plans
    every assembly again and nothing else (the report does not paste)."""
    work, _ = smoke_run
    for bad in ["broken.mp4", "short.mp4", "faceless.mp4"]:
        (work / "videos" / bad).unlink(missing_ok=True)
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    overlay["paste"] = paste
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(overlay))
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"assemble": len(GOOD) * len(EDITS), "all": 1}, result.stdout


def test_changing_how_jobs_run_reruns_nothing(smoke_run, smoke_dir, tmp_path):
    """Settings that say where or how a job runs (the rules' resources: models_dir, invert's
    windows_per_batch and checkpoint_every) and the jobs' threads are not what a job computes."""
    work, _ = smoke_run
    for bad in ["broken.mp4", "short.mp4", "faceless.mp4"]:
        (work / "videos" / bad).unlink(missing_ok=True)
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    overlay["invert"] |= {"windows_per_batch": 1, "checkpoint_every": 3}
    overlay["models_dir"] = str(tmp_path / "elsewhere")
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(overlay))
    result = snakemake(work, "--dry-run", "--set-threads", "align=1", "assemble=1", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout


def test_a_new_video_plans_only_its_own_jobs(smoke_run, smoke_dir):
    work, _ = smoke_run
    for bad in ["broken.mp4", "short.mp4", "faceless.mp4"]:
        (work / "videos" / bad).unlink(missing_ok=True)
    make_clip(work / "videos" / "newcomer.mp4", frames=8, fps="25", size=(192, 192), audio=False, seed=5)
    result = snakemake(work, "--dry-run", configfiles=[smoke_dir / "smoke.yaml"])
    assert result.returncode == 0, result.stderr
    wildcards = [line.split("wildcards:")[1] for line in result.stdout.splitlines() if "wildcards:" in line]
    assert wildcards and all("video=newcomer" in w for w in wildcards), result.stdout
    assert job_counts(result.stdout) == {"probe": 1, "landmarks": 1, "align": 1, "merge": 1, "edit": 3,
                                          "assemble": 3, "all": 1}


def test_the_report_holds_stills_preview_loss_curves_and_metrics_of_each_video(smoke_run, smoke_dir):
    work, _ = smoke_run
    # Failed videos have no pictures to report; the newcomer of the test above was never run.
    for other in ["broken.mp4", "short.mp4", "faceless.mp4", "newcomer.mp4"]:
        (work / "videos" / other).unlink(missing_ok=True)
    # (A target after the config files needs an option between them: --configfile takes a list.)
    made = snakemake(work, "--keep-going", "report_assets", configfiles=[smoke_dir / "smoke.yaml"])
    assert made.returncode == 0, made.stderr[-4000:]
    reported = snakemake(work, "--report", str(work / "report.zip"), "report_assets",
                         configfiles=[smoke_dir / "smoke.yaml"])
    assert reported.returncode == 0, reported.stderr[-4000:]

    with zipfile.ZipFile(work / "report.zip") as archive:
        names = archive.namelist()
        page = archive.read("report/report.html").decode()
        for video in GOOD:  # every video has its four items in the report ...
            for figure in ["stills", "preview", "loss curves", "metrics"]:
                assert f'"labels": {{"video": {json.dumps(video)}, "figure": "{figure}"}}' in page, (video, figure)
        for kind in ["stills.png", "preview.png", "losses.png", "metrics.html"]:  # ... as files in the archive
            assert sum(name.endswith("/" + kind) for name in names) == len(GOOD), names
        stills = Image.open(io.BytesIO(archive.read(next(n for n in names if n.endswith("/stills.png")))))
        preview = Image.open(io.BytesIO(archive.read(next(n for n in names if n.endswith("/preview.png")))))
        table = archive.read(next(n for n in names if n.endswith("/metrics.html"))).decode()
    assert stills.width > stills.height / len(EDITS)  # several frames across, one row per picture
    assert preview.is_animated and preview.n_frames > 1
    # The metrics table: a finite PSNR of the reconstruction, a relative warp error per output.
    rows = {m.group(1): m.group(2) for m in re.finditer(r"<tr><td>([^<]+)</td>(.*?)</tr>", table)}
    assert list(rows) == EDITS
    psnr = re.findall(r"<td>([^<]+)</td>", rows["recon"])[0]
    assert 0 < float(psnr) < 100
    for edit in EDITS:
        assert float(re.findall(r"<td>([^<]+)</td>", rows[edit])[-1]) > 0
    assert "LPIPS left out" in table  # no LPIPS weights in the test environment, and the table says so
    # The full-frame table first: per output video the warp ratio, seam, TL-ID and TG-ID, all measured.
    full = table[table.index('id="full-frame"') : table.index('id="metrics"')]
    full_rows = dict(re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", full))
    assert list(full_rows) == EDITS
    for edit in EDITS:
        assert all(float(v) > 0 for v in re.findall(r"<td>([^<]+)</td>", full_rows[edit])), full_rows[edit]
    preview_sizes = [info.file_size for info in archive.infolist() if info.filename.endswith("/preview.png")]
    assert max(preview_sizes) < 2_000_000


@pytest.mark.parametrize("mask", ["landmarks", "ellipse"])
def test_each_paste_mask_runs_the_workflow_end_to_end(smoke_run, smoke_dir, tmp_path, mask):
    """The smoke run was pasted with the parser mask (the default); on a copy of it, another mask
    reassembles every video and edit, and nothing else runs."""
    work = tmp_path / "work"
    shutil.copytree(smoke_run[0], work, symlinks=True)  # file times and Snakemake's records kept
    for video in (work / "videos").iterdir():
        if video.stem not in GOOD:
            video.unlink()
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    overlay["paste"] = overlay.get("paste", {}) | {"mask": mask}
    changed = tmp_path / "mask.yaml"
    changed.write_text(yaml.safe_dump(overlay))
    result = snakemake(work, configfiles=[changed])
    assert result.returncode == 0, result.stderr[-4000:]
    assert job_counts(result.stderr) == {"assemble": len(GOOD) * len(EDITS), "all": 1}
    for name in GOOD:
        source = probe(work / "videos" / f"{name}.mp4")
        for edit in EDITS:
            made = probe(work / "results" / f"{name}.{edit}.mp4")
            assert (made["frames"], made["fps"], made["audio"]) == (source["frames"], source["fps"], source["audio"])
        log = (work / "results" / name / "logs" / f"assemble_{EDITS[1]}.log").read_text()
        assert "Traceback" not in log


# --- the sample sheet (config samples) -----------------------------------------------------------


def _sheet_overlay(smoke_dir, tmp_path, rows: str):
    """The smoke overlay with `samples:` naming a sheet of ``rows`` (under the header id, file, max_gap)."""
    sheet = tmp_path / "videos.tsv"
    sheet.write_text("id\tfile\tmax_gap\n" + rows)
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text()) | {"samples": str(sheet)}
    path = tmp_path / "sheet.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def test_changing_one_rows_max_gap_in_the_sample_sheet_reruns_only_that_video(smoke_run, smoke_dir, tmp_path):
    """A sheet that names the folder's videos by their names takes their results over as they are;
    then one row's landmarks.max_gap plans that video's jobs from its landmarks on, and no other's."""
    work, _ = smoke_run
    for bad in ["broken.mp4", "short.mp4", "faceless.mp4"]:
        (work / "videos" / bad).unlink(missing_ok=True)
    same = _sheet_overlay(smoke_dir, tmp_path, "".join(f"{name}\tvideos/{name}.mp4\t\n" for name in GOOD))
    result = snakemake(work, "--dry-run", configfiles=[same])
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout

    changed = _sheet_overlay(smoke_dir, tmp_path, "".join(f"{name}\tvideos/{name}.mp4\t{9 if name == 'ntsc' else ''}\n"
                                                          for name in GOOD))
    result = snakemake(work, "--dry-run", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    wildcards = [line.split("wildcards:")[1] for line in result.stdout.splitlines() if "wildcards:" in line]
    assert wildcards and all("video=ntsc" in w for w in wildcards), result.stdout
    planned = job_counts(result.stdout)
    assert planned.pop("invert") >= 1
    assert planned == {"landmarks": 1, "align": 1, "merge": 1, "edit": len(EDITS), "assemble": len(EDITS), "all": 1}
    assert "--max-gap 9" in next(line for line in snakemake(work, "--dry-run", "--printshellcmds", configfiles=[changed])
                                 .stdout.splitlines() if "ciinv landmarks" in line)


def test_a_trimmed_row_gives_videos_of_its_span_with_its_sound_and_only_its_edits(smoke_dir, tmp_path):
    """start/end in seconds: the outputs hold the frames shown in [start, end) and that span's sound."""
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips" / "long.mp4", frames=20, fps="25", size=(256, 256), audio=True)
    sheet = tmp_path / "videos.tsv"
    sheet.write_text("id\tfile\tstart\tend\tedits\ncut\tclips/long.mp4\t0.2\t0.52\tsmile\n")
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text()) | {"samples": "videos.tsv"}
    (tmp_path / "sheet.yaml").write_text(yaml.safe_dump(overlay))
    result = snakemake(tmp_path, configfiles=[tmp_path / "sheet.yaml"])
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("results/*.mp4")) == ["cut.recon.mp4", "cut.smile.mp4"]
    for name in ["cut.recon.mp4", "cut.smile.mp4"]:
        meta = probe(tmp_path / "results" / name)
        assert (meta["frames"], meta["fps"], meta["audio"]) == (8, "25", True), name  # frames 5..12
        assert meta["duration_s"] == pytest.approx(0.32)
