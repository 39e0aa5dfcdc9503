"""The messages of issue 17: each says what is wrong in the user's words, names the file, gives the
fix, and matches the README's troubleshooting table (the last test)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ciinv.cli import main
from ciinv.config import load_config, validate_config
from ciinv.dev.logs import log_messages
from ciinv.dev.tiny import write_tiny_stylegan2
from ciinv.edits.directions import MAX_STEP, check_direction, step_warning, strength_warning
from ciinv.edits.spec import EditSpec
from ciinv.edits.stage import write_edit
from ciinv.errors import CiinvError
from ciinv.failures import summary
from ciinv.gpu import job_device
from ciinv.io.ffmpeg import last_message, stderr_tail
from ciinv.io.files import read_torch, unwritable_folder
from ciinv.models import load_generator
from ciinv.models.checkpoint import load_weights
from ciinv.models.registry import needed_models

from .conftest import REPO, snakemake

GENERATOR = "stylegan2-ffhq-config-f"


# --- directions -------------------------------------------------------------------------------


def test_a_misspelled_direction_lists_the_generators_attributes_and_suggests_one(tmp_path):
    with pytest.raises(CiinvError) as caught:
        check_direction("smile", "smlie", GENERATOR, tmp_path)
    message = str(caught.value)
    assert message.startswith("edit 'smile': direction 'smlie' names no direction")
    assert "stylegan2 generators (age, smile, pose)" in message
    assert "interfacegan-stylegan2-smile" in message and "stylegan1" not in message
    assert "VGG" not in message and "raft" not in message  # not every registry file
    assert message.endswith("did you mean `smile`?")


def test_a_folder_or_a_device_as_a_direction_says_what_it_is(tmp_path):
    with pytest.raises(CiinvError, match=r"edit 'z': direction '/dev/zero': /dev/zero is a device, not a file"):
        check_direction("z", "/dev/zero", GENERATOR, tmp_path)
    with pytest.raises(CiinvError, match=rf"{re.escape(str(tmp_path))} is a folder, not a file"):
        check_direction("d", str(tmp_path), GENERATOR, tmp_path)
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(CiinvError, match="empty.npy is an empty file"):
        check_direction("e", str(tmp_path / "empty.npy"), GENERATOR, tmp_path)
    with pytest.raises(CiinvError, match="is a registry vgg16 file, not a direction"):
        check_direction("v", "vgg16", GENERATOR, tmp_path)


def test_a_missing_direction_file_warns_at_planning_and_suggests_the_file_beside_it(tmp_path):
    np.save(tmp_path / "age.npy", np.zeros(512, np.float32))
    typo = str(tmp_path / "aeg.npy")
    warning = check_direction("age", typo, GENERATOR, tmp_path, missing_ok=True)
    assert warning.startswith(f"edit 'age': direction '{typo}': the file {typo} does not exist")
    assert f"did you mean `{tmp_path / 'age.npy'}`?" in warning and "the other edits go on" in warning
    with pytest.raises(CiinvError, match="does not exist"):  # in the edit job itself it is an error
        check_direction("age", typo, GENERATOR, tmp_path)
    for good in ("smile", "interfacegan-stylegan2-age", str(tmp_path / "age.npy")):
        assert check_direction("x", good, GENERATOR, tmp_path) is None


def test_the_workflow_refuses_a_misspelled_direction_before_any_job(tmp_path):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("edits:\n  - {name: smile, direction: smlie, strength: 2.0}\n"
                       "  - {name: big, direction: 'sefa:0', strength: 1.0e+6}\n")
    result = snakemake(tmp_path, "--dry-run", configfiles=[overlay])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    line = next(line for line in output.splitlines() if "names no direction" in line)
    assert line.startswith("config edits: edit 'smile': direction 'smlie'") and line.endswith("did you mean `smile`?")
    assert "model file" not in output and not (tmp_path / "results").exists()
    # A missing file and a huge strength are warnings when the run starts; the plan goes on.
    overlay.write_text("edits:\n  - {name: gone, direction: my/aeg.npy, strength: 2.0}\n"
                       "  - {name: big, direction: 'sefa:0', strength: 1.0e+6}\n")
    result = snakemake(tmp_path, "--dry-run", configfiles=[overlay])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ciinv: edit 'gone': direction 'my/aeg.npy': the file my/aeg.npy does not exist" in output
    assert "ciinv: edit 'big': it moves the codes by 1e+06 on a layer, beyond 10" in output


def test_a_strength_past_every_directions_range_is_a_warning_at_planning_and_in_the_edit_job(tmp_path):
    assert strength_warning(EditSpec.from_entry({"name": "s", "direction": "smile", "strength": 3.0})) is None
    big = strength_warning(EditSpec.from_entry({"name": "s", "direction": "sefa:0", "strength": 1e6}))
    assert big.startswith("edit 's': it moves the codes by 1e+06 on a layer, beyond 10") and "smaller strength" in big
    assert step_warning("s", MAX_STEP) is None
    # The edit job measures the step it takes (a file of one's own may have any norm).
    write_tiny_stylegan2(tmp_path / "g.pt", resolution=16, w_dim=512)
    generator = load_generator(tmp_path / "g.pt")
    np.save(tmp_path / "latents.npy", generator.w_avg.expand(2, generator.num_ws, 512).numpy().copy())
    np.save(tmp_path / "long.npy", np.full(512, 1.0, np.float32))  # norm √512 ≈ 22.6
    with log_messages() as said:
        write_edit(tmp_path / "latents.npy", generator, {"name": "l", "direction": str(tmp_path / "long.npy"),
                                                         "strength": 1.0}, tmp_path / "out.npy")
    assert any(m.startswith("edit 'l': it moves the codes by 22.6 on a layer") for m in said), said


# --- config files -------------------------------------------------------------------------------


def _config_with(**invert) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["invert"].update(invert)
    return config


def test_a_number_yaml_reads_as_text_gets_the_way_to_write_it():
    with pytest.raises(CiinvError) as caught:
        validate_config(_config_with(lr=yaml.safe_load("x: 1e308")["x"]))
    assert str(caught.value).endswith("YAML reads 1e308 as text: write it as 1.0e+308")
    assert yaml.safe_load("x: 1.0e+308")["x"] == 1e308
    with pytest.raises(CiinvError) as caught:
        validate_config(_config_with(lr="3e-4"))
    assert str(caught.value).endswith("write it as 0.0003")
    with pytest.raises(CiinvError) as caught:
        validate_config(_config_with(lr="fast"))
    assert "YAML reads" not in str(caught.value)


@pytest.mark.parametrize("text, expected", [
    ("", "empty.yaml: the config file is empty (or holds only comments)"),
    ("# only a comment\n", "empty.yaml: the config file is empty (or holds only comments)"),
    ("invert: !!python/object:argparse.Namespace {}\n",
     "empty.yaml: line 1: `!!python/object:argparse.Namespace` asks YAML to build a Python object"),
    ("invert:\n\tsteps: 3\n", "indent with spaces, not tabs"),
])
def test_a_config_file_snakemake_cannot_read_is_named_by_check_config(tmp_path, capsys, text, expected):
    (tmp_path / "empty.yaml").write_text(text)
    with pytest.raises(CiinvError, match=re.escape(expected)):
        load_config([REPO / "config.yaml", tmp_path / "empty.yaml"])
    assert main(["check-config", str(REPO / "config.yaml"), str(tmp_path / "empty.yaml")]) == 1
    assert expected in capsys.readouterr().err
    if "python" in text:
        assert "tab" not in str(expected)


def test_check_config_passes_a_good_config_and_checks_its_directions(tmp_path, capsys):
    assert main(["check-config", str(REPO / "config.yaml")]) == 0
    assert "ok (1 edit(s))" in capsys.readouterr().out
    (tmp_path / "typo.yaml").write_text("edits:\n  - {name: smile, direction: smlie, strength: 2.0}\n")
    assert main(["check-config", str(REPO / "config.yaml"), str(tmp_path / "typo.yaml")]) == 1
    assert "did you mean `smile`?" in capsys.readouterr().err


# --- third-party advice -------------------------------------------------------------------------


def test_pytorchs_advice_to_load_unsafely_is_not_passed_on(tmp_path):
    import argparse

    torch.save({"g_ema": {}, "args": argparse.Namespace(size=16)}, tmp_path / "g.pt")
    for read in (lambda p: load_weights(p), lambda p: read_torch(p)):
        with pytest.raises(CiinvError) as caught:
            read(tmp_path / "g.pt")
        message = str(caught.value)
        assert "g.pt" in message and "pickled Python object (argparse.Namespace)" in message
        assert "weights_only" not in message and "trust" not in message and "\x1b" not in message


def test_ffmpegs_last_message_repeated_is_left_out():
    said = "[mp4 @ 0x1] error writing trailer\n    Last message repeated 4 times\nConversion failed!\n" \
           "    Last message repeated 1 time\n"
    assert stderr_tail(said) == "[mp4 @ 0x1] error writing trailer\nConversion failed!"
    assert last_message(said) == "Conversion failed!"


# --- the disk -----------------------------------------------------------------------------------


def _limited(script: str, kib: int, cwd) -> subprocess.CompletedProcess:
    """Run Python ``script`` with a file-size limit of ``kib`` KiB (``ulimit -f``)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, resource.RLIM_INFINITY))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, capture_output=True, text=True,
                          preexec_fn=limit, timeout=300)


