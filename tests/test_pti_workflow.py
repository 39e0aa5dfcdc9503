"""End to end with pivotal tuning: the smoke workflow on one clip, first without PTI, then with
`pti.enabled: true` in the same folder. With PTI the merged codes render closer to the aligned
crops, every edit is rendered again (with the tuned generator) and assembled, and changing only an edit's
strength, or only a pti setting, replans exactly what depends on it."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import yaml

from ciinv.dev.sample import make_clip

from .conftest import job_counts, snakemake
from .test_workflow import EDITS

pytestmark = pytest.mark.slow


def recon_mse(results, generator_path) -> float:
    """Mean squared error (pixels in [0, 1]) of the merged codes, rendered as assemble renders them
    with ``generator_path``, against the aligned crops."""
    from ciinv.models import load_generator
    from ciinv.faces.render import load_renderer

    from ciinv.io.crops import open_crops

    generator = load_generator(generator_path).eval().requires_grad_(False)
    rendered = load_renderer(results / "latents.npy", generator, results / "noise.pt")
    aligned = open_crops(results / "crops.mkv")
    assert len(aligned) == len(rendered)
    errors = [np.mean((crop.astype(np.float64) / 255 - rendered_crop.astype(np.float64) / 255) ** 2)
              for crop, rendered_crop in zip(aligned, rendered)]
    return float(np.mean(errors))


def overlay(smoke_dir, path, **changes):
    config = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    config["pti"] = config["pti"] | {"enabled": True} | changes.pop("pti", {})
    for edit in config["edits"]:
        edit["strength"] += changes.get("strength_of", {}).get(edit["name"], 0.0)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smoke_dir):
    work = tmp_path_factory.mktemp("pti-workflow")
    (work / "videos").mkdir()
    make_clip(work / "videos" / "clip.mp4", frames=9, fps="25", size=(128, 128), audio=False, seed=3)
    results = work / "results" / "clip"
    plain = snakemake(work, configfiles=[smoke_dir / "smoke.yaml"])
    assert plain.returncode == 0, plain.stderr[-4000:]
    before = recon_mse(results, yaml.safe_load((smoke_dir / "smoke.yaml").read_text())["models"]["generator"])
    stamps = {edit: (work / "results" / f"clip.{edit}.mp4").stat().st_mtime_ns for edit in EDITS}
    pti_on = overlay(smoke_dir, work / "pti.yaml")
    tuned = snakemake(work, configfiles=[pti_on])
    assert tuned.returncode == 0, tuned.stderr[-4000:]
    return work, results, before, stamps, pti_on


def test_pti_lowers_the_reconstruction_error_and_every_edit_still_renders(runs):
    work, results, before, stamps, _ = runs
    assert (results / "generator_pti.pt").is_file()
    assert recon_mse(results, results / "generator_pti.pt") < before
    for edit in EDITS:
        out = work / "results" / f"clip.{edit}.mp4"
        assert out.stat().st_mtime_ns > stamps[edit], edit  # rendered again, with the tuned generator
    assert "reconstruction MSE" in (results / "logs" / "pti.log").read_text()


def test_changing_only_an_edit_never_reruns_pti(runs, smoke_dir, tmp_path):
    work, _, _, _, _ = runs
    changed = overlay(smoke_dir, tmp_path / "edit.yaml", strength_of={"smile": 1.0})
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"edit": 1, "assemble": 1, "all": 1}, result.stdout
    # Nor does a setting that changes only how the job runs.
    quiet = overlay(smoke_dir, tmp_path / "every.yaml", pti={"checkpoint_every": 3})
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[quiet])
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout


def test_changing_a_pti_setting_reruns_pti_and_the_renders_not_the_inversion_or_the_edits(runs, smoke_dir, tmp_path):
    work, _, _, _, _ = runs
    changed = overlay(smoke_dir, tmp_path / "lr.yaml", pti={"lr": 1e-3})
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    # The edited codes do not depend on the tuned generator; the assemblies, which render them, do.
    assert job_counts(result.stdout) == {"pti": 1, "assemble": len(EDITS), "all": 1}


def test_the_report_is_made_from_the_tuned_renderings_and_says_so(runs):
    work, results, _, _, pti_on = runs
    made = snakemake(work, "--keep-going", "report_assets", configfiles=[pti_on])  # (an option ends --configfile's list)
    assert made.returncode == 0, made.stderr[-4000:]
    assert (results / "report" / "metrics.html").is_file()
    reported = snakemake(work, "--report", str(work / "report.zip"), "report_assets", configfiles=[pti_on])
    assert reported.returncode == 0, reported.stderr[-4000:]

    with zipfile.ZipFile(work / "report.zip") as archive:
        page = archive.read("report/report.html").decode()
    assert "pivotally tuned" in page
