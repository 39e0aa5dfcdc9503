"""What the benchmarks share: model files from a config, LPIPS left out with its reason, and the
one CSV writer and Markdown table layout every benchmark's files use."""

import csv
import math

import torch

from ciinv.bench.common import load_lpips, model_path, random_noise
from ciinv.bench.tables import csv_text, markdown_table, mean_cell, write_csv
from ciinv.config import load_config
from ciinv.dev.logs import log_messages
from ciinv.models.stylegan2 import load_stylegan2_rosinality
from tests.conftest import REPO


def test_csv_cells_have_six_significant_digits_and_an_absent_value_is_empty(tmp_path):
    rows = [{"name": "a", "x": 1 / 3, "n": 7, "y": None}, {"name": "b", "x": 2.0}]
    assert csv_text(rows, ["name", "x", "n", "y"]) == "name,x,n,y\na,0.333333,7,\nb,2,,\n"
    write_csv(rows, ["name", "x", "n", "y"], tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as f:
        assert list(csv.DictReader(f))[1] == {"name": "b", "x": "2", "n": "", "y": ""}


def test_markdown_tables_align_labels_left_and_numbers_right():
    lines = markdown_table(["clip", "variant", "mse ↓"], [["a", "full", "0.5"], ["b", "i2s", ""]], label_columns=2)
    assert lines == ["| clip | variant | mse ↓ |", "|---|---|---:|", "| a | full | 0.5 |", "| b | i2s | |"]
    assert mean_cell([1.0, 2.0, 4.0]) == "2.333" and mean_cell([1.0, math.inf]) == "inf" and mean_cell([]) == "–"


def test_model_paths_come_from_models_dir_and_a_weightless_flow_stays_a_spec(smoke_dir):
    config = load_config([REPO / "config.yaml", smoke_dir / "smoke.yaml"])
    assert model_path(config, "generator") == smoke_dir / "stylegan2-tiny.pt"
    config["models"]["flow"] = "dis:ultrafast"
    assert model_path(config, "flow") == "dis:ultrafast"


def test_lpips_is_left_out_with_the_reason_when_its_weights_are_missing_or_do_not_fit(tmp_path, smoke_dir):
    config = load_config([REPO / "config.yaml", smoke_dir / "smoke.yaml"])
    config["models_dir"] = str(tmp_path / "models")
    vgg = model_path(config, "vgg16")
    notes = {}
    with log_messages() as logged:
        assert load_lpips(config, vgg, notes=notes, what="lpips") is None
    assert "ciinv models fetch lpips-0.1.4-wheel" in notes["lpips"]
    assert logged == [f"lpips left out: {notes['lpips']}"]

    torch.save({f"lin{k}.model.1.weight": torch.rand(1, 3, 1, 1) for k in range(5)}, tmp_path / "lin.pth")
    with log_messages() as logged:
        assert load_lpips(config, vgg, tmp_path / "lin.pth") is None  # 3 channels: not the tiny VGG16's taps
    assert len(logged) == 1 and logged[0].startswith("LPIPS left out: ")
    fitting = {f"lin{k}.model.1.weight": torch.rand(1, w, 1, 1) for k, w in enumerate([4, 8, 16, 32, 32])}
    torch.save(fitting, tmp_path / "lin.pth")
    assert load_lpips(config, vgg, tmp_path / "lin.pth") is not None


def test_random_noise_gives_one_map_per_layer_for_each_image(smoke_dir):
    generator = load_stylegan2_rosinality(smoke_dir / "stylegan2-tiny.pt")
    noise = random_noise(generator, 3, torch.Generator().manual_seed(0))
    assert [m.shape for m in noise] == [(3, *c.shape[1:]) for c in generator.noise_maps()]
    again = random_noise(generator, 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(noise, again)) and not torch.equal(noise[0][0], noise[0][1])