def test_a_file_size_limit_is_named_with_its_fix_for_ffmpeg_and_for_torch_save(tmp_path):
    result = _limited("""
        import dataclasses, pathlib, numpy as np, torch
        from ciinv.errors import CiinvError
        from ciinv.io.crops import CropWriter
        from ciinv.inversion.resume import save_resume
        try:
            with CropWriter("crops.mkv", 100, 64) as writer:
                for i in range(100):
                    writer.write(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        except CiinvError as exc:
            print(exc)
        @dataclasses.dataclass
        class State:
            codes: torch.Tensor
        try:
            save_resume(pathlib.Path("shard_0000.pt.resume"), {"k": 1}, State(torch.randn(100_000)))
        except CiinvError as exc:
            print(exc)
    """, 100, tmp_path)
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line, name in zip(lines, ("crops.mkv", "shard_0000.pt.resume")):
        assert line.startswith(f"cannot write {name}: File too large; the file-size limit (now 100 KiB) stops it: "
                               "raise it (`ulimit -f unlimited`"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half written


def test_align_past_a_file_size_limit_ends_in_the_summary_with_the_fix(tmp_path):
    import resource

    shutil.copytree(REPO / "videos", tmp_path / "videos")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--cores", "2", "--configfile", str(REPO / "config.yaml"), "--config",
               "landmarks={detector: dlib}", "--", "results/sample/crops.mkv"]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, preexec_fn=lambda: (
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048 * 1024, resource.RLIM_INFINITY))))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    after = text[text.index("ciinv: 1 job(s) failed:"):]
    assert "video sample (align): ciinv align: error: cannot write results/sample/crops.mkv: File too large; the " \
           "file-size limit (now 2048 KiB) stops it: raise it (`ulimit -f unlimited`" in after
    assert "no message" not in text


