"""`snakemake -n` on a fresh clone plans the whole workflow for the shipped sample clip."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import REPO
from .conftest import snakemake


def test_fresh_clone_plans_the_sample_clip(tmp_path):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    result = snakemake(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Models are fetched first, then the per-video stages; the window-dependent jobs follow the probe.
    for rule in ["download_model", "probe", "landmarks", "align", "all"]:
        assert f"rule {rule}:" in out or f"checkpoint {rule}:" in out, (rule, out)
    assert "results/sample/meta.json" in out
    assert "results/sample.recon.mp4" in out and "results/sample.sefa0.mp4" in out


def test_a_bad_config_key_is_named(tmp_path):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    bad = tmp_path / "bad.yaml"
    bad.write_text("invert:\n  steps: -3\n")
    result = snakemake(tmp_path, "--dry-run", configfiles=[bad])
    assert result.returncode != 0
    assert "steps" in result.stderr + result.stdout


@pytest.mark.parametrize("overlay, expected", [
    ("edits:\n  - {name: a, direction: 'sefa:0', strength: .nan}\n", "edits/0/strength"),
    ("edits:\n  - {name: a, direction: 'sefa:0', strength: 1}\n  - {name: a, direction: 'sefa:1', strength: 1}\n",
     "'a' appear more than once"),
    ("edits:\n  - {name: a, direction: 'sefa:abc', strength: 1}\n", "sefa:abc"),
])
def test_a_config_that_would_give_a_wrong_video_is_refused_before_any_job(tmp_path, overlay, expected):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    bad = tmp_path / "bad.yaml"
    bad.write_text(overlay)
    result = snakemake(tmp_path, "--dry-run", configfiles=[bad])
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_a_missing_input_dir_is_a_warning_not_a_silent_no_op(tmp_path):
    result = snakemake(tmp_path, "--dry-run")
    assert "input_dir videos does not exist" in result.stderr + result.stdout


@pytest.mark.parametrize("overlay, expected", [
    ("invert:\n  stepz: 5\n", "config: invert: unknown key `stepz` (value 5); allowed keys: "),
    ("edits:\n  - {name: smile, strength: 2.0}\n", "an overlay (a later --configfile) replaces a whole list"),
])
def test_a_config_mistake_is_one_short_line_with_the_suggestion(tmp_path, overlay, expected):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    bad = tmp_path / "bad.yaml"
    bad.write_text(overlay)
    result = snakemake(tmp_path, "--dry-run", configfiles=[bad])
    assert result.returncode != 0
    output = result.stderr + result.stdout
    line = next(line for line in output.splitlines() if line.startswith("config: "))
    assert expected in line.replace("a config overlay", "an overlay")
    assert "ValidationError" not in output and "Failed validating" not in output
    if "stepz" in overlay:
        assert line.endswith("did you mean `steps`?")


def test_planning_imports_no_video_decoder():
    """common.smk's imports (run for every Snakemake start) leave decord and ffmpeg unloaded."""
    imports = [line for line in (REPO / "workflow/rules/common.smk").read_text().splitlines()
               if line.startswith(("import ", "from ciinv"))]
    code = "\n".join(imports + ["import sys", "print(sorted({'decord', 'ffmpeg'} & set(sys.modules)))"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_planning_imports_no_heavy_module():
    """The workflow's planning (every `from ciinv... import` of the rule files) loads neither torch nor
    a video decoder: a dry run over a folder stays quick and works where those are broken."""
    import re
    import subprocess
    import sys

    from .conftest import REPO

    imports = sorted({line.strip() for path in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]
                      for line in path.read_text().splitlines() if re.match(r"\s*from ciinv[\w.]* import ", line)})
    assert imports
    probe = "\n".join(imports + ["import sys", "print(sorted(m for m in ('torch', 'decord', 'ffmpeg', 'cv2') "
                                               "if m in sys.modules))"])
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", imports


def test_pti_with_lpips_plans_the_download_of_its_weights(tmp_path):
    """pti.perceptual: lpips makes the LPIPS wheel a model the run needs: fetched before any job uses it."""
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    overlay = tmp_path / "pti.yaml"
    overlay.write_text("pti:\n  enabled: true\n")
    result = snakemake(tmp_path, "--dry-run", configfiles=[overlay])
    assert result.returncode == 0, result.stderr
    assert "models/lpips-0.1.4-py3-none-any.whl" in result.stdout
    plain = snakemake(tmp_path, "--dry-run")
    assert "lpips-0.1.4" not in plain.stdout


@pytest.mark.parametrize("init", ["mean", "e4e"])
def test_the_invert_rule_reads_the_encoder_only_with_init_e4e(tmp_path, init):
    """The e4e file is an input of the invert jobs (and fetched by download_models) only when
    invert.init is e4e: with another init its absence must not hold anything up."""
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    overlay = tmp_path / "init.yaml"
    overlay.write_text(f"invert:\n  init: {init}\n")
    result = snakemake(tmp_path, "--dry-run", "--printshellcmds", "results/sample/latents/shard_0000.pt",
                       configfiles=[overlay])
    assert result.returncode == 0, result.stderr
    invert_job = result.stdout[result.stdout.index("rule invert:"):]
    invert_job = invert_job[: invert_job.index("\n\n")]
    shell = next(line for line in result.stdout.splitlines() if "ciinv invert" in line)
    if init == "e4e":
        assert "models/e4e_ffhq_encode.pt" in invert_job
        assert "--encoder=models/e4e_ffhq_encode.pt" in shell
        assert "e4e_ffhq_encode.pt" in result.stdout[: result.stdout.index("rule invert:")]  # fetched first
    else:
        assert "e4e_ffhq_encode.pt" not in result.stdout
        assert "--encoder=" in shell
    downloads = snakemake(tmp_path, "--dry-run", "download_models", configfiles=[overlay])
    assert downloads.returncode == 0, downloads.stderr
    assert ("e4e_ffhq_encode.pt" in downloads.stdout) == (init == "e4e")


@pytest.mark.parametrize("mask", ["parser", "landmarks", "ellipse"])
def test_assemble_reads_and_download_models_fetches_only_what_the_mask_uses(tmp_path, mask):
    """paste.mask: parser (the default) reads the face parser (fetched by download_models) and the
    source crops; landmarks reads landmarks.npz; ellipse neither. Each gets only its own settings."""
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    overlay = tmp_path / "mask.yaml"
    overlay.write_text(f"paste:\n  mask: {mask}\n")
    downloads = snakemake(tmp_path, "--dry-run", "download_models", configfiles=[overlay])
    assert downloads.returncode == 0, downloads.stderr
    assert "e4e_ffhq_encode.pt" not in downloads.stdout and "vgg16-397923af.pth" in downloads.stdout
    assert ("parsing_bisenet.pth" in downloads.stdout) == (mask == "parser")

    result = snakemake(tmp_path, "--dry-run", "--printshellcmds", "results/sample.recon.mp4", configfiles=[overlay])
    assert result.returncode == 0, result.stderr
    job = result.stdout[result.stdout.index("rule assemble:"):]
    job = job[: job.index("\n\n")]
    inputs = next(line for line in job.splitlines() if line.strip().startswith("input:"))
    shell = next(line for line in result.stdout.splitlines() if "ciinv assemble" in line)
    assert ("parsing_bisenet.pth" in inputs) == ("--parser=models/parsing_bisenet.pth" in shell) == (mask == "parser")
    assert ("crops.mkv" in inputs) == ("--crops=results/sample/crops.mkv" in shell) == (mask == "parser")
    assert ("landmarks.npz" in inputs) == ("--landmarks=results/sample/landmarks.npz" in shell) == (mask == "landmarks")
    assert f"--mask {mask}" in shell
    assert ("--exclude background cloth hat --no-hair" in shell) == (mask == "parser")
    assert ("--parser-every " in shell) == (mask == "parser")
    assert ("--dilate 50.0" in shell) == ("--temporal-sigma 1.0" in shell) == (mask != "ellipse")


def test_the_cpu_heavy_stages_run_with_their_rules_threads(tmp_path):
    """landmarks, align and assemble decode and encode video: each gets its rule's `threads:` as
    --threads (capped by --cores; --set-threads changes one); the other stages keep one thread."""
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    result = snakemake(tmp_path, "--dry-run", "--printshellcmds", "--cores", "8", "--set-threads", "align=3")
    assert result.returncode == 0, result.stderr
    shells = {line.split("ciinv ")[1].split()[0]: line for line in result.stdout.splitlines() if "ciinv " in line}
    assert {"landmarks", "align", "assemble", "probe", "edit"} <= set(shells), sorted(shells)
    assert "--threads 2 " in shells["landmarks"] and "--threads 3 " in shells["align"]
    assert "--threads 4 " in shells["assemble"]
    assert "--threads" not in shells["probe"] + shells["edit"]
    capped = snakemake(tmp_path, "--dry-run", "--printshellcmds")  # --cores 2
    assert "--threads 2 " in next(line for line in capped.stdout.splitlines() if "ciinv assemble" in line)


# --- the sample sheet (config samples) -----------------------------------------------------------

TWO_EDITS = ("edits:\n  - {name: sefa0, direction: 'sefa:0', strength: 3.0}\n"
             "  - {name: sefa1, direction: 'sefa:1', strength: 3.0}\n")


def _job(stdout: str, rule: str, wildcards: str) -> str:
    """The dry run's block of one job (its input, output, resources, shell command)."""
    for block in stdout.split("\n\n"):
        if (f"rule {rule}:" in block or f"checkpoint {rule}:" in block) and f"wildcards: {wildcards}\n" in block + "\n":
            return block
    raise AssertionError(f"no {rule} job for {wildcards}:\n{stdout}")


def test_a_sample_sheet_plans_its_rows_each_with_its_file_trim_settings_and_edits(tmp_path):
    """Only the sheet's rows are planned (not input_dir's videos), under their ids; a row's trim is a
    trim job whose output every stage reads; its landmarks settings and edits are its own."""
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    (tmp_path / "clips").mkdir()
    shutil.copy(REPO / "videos" / "sample.mp4", tmp_path / "clips" / "x.mp4")
    (tmp_path / "videos.tsv").write_text("id\tfile\tstart\tend\tmax_gap\tdetector\tedits\n"
                                         "first\tclips/x.mp4\t0.5\t1.5\t9\tdlib\tsefa1\n"
                                         "second\tclips/x.mp4\t\t\t\t\t\n")
    overlay = tmp_path / "sheet.yaml"
    overlay.write_text("samples: videos.tsv\n" + TWO_EDITS)
    result = snakemake(tmp_path, "--dry-run", "--printshellcmds", configfiles=[overlay])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "results/sample" not in out
    trim = _job(out, "trim", "video=first")
    assert "ciinv trim clips/x.mp4 --start 0.5 --end 1.5 --out results/first/trimmed.mkv" in trim
    assert "ciinv probe results/first/trimmed.mkv" in _job(out, "probe", "video=first")
    assert "ciinv probe clips/x.mp4" in _job(out, "probe", "video=second")
    assert "rule trim:" not in out.replace(trim, "")
    first, second = _job(out, "landmarks", "video=first"), _job(out, "landmarks", "video=second")
    assert "--detector dlib --max-gap 9" in first and "gpu=0" in first and "2DFAN4" not in first
    assert "--detector fan --max-gap 5" in second and "gpu=1" in second and "2DFAN4" in second
    all_job = next(block for block in out.split("\n\n") if "rule all:" in block)
    outputs = next(line for line in all_job.splitlines() if line.strip().startswith("input:"))
    for target, planned in [("first.recon", True), ("first.sefa1", True), ("first.sefa0", False),
                            ("second.recon", True), ("second.sefa0", True), ("second.sefa1", True)]:
        assert (f"results/{target}.mp4" in outputs) == planned, target


@pytest.mark.parametrize("sheet, expected", [
    ("id\tfile\tedits\na\tvideos/sample.mp4\tsefa2\n",
     "videos.tsv, row 2, column edits: no edit named 'sefa2' in the config (edits: recon, sefa0, sefa1); did you mean"),
    ("id\tfile\tmax_gap\na\tvideos/sample.mp4\t-2\n", "videos.tsv, row 2, column max_gap: -2 is less than the minimum"),
    ("id\tfile\tmaxgap\na\tvideos/sample.mp4\t2\n", "videos.tsv, row 1: unknown column 'maxgap'"),
    ("id\tfile\na\tvideos/sampel.mp4\n", "videos.tsv, row 2, column file: videos/sampel.mp4 does not exist"),
])
def test_a_bad_sheet_is_refused_before_any_job_naming_the_row_and_column(tmp_path, sheet, expected):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    (tmp_path / "videos.tsv").write_text(sheet)
    overlay = tmp_path / "sheet.yaml"
    overlay.write_text("samples: videos.tsv\n" + TWO_EDITS)
    result = snakemake(tmp_path, "--dry-run", configfiles=[overlay])
    assert result.returncode != 0
    output = result.stderr + result.stdout
    line = next(line for line in output.splitlines() if line.startswith("samples "))
    assert expected in line, output
    assert "Traceback" not in output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("inputs", ["folder", "sheet"])
def test_colliding_result_folders_fail_the_run_naming_both_files_while_the_other_videos_go_on(tmp_path, inputs):
    """Two files of one name (a.mp4, a.mkv) or two sheet rows of one id: a failed job in the summary,
    exit status non-zero; the other video is still processed (here: probed)."""
    (tmp_path / "videos").mkdir()
    for name in ["twin.mp4", "twin.mkv", "other.mp4"]:
        shutil.copy(REPO / "videos" / "sample.mp4", tmp_path / "videos" / name)
    overlays = []
    if inputs == "sheet":
        (tmp_path / "videos.tsv").write_text("id\tfile\ntwin\tvideos/twin.mp4\nother\tvideos/other.mp4\n"
                                             "twin\tvideos/twin.mkv\n")
        overlays = [tmp_path / "sheet.yaml"]
        overlays[0].write_text("samples: videos.tsv\n")
    planned = snakemake(tmp_path, "--dry-run", configfiles=overlays)
    assert planned.returncode == 0, planned.stderr
    assert "results/twin/collision.txt" in planned.stdout and "results/other.sefa0.mp4" in planned.stdout
    result = snakemake(tmp_path, "--keep-going", "results/twin/collision.txt", "results/other/meta.json",
                       configfiles=overlays)
    assert result.returncode != 0
    assert (tmp_path / "results" / "other" / "meta.json").is_file()
    assert not (tmp_path / "results" / "twin" / "collision.txt").exists()
    summary = result.stderr[result.stderr.index("ciinv: 1 job(s) failed:"):]
    line = next(line for line in summary.splitlines() if line.strip().startswith("video twin (collision):"))
    where = "samples videos.tsv rows 2, 4 (id twin)" if inputs == "sheet" else "input_dir videos"
    files = "videos/twin.mp4, videos/twin.mkv" if inputs == "sheet" else "videos/twin.mkv, videos/twin.mp4"
    assert f"ciinv collision: error: {where}: {files} would all give results/twin/ and results/twin.*" in line
    assert line.count("Fix: ") == 1


def test_download_models_fetches_fan_only_for_a_video_whose_own_detector_is_fan(tmp_path):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    overlay = tmp_path / "sheet.yaml"
    overlay.write_text("samples: videos.tsv\n")  # the config's detector: fan
    for detector, fetched in [("dlib", False), ("", True)]:
        (tmp_path / "videos.tsv").write_text(f"id\tfile\tdetector\na\tvideos/sample.mp4\t{detector}\n")
        result = snakemake(tmp_path, "--dry-run", "download_models", configfiles=[overlay])
        assert result.returncode == 0, result.stderr
        assert ("2DFAN4" in result.stdout) == fetched, detector
