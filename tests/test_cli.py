"""The command line: bad input gives one clear line naming the file, and exit status 1."""

from __future__ import annotations

import json
import subprocess
import sys

from ciinv.cli import main
from ciinv.dev.sample import make_clip


def test_probe_writes_meta(tmp_path):
    make_clip(tmp_path / "a clip.mp4", frames=6, fps="30000/1001", size=(128, 96), audio=True)
    assert main(["probe", str(tmp_path / "a clip.mp4"), "--out", str(tmp_path / "meta.json")]) == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert (meta["frames"], meta["fps"], meta["width"], meta["height"], meta["audio"]) == (6, "30000/1001", 128, 96, True)


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    result = subprocess.run([sys.executable, "-m", "ciinv.cli", "probe", str(bad), "--out", str(tmp_path / "m.json")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "notes.mp4" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.json").exists()


def test_models_lists_what_is_missing_and_how_to_get_it(tmp_path, capsys):
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stylegan2-ffhq-config-f" in out and "missing" in out and "ciinv models fetch" in out


def _subcommands(parser, prefix=()):
    """(command words, parser) of every subcommand, nested ones (bench synth) included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_every_subcommand_has_a_description_and_every_option_has_help():
    from ciinv.cli import build_parser

    commands = list(_subcommands(build_parser()))
    assert {("invert",), ("bench", "synth"), ("models",)} <= {words for words, _ in commands}
    missing = [(" ".join(words), action.dest) for words, sub in commands for action in sub._actions
               if not action.help]
    assert missing == []
    assert [" ".join(words) for words, sub in commands if not sub.description] == []


def test_invert_help_describes_the_options_the_issue_names(capsys):
    import pytest as _pytest

    from ciinv.cli import main

    with _pytest.raises(SystemExit):
        main(["invert", "--help"])
    text = capsys.readouterr().out
    assert "joint MAC+ICC inversion" in text
    for option, words in {"--crops": "aligned crops", "--generator": "generator checkpoint", "--flow": "flow",
                          "--vgg16": "VGG16", "--device": "CUDA"}.items():
        assert option in text and words in text, option
