"""Config checks beyond the schema: no NaN or infinite number anywhere, edit names unique."""

from __future__ import annotations

import pytest

from ciinv.config import check_config, nonfinite_numbers
from ciinv.errors import CiinvError


def test_every_non_finite_number_is_named_by_its_key():
    config = {"invert": {"lr": float("nan"), "betas": [0.9, float("inf")], "steps": 5},
              "edits": [{"name": "a", "strength": -float("inf")}], "paste": {"feather": 25.0}}
    assert nonfinite_numbers(config) == ["invert/lr", "invert/betas/1", "edits/0/strength"]
    with pytest.raises(CiinvError, match="invert/lr, invert/betas/1, edits/0/strength: are not a finite number"):
        check_config(config)


def test_two_edits_of_one_name_are_refused():
    check_config({"edits": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(CiinvError, match="'a' appear more than once"):
        check_config({"edits": [{"name": "a"}, {"name": "b"}, {"name": "a"}]})


# --- short schema errors ------------------------------------------------------------------------

def _repo_config():
    import copy

    import yaml

    from ciinv.config import SCHEMA

    return copy.deepcopy(yaml.safe_load((SCHEMA.parents[1] / "config.yaml").read_text()))


def test_a_typod_key_names_the_key_the_value_the_allowed_keys_and_the_near_miss():
    import pytest

    from ciinv.config import validate_config
    from ciinv.errors import CiinvError

    config = _repo_config()
    config["invert"]["stepz"] = 300
    with pytest.raises(CiinvError) as error:
        validate_config(config)
    message = str(error.value)
    assert "\n" not in message and len(message) < 600
    assert "invert: unknown key `stepz` (value 300)" in message
    assert "did you mean `steps`?" in message and "window" in message


def test_a_bad_choice_says_what_is_allowed():
    import pytest

    from ciinv.config import validate_config
    from ciinv.errors import CiinvError

    config = _repo_config()
    config["landmarks"]["detector"] = "fann"
    expected = r'landmarks/detector: "fann" is not allowed; allowed: .*"fan".*did you mean `fan`'
    with pytest.raises(CiinvError, match=expected):
        validate_config(config)


def test_a_partial_edit_says_that_an_overlay_replaces_the_whole_list():
    import pytest

    from ciinv.config import validate_config
    from ciinv.errors import CiinvError

    config = _repo_config()
    config["edits"] = [{"name": "smile", "strength": 2.0}]  # an overlay meant to change one number
    with pytest.raises(CiinvError) as error:
        validate_config(config)
    message = str(error.value)
    assert message.startswith("config: edits/0: ") and "\n" not in message
    assert "replaces a whole list such as `edits:`" in message


def test_load_config_merges_overlays_and_validates(tmp_path, smoke_dir):
    import yaml

    from ciinv.config import load_config
    from tests.conftest import REPO

    config = load_config([REPO / "config.yaml", smoke_dir / "smoke.yaml"])
    assert config["invert"]["steps"] == 5 and config["invert"]["lr"] == 0.01  # overlay key, base key kept
    assert config["models"]["vgg16"].endswith("vgg16-tiny.pth")

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"invert": {"variant": "nope"}}))
    with pytest.raises(CiinvError, match="invert/variant"):
        load_config([REPO / "config.yaml", bad])
    with pytest.raises(CiinvError, match="not found"):
        load_config([tmp_path / "missing.yaml"])


def test_load_config_gives_the_same_short_error(tmp_path):
    import yaml

    from ciinv.config import SCHEMA, load_config

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"invert": {"stepz": 5}}))
    with pytest.raises(CiinvError, match="did you mean `steps`"):
        load_config([SCHEMA.parents[1] / "config.yaml", overlay])


def test_the_repositorys_config_passes():
    from ciinv.config import schema_error

    assert schema_error(_repo_config()) is None


# --- one source of truth: the schema's defaults ------------------------------------------------

def _schema_defaults(entry=None, prefix=""):
    """{dotted key: default} of every setting in the schema that has one."""
    from ciinv.config import schema_document

    entry = schema_document() if entry is None else entry
    found = {}
    for key, sub in entry.get("properties", {}).items():
        if "default" in sub:
            found[prefix + key] = sub["default"]
        found.update(_schema_defaults(sub, f"{prefix}{key}."))
    return found


def test_every_setting_has_a_default_and_a_description_in_the_schema():
    from ciinv.config import schema_document

    def walk(entry, prefix):
        for key, sub in entry.get("properties", {}).items():
            assert sub.get("description"), f"{prefix}{key} has no description"
            if sub.get("type") == "object" and "properties" in sub:
                walk(sub, f"{prefix}{key}.")
            elif prefix + key != "edits":
                assert "default" in sub, f"{prefix}{key} has no default"

    walk(schema_document(), "")


def test_config_yaml_is_the_schemas_defaults():
    config = _repo_config()
    for key, default in _schema_defaults().items():
        value = config
        for part in key.split("."):
            value = value[part]
        assert value == default, f"config.yaml {key}: {value!r}, the schema's default: {default!r}"


def test_the_settings_objects_take_the_schemas_defaults():
    import dataclasses

    from ciinv.config import defaults
    from ciinv.inversion.objective import LossConfig
    from ciinv.inversion.settings import InvertSettings, PTISettings, StitchSettings

    invert = defaults("invert")
    assert InvertSettings().to_dict() == invert
    assert PTISettings().to_dict() == defaults("pti")
    assert StitchSettings().to_dict() == defaults("stitch")
    for field in dataclasses.fields(LossConfig):
        assert getattr(LossConfig(), field.name) == invert[field.name], field.name


def test_the_cli_options_that_mirror_config_keys_take_the_schemas_defaults_and_help():
    import argparse

    from ciinv.cli import build_parser
    from ciinv.config import setting

    mirrored = {"landmarks": ["landmarks.detector", "landmarks.max_gap", "landmarks.min_share", "models_dir"],
                "align": ["align.resolution", "align.center_sigma", "align.axes_sigma"],
                "invert": ["invert.windows_per_batch", "invert.checkpoint_every"],
                "assemble": ["assemble.crf", "assemble.preset", "paste.mask", "paste.exclude", "paste.hair", "paste.dilate",
                             "paste.temporal_sigma"],
                "pti": ["pti.checkpoint_every"],
                "stitch": ["stitch.steps", "stitch.border_band", "stitch.checkpoint_every", "paste.mask", "paste.feather"],
                "models": ["models_dir"]}
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command, keys in mirrored.items():
        options = {a.dest: a for a in subparsers[command]._actions}
        for key in keys:
            option = options[key.rsplit(".", 1)[-1]]
            assert option.default == setting(key)["default"], f"ciinv {command} --{option.dest}"
            assert option.help == setting(key)["description"], f"ciinv {command} --{option.dest}"


def test_the_fast_preset_only_loosens_the_stop_rule():
    """configs/fast.yaml validates on config.yaml and changes the convergence tolerance alone, to a
    looser one than the default (its header gives the measured cost and quality of both)."""
    from ciinv.config import SCHEMA, load_config

    repo = SCHEMA.parents[1]
    default, fast = load_config([repo / "config.yaml"]), load_config([repo / "config.yaml", repo / "configs" / "fast.yaml"])
    changed = {(section, key) for section in default if isinstance(default[section], dict)
               for key in default[section] if default[section][key] != fast[section][key]}
    assert changed == {("invert", "stop_tolerance")}
    assert fast["invert"]["stop_tolerance"] > default["invert"]["stop_tolerance"]
