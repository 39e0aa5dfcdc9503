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


# --- settings: one option per config key (the workflow's rules pass their config blocks so) ---------

STAGE_SECTIONS = {"landmarks": ("landmarks", ()), "align": ("align", ()), "invert": ("invert", ()),
                  "pti": ("pti", ("enabled",)), "assemble": ("assemble", ())}


def _subparsers():
    import argparse

    from ciinv.cli import build_parser

    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def _changed(section: str, block: dict) -> dict:
    """Every value of a config block changed, each kept of its kind (what the rules' words must carry)."""
    from ciinv.config import setting

    changed = {}
    for name, value in block.items():
        choices = setting(f"{section}.{name}").get("enum", [])
        if isinstance(value, bool):
            changed[name] = not value
        elif isinstance(value, list):
            changed[name] = [v / 2 for v in value]
        elif isinstance(value, float):
            changed[name] = value / 3 if value else 1e-08
        elif isinstance(value, int):
            changed[name] = value + 3
        elif choices:
            changed[name] = choices[(choices.index(value) + 1) % len(choices)]
        else:  # windows_per_batch: auto
            changed[name] = 2
    return changed


def test_every_setting_of_a_stage_is_one_option_and_the_rules_words_read_back_to_the_same_values():
    import argparse

    from ciinv.cli import config_arguments, config_options, section_values
    from ciinv.config import defaults, setting

    subparsers = _subparsers()
    for command, (section, skip) in STAGE_SECTIONS.items():
        keys = [k for k in setting(section)["properties"] if k not in skip]
        dests = {a.dest for a in subparsers[command]._actions}
        assert set(keys) <= dests, (command, set(keys) - dests)
        block = {k: v for k, v in defaults(section).items() if k not in skip}
        for values in (block, _changed(section, block)):
            parser = argparse.ArgumentParser()
            config_options(parser, section, skip)
            words = config_arguments(section, values)
            assert section_values(parser.parse_args(words), section) == values, (section, words)
            assert section_values(parser.parse_args([]), section) == block  # the schema's defaults


def test_the_options_give_the_settings_of_the_config():
    from ciinv.cli import build_parser, config_arguments, section_values
    from ciinv.inversion.settings import InvertSettings, PTISettings

    parser = build_parser()
    invert = ["invert", "--crops", "c", "--meta", "m", "--shard", "0", "--generator", "g", "--flow", "dis",
              "--vgg16", "v", "--out", "o"]
    assert InvertSettings.from_dict(section_values(parser.parse_args(invert), "invert")) == InvertSettings()
    # A number of windows per batch is a number (it was the string "2", which the schema refused).
    args = parser.parse_args(invert + config_arguments("invert", {"windows_per_batch": 2, "warm_start": False}))
    settings = InvertSettings.from_dict(section_values(args, "invert"))
    assert (settings.windows_per_batch, settings.warm_start) == (2, False)
    assert parser.parse_args(invert + ["--windows-per-batch", "auto"]).windows_per_batch == "auto"
    pti = ["pti", "--crops", "c", "--latents", "l", "--generator", "g", "--vgg16", "v", "--out", "o"]
    assert PTISettings.from_dict(section_values(parser.parse_args(pti), "pti")) == PTISettings()


def test_a_bad_setting_on_the_command_line_is_refused_with_the_option_named(capsys):
    import pytest

    from ciinv.cli import main

    for words in (["--windows-per-batch", "many"], ["--lr", "nan"], ["--variant", "fulll"]):
        with pytest.raises(SystemExit):
            main(["invert", "--crops", "c", "--meta", "m", "--shard", "0", "--generator", "g", "--flow", "dis",
                  "--vgg16", "v", "--out", "o", *words])
        assert words[0] in capsys.readouterr().err


def test_threads_hold_torch_opencv_and_ffmpeg_to_the_count():
    """--threads N (the rule's `threads:`) caps torch, OpenCV and every ffmpeg the stage starts.
    In a fresh process: the caps hold for the whole process."""
    code = ("import sys, cv2\n"
            "from ciinv.cli import use_threads\n"
            "from ciinv.io.ffmpeg import ffmpeg_threads\n"
            "assert ffmpeg_threads() == []\n"
            "use_threads(1)\n"
            "import torch\n"
            "print(torch.get_num_threads(), cv2.getNumThreads(), ffmpeg_threads())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "1 1 ['-threads', '1']"


def test_threads_must_be_one_or_more(capsys):
    import pytest

    from ciinv.cli import main

    with pytest.raises(SystemExit):
        main(["align", "v.mp4", "--landmarks", "l.npz", "--out", "a.npz", "--crops", "c.mkv", "--threads", "0"])
    assert "--threads" in capsys.readouterr().err
