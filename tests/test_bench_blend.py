"""`ciinv bench blend` on a tiny setup: its files, its rows and its last line."""

import csv
import re

import numpy as np
import pytest

from ciinv.bench import blend
from ciinv.cli import main
from ciinv.dev.smoke import write_smoke_models

from .conftest import REPO


def test_bench_blend_writes_its_files_and_prints_the_best_mask_last(tmp_path, capsys):
    write_smoke_models(tmp_path / "smoke")
    assert main(["bench", "blend", "--config", str(REPO / "config.yaml"), str(tmp_path / "smoke" / "smoke.yaml"),
                 "--out", str(tmp_path / "out"), "--clips", "1", "--frames", "3", "--size", "192",
                 "--resolution", "64", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    assert re.fullmatch(r"best (ellipse|landmarks|parser): full-frame error \d+\.\d\d× lower than ellipse", printed[-1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blend.csv", "blend.md", "blend.png"]
    with open(tmp_path / "out" / "blend.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["mask"] for r in rows] == ["ellipse", "landmarks", "parser"]  # the smoke config has a (tiny) parser
    assert list(rows[0]) == blend.COLUMNS
    for row in rows:
        assert all(row[c] != "" for c in blend.COLUMNS), row
        assert float(row["error"]) > 0 and float(row["warp_ratio"]) > 0
    markdown = (tmp_path / "out" / "blend.md").read_text()
    assert markdown.rstrip().endswith(printed[-1]) and "| landmarks |" in markdown


def test_the_ideal_is_the_source_with_the_edited_face_and_the_render_wrong_only_around_it():
    clip = blend.make_clip(frames=2, size=192, seed=0)
    source = clip["source"].astype(np.float32) / 255
    matte = clip["matte"][..., None]
    edited = np.clip(source * np.asarray(blend.EDIT_GAIN, np.float32), 0, 1)
    np.testing.assert_allclose(clip["ideal"], matte * edited + (1 - matte) * source, atol=1e-6)
    face, around = clip["matte"] > 0.99, clip["matte"] < 0.01
    assert face.mean() > 0.05 and around.mean() > 0.5
    np.testing.assert_allclose(clip["render"][face], clip["ideal"][face], atol=0.01)  # the face as edited
    assert np.abs(clip["render"][around] - clip["ideal"][around]).mean() > 0.03  # the surround wrong
    # The matte reaches above the landmark polygon (the forehead) but stays inside the face's box.
    points = clip["points"][0]
    assert face[0][int(points[19, 1]) - 3, int(points[19, 0])]
    assert not clip["matte"][0][: int(points[19:25, 1].min() - 0.5 * (points[8, 1] - points[19:25, 1].min()))].any()


def test_an_ellipse_left_out_is_an_error(tmp_path):
    from ciinv.errors import CiinvError

    with pytest.raises(CiinvError, match="ellipse"):
        blend.bench_blend({}, tmp_path, masks=("landmarks",))


def test_with_stitching_on_bench_blend_adds_its_rows_on_a_generator_render(tmp_path, capsys):
    write_smoke_models(tmp_path / "smoke")
    overlay = tmp_path / "stitch.yaml"
    overlay.write_text("stitch: {enabled: true}\npaste: {mask: landmarks}\n")
    assert main(["bench", "blend", "--config", str(REPO / "config.yaml"), str(tmp_path / "smoke" / "smoke.yaml"),
                 str(overlay), "--out", str(tmp_path / "out"), "--clips", "1", "--frames", "3", "--size", "192",
                 "--resolution", "64", "--masks", "ellipse,landmarks", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    assert re.fullmatch(r"best (ellipse|landmarks): full-frame error \d+\.\d\d× lower than ellipse", printed[-1])
    with open(tmp_path / "out" / "blend.csv") as f:
        rows = {r["mask"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["ellipse", "landmarks", "landmarks, generator render", "landmarks + stitch"]
    plain, tuned = rows["landmarks, generator render"], rows["landmarks + stitch"]
    assert all(tuned[c] != "" for c in blend.COLUMNS)
    # The tuned render meets the source around the face: less of the render's surround pasted in.
    assert float(tuned["error_outside"]) < float(plain["error_outside"])
    markdown = (tmp_path / "out" / "blend.md").read_text()
    assert "| landmarks + stitch |" in markdown and "Stitching: full-frame error" in markdown


def test_the_stitching_rows_ideal_is_the_source_with_the_generator_render_under_the_matte(tmp_path):
    from ciinv.dev.tiny import write_tiny_stylegan2
    from ciinv.frame_metrics import crop_in_frame
    from ciinv.models import load_generator

    write_tiny_stylegan2(tmp_path / "g.pt", resolution=32, w_dim=32, n_mlp=2, max_channels=16)
    clip = blend.make_clip(frames=2, size=192, seed=0)
    rendered, codes, crops = blend.generator_clip(clip, load_generator(tmp_path / "g.pt"), seed=0)
    assert crops.shape == (2, 32, 32, 3) and codes.shape[0] == 2
    matte = clip["matte"][1][..., None]
    unmasked = crop_in_frame(clip["source"][1], crops[1], clip["quads"][1]) / 255
    np.testing.assert_allclose(rendered["ideal"][1], matte * unmasked + (1 - matte) * clip["source"][1] / 255,
                               atol=1e-5)
    assert (rendered["source"] == clip["source"]).all() and (rendered["matte"] == clip["matte"]).all()
