"""The sample sheet: typed rows, each video's overrides and config, and a bad sheet named by row and column."""

from __future__ import annotations

import pytest

from ciinv.config import setting
from ciinv.errors import CiinvError
from ciinv.samples import Sample, columns, read_sheet, sample_config

EDITS = ["recon", "smile", "age"]


def _sheet(tmp_path, text: str):
    (tmp_path / "videos").mkdir(exist_ok=True)
    for name in ["a.mp4", "b.mov"]:
        (tmp_path / "videos" / name).write_bytes(b"x")
    path = tmp_path / "videos.tsv"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files are relative to the working folder


def test_a_sheet_gives_each_video_its_file_trim_overrides_and_edits(tmp_path):
    path = _sheet(tmp_path, "id\tfile\tstart\tend\tmax_gap\tdetector\tfaces\tedits\n"
                            "# a comment, and a blank line below\n\n"
                            "clip a\tvideos/a.mp4\t1.5\t\t9\t\tall\tsmile, age\n"
                            "b\tvideos/b.mov\t\t4\t\tdlib\t\t\n")
    sheet = read_sheet(path, EDITS)
    assert sheet.collisions == []
    a, b = sheet.samples["clip a"], sheet.samples["b"]
    assert (a.file, a.row, a.start, a.end, a.edits) == ("videos/a.mp4", 4, 1.5, None, ("smile", "age"))
    assert a.overrides == {"landmarks": {"max_gap": 9}, "faces": "all"} and a.trimmed
    assert (b.start, b.end, b.edits, b.overrides) == (None, 4.0, None, {"landmarks": {"detector": "dlib"}})
    assert sheet.records[0] == {"id": "clip a", "file": "videos/a.mp4", "start": 1.5, "max_gap": 9, "faces": "all",
                                "edits": ["smile", "age"]}


def test_a_videos_config_is_the_config_with_its_rows_overrides():
    config = {"landmarks": {"detector": "fan", "max_gap": 5}, "align": {"resolution": 1024}}

    row = Sample(id="a", file="videos/a.mp4", row=2, overrides={"landmarks": {"max_gap": 9}, "faces": "all"})
    merged = sample_config(config, row)
    assert merged == {"landmarks": {"detector": "fan", "max_gap": 9}, "align": {"resolution": 1024}, "faces": "all"}
    assert config["landmarks"]["max_gap"] == 5  # the config itself is left alone
    assert sample_config(config, None) is config
    assert sample_config(config, Sample(id="b", file="videos/b.mov", row=3)) is config


def test_a_column_that_overrides_a_setting_takes_its_allowed_values_from_the_config_schema():
    found = columns()
    for column in ("max_gap", "detector"):
        key = found[column]["config_key"]
        assert {k: v for k, v in setting(key).items() if k != "description"}.items() <= found[column].items()


@pytest.mark.parametrize("text, expected", [
    ("id\tfile\tmax_gapp\n", "videos.tsv, row 1: unknown column 'max_gapp'; columns: id, file, start, end, detector, "
                             "max_gap, faces, edits; did you mean `max_gap`?"),
    ("id\tvideo\n", "videos.tsv, row 1: unknown column 'video'"),
    ("id\tmax_gap\n", "videos.tsv, row 1: no column file"),
    ("id\tfile\tmax_gap\nx\tvideos/a.mp4\tmany\n", "videos.tsv, row 2, column max_gap: 'many' is not a whole number"),
    ("id\tfile\tmax_gap\nx\tvideos/a.mp4\t-1\n", "videos.tsv, row 2, column max_gap: -1 is less than the minimum of 0"),
    ("id\tfile\tdetector\nx\tvideos/a.mp4\tfna\n",
     "videos.tsv, row 2, column detector: 'fna' is not allowed; allowed: fan, dlib; did you mean `fan`?"),
    ("id\tfile\tfaces\nx\tvideos/a.mp4\tboth\n", "videos.tsv, row 2, column faces: 'both' is not allowed"),
    ("id\tfile\tedits\nx\tvideos/a.mp4\tsmil\n",
     "videos.tsv, row 2, column edits: no edit named 'smil' in the config (edits: recon, smile, age); did you mean "
     "`smile`?"),
    ("id\tfile\tstart\tend\nx\tvideos/a.mp4\t3\t2.5\n", "videos.tsv, row 2, column end: 2.5 s is not after the start"),
    ("id\tfile\tstart\nx\tvideos/a.mp4\tnan\n", "videos.tsv, row 2, column start: 'nan' is not a finite number"),
    ("id\tfile\nx\tvideos/c.mp4\n", "videos.tsv, row 2, column file: videos/c.mp4 does not exist"),
    ("id\tfile\nx\tvideos\n", "videos.tsv, row 2, column file: videos is not a file"),
    ("id\tfile\n\tvideos/a.mp4\n", "videos.tsv, row 2, column id: empty; every row needs its id"),
    ("id\tfile\nx/y\tvideos/a.mp4\n", "videos.tsv, row 2, column id: 'x/y' cannot name a results folder"),
    ("id\tfile\n.x\tvideos/a.mp4\n", "videos.tsv, row 2, column id: '.x' cannot name a results folder"),
    ("id\tfile\nx\tvideos/a{1}.mp4\n", "videos.tsv, row 2, column file: 'videos/a{1}.mp4' holds braces"),
    ("id\tfile\nx\tvideos/a.mp4\textra\n", "videos.tsv, row 2: 3 cells but 2 columns"),
    ("id,file\nx,videos/a.mp4\n", "videos.tsv, row 1: unknown column 'id,file'"),
    ("", "videos.tsv: the file is empty"),
])
def test_a_bad_sheet_is_one_line_naming_the_sheet_the_row_and_the_column(tmp_path, text, expected):
    path = _sheet(tmp_path, text)
    with pytest.raises(CiinvError) as caught:
        read_sheet(path, EDITS)
    message = str(caught.value)
    assert message.startswith(f"samples {path}") and "\n" not in message
    assert expected in message


def test_a_missing_sheet_is_named(tmp_path):
    with pytest.raises(CiinvError, match="samples nowhere.tsv: no such file"):
        read_sheet("nowhere.tsv", EDITS)


def test_rows_that_share_an_id_are_a_collision_and_the_others_go_on(tmp_path):
    path = _sheet(tmp_path, "id\tfile\nx\tvideos/a.mp4\ny\tvideos/a.mp4\nx\tvideos/b.mov\n")
    sheet = read_sheet(path, EDITS)
    assert list(sheet.samples) == ["y"]  # one file under two ids is fine: two trims of one clip, say
    [collision] = sheet.collisions
    assert collision.name == "x" and collision.files == ("videos/a.mp4", "videos/b.mov")
    assert f"samples {path} rows 2, 4 (id x): videos/a.mp4, videos/b.mov would all give results/x/" in collision.message
    assert collision.message.endswith("Fix: give each row its own id")


def test_files_are_not_looked_for_where_they_live_elsewhere(tmp_path):
    """With a storage provider the videos are in a bucket: planning reads only the config and the sheet."""
    path = _sheet(tmp_path, "id\tfile\nx\tvideos/in-the-bucket.mp4\n")
    assert read_sheet(path, EDITS, check_files=False).samples["x"].file == "videos/in-the-bucket.mp4"
