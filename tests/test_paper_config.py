"""configs/paper.yaml: the paper's setup as an overlay. It validates, names the paper's models and
edits, and runs (`ciinv bench synth`, a workflow plan) with smoke-sized stand-ins of those models."""

from __future__ import annotations

import shutil

import yaml

from ciinv.cli import main
from ciinv.config import load_config
from ciinv.models.registry import generator_family, resolve_direction
from ciinv.dev.smoke import write_paper_smoke_models

from .conftest import REPO
from .conftest import snakemake

PAPER = REPO / "configs" / "paper.yaml"


def test_the_paper_preset_validates_and_states_the_papers_choices(tmp_path):
    config = load_config([REPO / "config.yaml", PAPER])
    assert generator_family(config["models"]["generator"], tmp_path) == "stylegan1"
    invert = config["invert"]
    assert (invert["window"], invert["steps"], invert["lr"], invert["init"], invert["icc_pairs"]) == (
        5, 5000, 0.01, "mean", "all")
    assert invert["lambda_perceptual"] == 0.25  # Eq. 10's average over the four VGG layers
    names = {e["name"]: resolve_direction(e["direction"], config["models"]["generator"], tmp_path)
             for e in config["edits"]}
    assert names == {a: f"interfacegan-stylegan1-{a}" for a in ("age", "gender", "pose", "smile", "eyeglasses")}
    assert "precision" in PAPER.read_text() and "fp32" in PAPER.read_text()  # to set once the key exists


def test_bench_synth_runs_the_paper_preset_on_stand_ins(tmp_path, capsys):
    overlay = write_paper_smoke_models(tmp_path / "smoke")
    stand_ins = [e["direction"] for e in yaml.safe_load(overlay.read_text())["edits"]]
    config = load_config([REPO / "config.yaml", PAPER, overlay])
    assert config["models"]["generator"].endswith("stylegan1-tiny.pt") and config["invert"]["icc_pairs"] == "all"
    assert main(["bench", "synth", "--config", str(REPO / "config.yaml"), str(PAPER), str(overlay),
                 "--out", str(tmp_path / "out"), "--n", "2", "--steps", "2", "--variants", "i2s,full",
                 "--directions", ",".join(stand_ins[:3]), "--device", "cpu"]) == 0
    table = (tmp_path / "out" / "synth.md").read_text()
    assert "stylegan1-tiny.pt" in table and "each edited along the next" in table
    assert "full (MAC + ICC)" in table and "style_dist" in table


def test_the_workflow_plans_the_paper_preset(tmp_path):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    result = snakemake(tmp_path, "--dry-run", configfiles=[PAPER])
    assert result.returncode == 0, result.stderr
    for attribute in ("age", "gender", "pose", "smile", "eyeglasses"):
        assert f"models/interfacegan/stylegan1/stylegan_ffhq_{attribute}_w_boundary.npy" in result.stdout
        assert f"results/sample.{attribute}.mp4" in result.stdout
    assert "karras2019stylegan-ffhq-1024x1024" in result.stdout