def test_an_ffmpeg_killed_without_a_word_is_said_to_be_killed(tmp_path):
    import signal

    from ciinv.io.crops import CropWriter

    with pytest.raises(CiinvError, match=r"crops.mkv: ffmpeg failed .*: ffmpeg was killed by SIGKILL"):
        with CropWriter(tmp_path / "crops.mkv", 3, 64) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
            # ffmpeg is this process's one child; its command line appears once it has started.
            (pid,) = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
            for _ in range(500):
                if "ffmpeg" in Path(f"/proc/{pid}/cmdline").read_text():
                    break
                time.sleep(0.01)
            os.kill(int(pid), signal.SIGKILL)
            for _ in range(2):
                writer.write(np.zeros((64, 64, 3), np.uint8))
    assert not list(tmp_path.iterdir())


def test_the_summary_carries_the_fix_of_a_failed_write(tmp_path):
    log = tmp_path / "results/v/logs/invert_0000.log"
    log.parent.mkdir(parents=True)
    log.write_text("ciinv invert: error: cannot write results/v/latents/shard_0000.pt.resume: File too large; "
                   "the file-size limit (now 100 KiB) stops it: raise it (`ulimit -f unlimited`) ...\n")
    text = summary(f"Error in rule invert:\n    log: {log} (check log file(s) for error details)\n")
    assert "video v (invert): ciinv invert: error: cannot write" in text and "ulimit -f unlimited" in text


def test_a_read_only_results_folder_is_said_at_planning(tmp_path):
    """A read-only mount (root ignores permission bits, so a bind mount in a private namespace)."""
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    (tmp_path / "results").mkdir()
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no mount namespace here (unshare -m)")
    results = tmp_path / "results"
    workflow = (f"{sys.executable} -m snakemake --snakefile {REPO / 'Snakefile'} --directory {tmp_path} --cores 1 "
                f"--configfile {REPO / 'config.yaml'}")
    script = f"mount --bind {results} {results} && mount -o remount,ro,bind {results} && {workflow}"
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    line = next(line for line in output.splitlines() if line.startswith("ciinv: cannot write in"))
    assert line.startswith("ciinv: cannot write in results/: Read-only file system; the file system holding "
                           "results is mounted read-only"), line
    assert "Traceback" not in output and "Failed to create output directory" not in output


