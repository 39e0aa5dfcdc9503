"""The end-of-run summary: each failed video or edit with its one-line reason, downloads said once."""

from ciinv.failures import failed_jobs, reason, summary

SNAKEMAKE_LOG = """\
Error in rule probe:
    message: None
    jobid: 3
    input: videos/bad.mp4
    output: results/bad/meta.json
    log: {work}/results/bad/logs/probe.log (check log file(s) for error details)
    shell:
        ciinv probe videos/bad.mp4 --out results/bad/meta.json 2> results/bad/logs/probe.log
Error in rule edit:
    message: None
    log: {work}/results/good/logs/edit_frown.log (check log file(s) for error details)
Error in rule download_model:
    message: None
    log: {work}/models/logs/a.pt.log (check log file(s) for error details)
Error in rule download_model:
    message: None
    log: {work}/models/logs/b.pkl.log (check log file(s) for error details)
"""

OFFLINE = """\
ciinv models: error: could not download {name}:
  https://example.org/{name} (try 1/3): <urlopen error [Errno -3] Temporary failure in name resolution>
Fix: check the network, or download https://example.org/{name} to models/{name} by hand.
"""


def _work(tmp_path):
    for folder in ("results/bad/logs", "results/good/logs", "models/logs"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "results/bad/logs/probe.log").write_text(
        "ciinv probe: error: videos/bad.mp4: it is not a video ffmpeg can read. ffmpeg said:\n"
        "Invalid data found when processing input\n")
    (tmp_path / "results/good/logs/edit_frown.log").write_text(
        "loading generator\nciinv edit: error: edit 'frown': frown.npy: no such file\n")
    for name in ("a.pt", "b.pkl"):
        (tmp_path / f"models/logs/{name}.log").write_text(OFFLINE.format(name=name))
    return SNAKEMAKE_LOG.format(work=tmp_path)


def test_failed_jobs_are_read_from_snakemakes_log(tmp_path):
    jobs = failed_jobs(_work(tmp_path))
    assert [rule for rule, _ in jobs] == ["probe", "edit", "download_model", "download_model"]
    assert jobs[0][1] == f"{tmp_path}/results/bad/logs/probe.log"


def test_the_reason_is_the_ciinv_error_line_with_its_continuation_or_fix(tmp_path):
    _work(tmp_path)
    assert reason(tmp_path / "results/bad/logs/probe.log") == (
        "ciinv probe: error: videos/bad.mp4: it is not a video ffmpeg can read. ffmpeg said: "
        "Invalid data found when processing input")
    offline = reason(tmp_path / "models/logs/a.pt.log")
    assert offline.startswith("ciinv models: error: could not download a.pt:")
    assert "Fix: check the network, or download https://example.org/a.pt to models/a.pt by hand." in offline
    assert reason(tmp_path / "missing.log").startswith("(no log at")


def test_the_summary_names_each_failed_video_and_edit_and_says_the_download_failure_once(tmp_path):
    text = summary(_work(tmp_path))
    lines = text.splitlines()
    assert lines[0] == "ciinv: 4 job(s) failed:"
    assert any(line.strip().startswith("video bad (probe): ciinv probe: error: videos/bad.mp4") for line in lines)
    assert any(line.strip().startswith("video good, edit frown (edit): ciinv edit: error: edit 'frown'")
               for line in lines)
    assert sum("could not be downloaded" in line for line in lines) == 1
    assert text.count("Fix:") == 1
    assert "https://example.org/a.pt -> models/a.pt" in text and "https://example.org/b.pkl -> models/b.pkl" in text


def test_a_failed_stitch_job_names_its_edit(tmp_path):
    (tmp_path / "results/good/logs").mkdir(parents=True)
    (tmp_path / "results/good/logs/stitch_smile.log").write_text(
        "ciinv stitch: error: results/good/stitched/smile.mkv: the tuning diverged (non-finite pixels) on frame 3\n")
    text = summary(f"Error in rule stitch:\n    log: {tmp_path}/results/good/logs/stitch_smile.log (check log file(s) "
                   "for error details)\n")
    assert "video good, edit smile (stitch): ciinv stitch: error:" in text


def test_no_failure_no_summary():
    assert summary("Finished jobid: 0\n3 of 3 steps (100%) done\n") == ""


def test_a_fix_on_the_error_line_itself_is_said_once(tmp_path):
    log = tmp_path / "collision.log"
    log.write_text("ciinv collision: error: input_dir videos: videos/a.mkv, videos/a.mp4 would all give results/a/ "
                   "and results/a.*: none of them is processed. Fix: rename all but one\n")
    said = reason(log)
    assert said.endswith("none of them is processed. Fix: rename all but one") and said.count("Fix:") == 1