def test_a_writable_folder_passes_and_a_file_in_the_way_is_named(tmp_path):
    assert unwritable_folder(tmp_path / "results") is None
    assert not list(tmp_path.iterdir())  # the trial file is gone
    (tmp_path / "file").write_text("x")
    problem = unwritable_folder(tmp_path / "file" / "results")
    assert problem is not None and problem.startswith(f"cannot write in {tmp_path / 'file'}/")


# --- devices and models -------------------------------------------------------------------------


def test_every_gpu_job_says_its_device():
    with log_messages() as said:
        assert job_device("cpu") == "cpu"
    assert said == [f"device: cpu ({torch.get_num_threads()} threads)"]
    source = (REPO / "ciinv" / "cli.py").read_text()
    assert "claim_device" not in source  # every job claims its device through job_device


def test_models_status_marks_what_the_config_needs(tmp_path, capsys):
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f"models_dir: {tmp_path}\nlandmarks: {{detector: dlib}}\n"
                       "edits:\n  - {name: smile, direction: smile, strength: 2.0}\n")
    assert main(["models", "--config", str(REPO / "config.yaml"), str(overlay)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in out.splitlines()
            if line.strip() and not line.startswith(("edits:", "this config", " " * 10))}
    assert rows["stylegan2-ffhq-config-f"].startswith("* ") and "needed for models.generator" in rows["stylegan2-ffhq-config-f"]
    assert rows["interfacegan-stylegan2-smile"].startswith("* ") and "edit smile" in rows["interfacegan-stylegan2-smile"]
    for unused in ("raft", "s3fd", "interfacegan-stylegan1-smile", "e4e-ffhq-encode"):
        assert rows[unused].startswith("  "), rows[unused]
    assert str(tmp_path) in rows["vgg16"]  # the config's models_dir
    config = load_config([REPO / "config.yaml", overlay])
    assert f"this config needs {len(needed_models(config))} of these files" in out


# --- the README ---------------------------------------------------------------------------------


def _table_messages() -> list[str]:
    """The rows of the README's troubleshooting table (messages are quoted in both cells)."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| message (shortened) |"):]
    table = table[:table.index("\n\n")]
    return table.splitlines()[2:]


def _as_pattern(shown: str) -> str:
    """A README message as a regex: `...` stands for anything, `x` for a video's name."""
    return ".*".join(re.escape(part) for part in shown.split("...")).replace(r"results/x/", r"results/[^/ ]+/")


def _messages(tmp_path) -> list[str]:
    """The messages this file checks, as printed."""
    out = []
    for call in (lambda: check_direction("smile", "smlie", GENERATOR, tmp_path),
                 lambda: check_direction("z", "/dev/zero", GENERATOR, tmp_path),
                 lambda: validate_config(_config_with(lr="1e308"))):
        with pytest.raises(CiinvError) as caught:
            call()
        out.append(str(caught.value))
    out[:2] = [f"config edits: {message}" for message in out[:2]]  # as the planning prints them
    out.append("ciinv: " + check_direction("gone", "my/aeg.npy", GENERATOR, tmp_path, missing_ok=True))
    out.append("ciinv: " + strength_warning(EditSpec.from_entry({"name": "s", "direction": "sefa:0", "strength": 1e6})))
    for folder, text in (("empty", ""), ("tag", "invert: !!python/object:argparse.Namespace {}\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mine.yaml").write_text(text)
        with pytest.raises(CiinvError) as caught:
            load_config([tmp_path / folder / "mine.yaml"])
        out.append(str(caught.value).replace(f"{tmp_path / folder}/", ""))
    import argparse

    torch.save({"args": argparse.Namespace(size=16)}, tmp_path / "generator_pti.pt")
    with pytest.raises(CiinvError) as caught:
        load_weights(tmp_path / "generator_pti.pt")
    out.append(str(caught.value).replace(str(tmp_path), "results/x"))
    return out


def test_the_readmes_troubleshooting_table_shows_these_messages_as_printed(tmp_path):
    shown = [[a or b for a, b in re.findall(r"``\s?(.+?)\s?``|`([^`]+)`", cell)] for cell in _table_messages()]
    for message in _messages(tmp_path):
        patterns = [_as_pattern(part) for parts in shown for part in parts]
        assert any(re.search(pattern, message) for pattern in patterns if len(pattern) > 20), message
    for errno_name, words in ((errno.EFBIG, "File too large"), (errno.EROFS, "Read-only file system")):
        assert any(words in cell for cell in _table_messages()), words
